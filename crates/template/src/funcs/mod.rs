//! The function library: Go's `text/template` builtins and the sprig functions ESO exposes.
//! Each function declares Go's parameter types so that arguments are checked as Go checks them.

use std::time::{Duration, Instant};

use crate::value::Value;
use crate::{ErrorKind, Limits};

mod builtin;
mod case;
pub mod conv;
mod crypto;
mod duration;
mod eso;
mod extra;
mod json;
pub mod keys;
mod lists;
mod math;
mod misc;
pub mod pem;
mod random;
pub mod semver;
mod strings;
pub mod time;
mod url;
mod yaml;

/// A Go parameter type, as far as the template engine checks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    /// `interface{}`.
    Any,
    /// `reflect.Value` (the builtins): like `Any` but a literal `nil` is refused.
    Reflect,
    /// `string`.
    Str,
    /// `int`.
    Int,
    /// `int64`.
    Int64,
    /// `float64`.
    Float,
    /// `bool`.
    Bool,
    /// `[]interface{}`.
    List,
    /// `[]string`.
    Strings,
    /// `map[string]interface{}`.
    Map,
    /// `time.Time`.
    Time,
    /// sprig's `certificate` struct.
    Cert,
    /// sprig's `HashAlgorithm`, a named string type: only a string constant in the template
    /// converts to it; a string value (from data, a variable or a pipeline) does not.
    HashAlgorithm,
}

impl Ty {
    /// Go's name of the type.
    pub fn name(self) -> &'static str {
        match self {
            Ty::Any => "interface {}",
            Ty::Reflect => "reflect.Value",
            Ty::Str => "string",
            Ty::Int => "int",
            Ty::Int64 => "int64",
            Ty::Float => "float64",
            Ty::Bool => "bool",
            Ty::List => "[]interface {}",
            Ty::Strings => "[]string",
            Ty::Map => "map[string]interface {}",
            Ty::Time => "time.Time",
            Ty::Cert => "sprig.certificate",
            Ty::HashAlgorithm => "sprig.HashAlgorithm",
        }
    }
}

/// An error from a function; its message never contains argument values.
#[derive(Debug, Clone)]
pub struct FuncError {
    /// What went wrong.
    pub msg: String,
    /// The class of error.
    pub kind: ErrorKind,
}

impl FuncError {
    /// A function error.
    pub fn new(msg: impl Into<String>) -> FuncError {
        FuncError {
            msg: msg.into(),
            kind: ErrorKind::Exec,
        }
    }
}

/// Result of a function.
pub type FResult = Result<Value, FuncError>;

/// A function's signature and implementation.
#[derive(Clone, Copy)]
pub struct Func {
    /// Fixed parameters.
    pub params: &'static [Ty],
    /// Type of the variadic parameters, if any.
    pub variadic: Option<Ty>,
    /// The implementation.
    pub call: fn(&mut Budget, Vec<Value>) -> FResult,
}

/// The limits of one render, shared by the executor and the functions.
pub struct Budget {
    steps: u64,
    max_steps: u64,
    max_output: usize,
    deadline: Instant,
}

impl Budget {
    /// A fresh budget for a render starting at `start`.
    pub fn new(limits: &Limits, start: Instant) -> Budget {
        Budget {
            steps: 0,
            max_steps: limits.max_steps,
            max_output: limits.max_output,
            deadline: start
                .checked_add(limits.cpu_time)
                .unwrap_or(start + Duration::from_secs(3600)),
        }
    }

    /// Counts one evaluation step; fails past the step limit or the deadline.
    pub fn step(&mut self) -> Result<(), (ErrorKind, String)> {
        self.charge(1)
    }

    /// Counts `n` steps of work.
    pub fn charge(&mut self, n: u64) -> Result<(), (ErrorKind, String)> {
        let before = self.steps;
        self.steps = self.steps.saturating_add(n);
        if self.steps > self.max_steps {
            return Err((
                ErrorKind::Limit,
                format!("exceeded the limit of {} evaluation steps", self.max_steps),
            ));
        }
        if before >> 10 != self.steps >> 10 && Instant::now() > self.deadline {
            return Err((ErrorKind::Limit, "exceeded the render time limit".into()));
        }
        Ok(())
    }

    /// Checks, before allocating, that a value of `n` bytes (or elements) fits the limits.
    pub fn alloc(&mut self, n: usize) -> Result<(), FuncError> {
        if n > self.max_output {
            return Err(FuncError {
                msg: format!("result would exceed the limit of {} bytes", self.max_output),
                kind: ErrorKind::Limit,
            });
        }
        self.charge(n as u64 / 64)
            .map_err(|(kind, msg)| FuncError { msg, kind })
    }
}

/// Looks a function up by name.
pub fn lookup(name: &str) -> Option<Func> {
    // sprig's functions take precedence over the builtins, as in Go (sprig's `slice`).
    strings::lookup(name)
        .or_else(|| lists::lookup(name))
        .or_else(|| math::lookup(name))
        .or_else(|| misc::lookup(name))
        .or_else(|| extra::lookup(name))
        .or_else(|| random::lookup(name))
        .or_else(|| duration::lookup(name))
        .or_else(|| time::lookup(name))
        .or_else(|| semver::lookup(name))
        .or_else(|| crypto::lookup(name))
        .or_else(|| eso::lookup(name))
        .or_else(|| yaml::lookup(name))
        .or_else(|| builtin::lookup(name))
}

/// Calls a field or method `name` of a library value with `args` (`None`: no such method or
/// wrong arguments).
pub fn method(o: &crate::value::Obj, name: &str, args: &[Value]) -> Option<FResult> {
    use crate::value::Obj;
    match o {
        Obj::Time(t) => match (name, args) {
            (_, []) => t.method(name).map(Ok),
            ("Format", [Value::Str(l)]) => Some(Ok(Value::str(t.format(l)))),
            _ => None,
        },
        Obj::Version(v) => v.method(name, args),
        Obj::Cert { cert, key } => match (name, args) {
            ("Cert", []) => Some(Ok(Value::Str(cert.clone()))),
            ("Key", []) => Some(Ok(Value::Str(key.clone()))),
            _ => None,
        },
    }
}

/// Argument helpers shared by the function groups.
pub mod args {
    use super::FuncError;
    use crate::value::Value;

    /// The string at `i` (the parameter is declared `string`, so this is checked already).
    pub fn s(a: &[Value], i: usize) -> &[u8] {
        a.get(i).and_then(Value::as_bytes).unwrap_or_default()
    }

    /// The int at `i`.
    pub fn int(a: &[Value], i: usize) -> i64 {
        a.get(i).and_then(Value::as_int).unwrap_or(0)
    }

    /// A function error.
    pub fn err(msg: impl Into<String>) -> FuncError {
        FuncError::new(msg)
    }
}
