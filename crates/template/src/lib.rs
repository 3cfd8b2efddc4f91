//! Lockstep's template crate: ESO's v2 template engine (Go `text/template` semantics with the
//! sprig and ESO function library) that turns provider data into Secret data. Pure: no
//! environment, file system or network access (the random and key-generating functions read
//! the operating system's random source, `now` the clock; time zones are compiled in).
//!
//! ```
//! use std::collections::BTreeMap;
//! use lockstep_template::{render, Limits};
//!
//! let mut data = BTreeMap::new();
//! data.insert("user".to_string(), b"admin".to_vec());
//! let out = render("u={{ .user | upper }}", &data, &Limits::default()).unwrap();
//! assert_eq!(out, b"u=ADMIN");
//! ```
//!
//! Conformance: `tests/conformance/cases.json` is rendered by Go (`text/template` + sprig, as
//! ESO configures them; `testenv/go/templates/check.sh`) into `golden.json`, and the Rust
//! engine must produce the same bytes, or an error where Go errs. `tests/coverage.rs` lists
//! which functions are provided.
//!
//! Deliberate differences from Go, all on inputs no real template has:
//! - limits ([`Limits`]): evaluation steps, nesting depth (Go allows 100000 nested template
//!   calls), output size and time; the parser refuses nesting deeper than
//!   [`engine::parse::MAX_NEST`]; `printf` widths and precisions count against the output limit;
//! - `set` refuses to store a dict inside itself (Go would build the cycle and crash printing
//!   it);
//! - error messages are this crate's own (with line and column), not Go's text, and never
//!   contain data values;
//! - regular expressions use Go's syntax on Rust's `regex` engine (both linear time); `\d`,
//!   `\w`, `\s` and `\b` are made ASCII as in Go; Unicode tables (case mapping, letter and
//!   punctuation classes) are Rust's.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

pub mod engine;
pub mod funcs;
pub mod value;

pub use value::Value;

/// Limits of one render. A template that exceeds one stops with an [`ErrorKind::Limit`] error.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Evaluation steps (nodes, commands, loop iterations, and work inside functions).
    pub max_steps: u64,
    /// Nesting of executed lists: `{{template}}` calls and the bodies of `if`, `with` and
    /// `range` each count one level.
    pub max_depth: usize,
    /// Bytes of output, and of any single value a function builds.
    pub max_output: usize,
    /// Wall-clock time of the render, checked every 1024 steps.
    pub cpu_time: Duration,
}

impl Default for Limits {
    /// One million steps, depth 200, 1 MiB (a Secret's size limit), one second.
    fn default() -> Limits {
        Limits {
            max_steps: 1_000_000,
            max_depth: 200,
            max_output: 1 << 20,
            cpu_time: Duration::from_secs(1),
        }
    }
}

/// The class of a template error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The template does not parse.
    Parse,
    /// Execution failed (wrong types, bad arguments, a function's error).
    Exec,
    /// A field names a key the data does not have (`missingkey=error`).
    MissingKey,
    /// A render limit was exceeded.
    Limit,
    /// The template called `fail`; the message is the template's own text, which may have
    /// been built from data values, so callers must scrub it like any other error.
    Fail,
}

/// A template error. Its message is built from the template text, type names and fixed text;
/// it never contains data values.
#[derive(Clone, Debug)]
pub struct TemplateError {
    /// The class of error.
    pub kind: ErrorKind,
    /// 1-based line in the template.
    pub line: usize,
    /// 1-based column (in bytes) in the template.
    pub col: usize,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "template: {}:{}: {}", self.line, self.col, self.message)
    }
}

impl std::error::Error for TemplateError {}

impl TemplateError {
    fn at(src: &[u8], pos: usize, kind: ErrorKind, message: String) -> TemplateError {
        let pos = pos.min(src.len());
        let before = &src[..pos];
        let line = before.iter().filter(|c| **c == b'\n').count() + 1;
        let col = pos
            - before
                .iter()
                .rposition(|c| *c == b'\n')
                .map_or(0, |i| i + 1)
            + 1;
        TemplateError {
            kind,
            line,
            col,
            message,
        }
    }
}

/// Action delimiters (ESO's `--template-left-delimiter` / `--template-right-delimiter`).
#[derive(Clone, Debug)]
pub struct Delims {
    /// Left delimiter, `{{` by default.
    pub left: String,
    /// Right delimiter, `}}` by default.
    pub right: String,
}

impl Default for Delims {
    fn default() -> Delims {
        Delims {
            left: "{{".into(),
            right: "}}".into(),
        }
    }
}

/// A parsed template, reusable across renders.
#[derive(Clone, Debug)]
pub struct Template {
    src: Vec<u8>,
    tree: engine::parse::Tree,
}

impl Template {
    /// Parses `src` with the given delimiters.
    pub fn parse(src: &str, delims: &Delims) -> Result<Template, TemplateError> {
        let left = if delims.left.is_empty() {
            "{{"
        } else {
            &delims.left
        };
        let right = if delims.right.is_empty() {
            "}}"
        } else {
            &delims.right
        };
        let is_func = |n: &str| funcs::lookup(n).is_some();
        match engine::parse::parse(src.as_bytes(), left.as_bytes(), right.as_bytes(), &is_func) {
            Ok(tree) => Ok(Template {
                src: src.as_bytes().to_vec(),
                tree,
            }),
            Err(e) => Err(TemplateError::at(
                src.as_bytes(),
                e.pos,
                ErrorKind::Parse,
                e.msg,
            )),
        }
    }

    /// Renders with the given key/value pairs as dot (`map[string]string`, as ESO passes
    /// provider data); for callers whose values are not `AsRef<[u8]>` (e.g. a redacting secret
    /// type with an explicit accessor).
    pub fn execute_pairs<'a>(
        &self,
        data: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        limits: &Limits,
    ) -> Result<Vec<u8>, TemplateError> {
        let dot =
            engine::exec::data_value(data.into_iter().map(|(k, v)| (k.to_string(), v.to_vec())));
        self.execute_value(dot, limits)
    }

    /// Renders with `data` as dot (`map[string]string`, as ESO passes provider data).
    pub fn execute<V: AsRef<[u8]>>(
        &self,
        data: &BTreeMap<String, V>,
        limits: &Limits,
    ) -> Result<Vec<u8>, TemplateError> {
        let dot =
            engine::exec::data_value(data.iter().map(|(k, v)| (k.clone(), v.as_ref().to_vec())));
        self.execute_value(dot, limits)
    }

    /// Renders with an arbitrary value as dot.
    pub fn execute_value(&self, dot: Value, limits: &Limits) -> Result<Vec<u8>, TemplateError> {
        engine::exec::execute(&self.tree, dot, limits)
            .map_err(|e| TemplateError::at(&self.src, e.pos, e.kind, e.msg))
    }
}

/// Parses and renders `template` over provider data with the default delimiters.
pub fn render<V: AsRef<[u8]>>(
    template: &str,
    data: &BTreeMap<String, V>,
    limits: &Limits,
) -> Result<Vec<u8>, TemplateError> {
    Template::parse(template, &Delims::default())?.execute(data, limits)
}
