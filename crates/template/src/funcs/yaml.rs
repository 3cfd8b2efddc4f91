//! ESO's `toYaml` and `fromYaml`: sigs.k8s.io/yaml over Go's YAML v2 library. `toYaml` is
//! `json.Marshal`, the JSON read back as YAML 1.1 and written by YAML v2's emitter (sorted
//! keys, indentless sequences, its quoting and line folding at 80 columns); `fromYaml` reads
//! YAML 1.1 scalars (`yes`, `on`, `0x1F`, ...) and converts through JSON (numbers become
//! float64, keys strings).

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use granit_parser::{Event, Parser, ScalarStyle};
use regex::Regex;

use super::args::s;
use super::conv::parse_int;
use super::json::{float as json_float, json_form};
use super::{Budget, FResult, Func, Ty};
use crate::engine::fmt::format_float;
use crate::value::Value;

macro_rules! f {
    ($params:expr, $var:expr, $call:expr) => {
        Func {
            params: $params,
            variadic: $var,
            call: $call,
        }
    };
}

const MAX_NEST: usize = 100;
const BEST_WIDTH: usize = 80;

/// A value as YAML v2 sees the JSON of a template value.
enum Node {
    Null,
    Bool(bool),
    /// A number, already in YAML v2's text.
    Num(String),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

fn re(p: &str) -> Regex {
    Regex::new(p).expect("yaml regex")
}

fn float_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| re(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$"))
}

fn base60_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| re(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$"))
}

/// A YAML 1.1 scalar as YAML v2 resolves a plain scalar.
#[derive(Debug)]
enum Scalar {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Timestamp,
    Str,
}

fn is_timestamp(s: &str) -> bool {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits != 4 || s.as_bytes().get(4) != Some(&b'-') {
        return false;
    }
    [
        "2006-1-2T15:4:5.999999999Z07:00",
        "2006-1-2t15:4:5.999999999Z07:00",
        "2006-1-2 15:4:5.999999999",
        "2006-1-2",
    ]
    .iter()
    .any(|l| super::time::parse(l.as_bytes(), s.as_bytes()).is_ok())
}

/// YAML v2's `resolve("", s)`.
fn resolve(s: &str) -> Scalar {
    let hint = match s.bytes().next() {
        None => b'N',
        Some(b'+' | b'-') => b'S',
        Some(b'0'..=b'9') => b'D',
        Some(b'y' | b'Y' | b'n' | b'N' | b't' | b'T' | b'f' | b'F' | b'o' | b'O' | b'~') => b'M',
        Some(b'.') => b'.',
        Some(_) => return Scalar::Str,
    };
    match s {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Scalar::Bool(true);
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Scalar::Bool(false);
        }
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        ".nan" | ".NaN" | ".NAN" => return Scalar::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Scalar::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Scalar::Float(f64::NEG_INFINITY),
        _ => {}
    }
    match hint {
        b'.' => match s.parse::<f64>() {
            Ok(f) if !s.contains(['i', 'I', 'n', 'N']) => Scalar::Float(f),
            _ => Scalar::Str,
        },
        b'D' | b'S' => {
            if is_timestamp(s) {
                return Scalar::Timestamp;
            }
            let plain: String = s.chars().filter(|c| *c != '_').collect();
            if let Some(i) = parse_int(plain.as_bytes(), true) {
                return Scalar::Int(i128::from(i));
            }
            if let Some(u) = parse_uint(&plain) {
                return Scalar::Int(i128::from(u));
            }
            if float_re().is_match(&plain)
                && let Ok(f) = plain.parse::<f64>()
            {
                return Scalar::Float(f);
            }
            let (neg, bin) = match (plain.strip_prefix("0b"), plain.strip_prefix("-0b")) {
                (Some(b), _) => (false, b),
                (_, Some(b)) => (true, b),
                _ => return Scalar::Str,
            };
            match u64::from_str_radix(bin, 2) {
                Ok(v) if !bin.starts_with(['+', '-']) => {
                    Scalar::Int(if neg { -i128::from(v) } else { i128::from(v) })
                }
                _ => Scalar::Str,
            }
        }
        _ => Scalar::Str,
    }
}

/// Go's `strconv.ParseUint(s, 0, 64)`.
fn parse_uint(s: &str) -> Option<u64> {
    let l = s.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = l.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = l.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = l.strip_prefix("0b") {
        (2, d)
    } else if l.len() > 1 && l.starts_with('0') {
        (8, &l[1..])
    } else {
        (10, l.as_str())
    };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// The node of a template value (its JSON form read back as YAML); `None` where
/// `json.Marshal` fails.
fn to_node(v: &Value, depth: usize) -> Option<Node> {
    if depth > MAX_NEST {
        return None;
    }
    Some(match v {
        Value::Nil => Node::Null,
        Value::Bool(b) => Node::Bool(*b),
        Value::Int(i) | Value::Int64(i) => Node::Num(i.to_string()),
        Value::Byte(b) => Node::Num(b.to_string()),
        Value::Float(f) => {
            let text = json_float(*f)?;
            if text.contains(['.', 'e', 'E']) {
                Node::Num(go_g(f.to_string().parse().unwrap_or(*f)))
            } else if text.parse::<i64>().is_ok() || text.parse::<u64>().is_ok() {
                Node::Num(text)
            } else {
                Node::Num(go_g(*f))
            }
        }
        Value::Str(s) => Node::Str(String::from_utf8_lossy(s).into_owned()),
        Value::List(l, _) => Node::Seq(
            l.iter()
                .map(|e| to_node(e, depth + 1))
                .collect::<Option<_>>()?,
        ),
        Value::Map(m, _) => {
            let mut entries: Vec<(String, Node)> = m
                .borrow()
                .iter()
                .map(|(k, e)| {
                    Some((
                        String::from_utf8_lossy(k).into_owned(),
                        to_node(e, depth + 1)?,
                    ))
                })
                .collect::<Option<_>>()?;
            entries.sort_by(|a, b| key_order(&a.0, &b.0));
            Node::Map(entries)
        }
        Value::Obj(o) => to_node(&json_form(o), depth + 1)?,
    })
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 64)`.
fn go_g(f: f64) -> String {
    format_float(f, 'g', None, false)
}

/// YAML v2's key order: letters before digits, digit runs compared as numbers.
fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    let (ar, br): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut i = 0;
    while i < ar.len() && i < br.len() {
        if ar[i] == br[i] {
            i += 1;
            continue;
        }
        let (al, bl) = (ar[i].is_alphabetic(), br[i].is_alphabetic());
        if al && bl {
            return ar[i].cmp(&br[i]);
        }
        if al || bl {
            return if bl { Less } else { Greater };
        }
        let (mut an, mut bn) = (0i64, 0i64);
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 && ar[j - 1].is_ascii_digit() {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && ar[ai].is_ascii_digit() {
            an = an
                .wrapping_mul(10)
                .wrapping_add(i64::from(ar[ai] as u8 - b'0'));
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && br[bi].is_ascii_digit() {
            bn = bn
                .wrapping_mul(10)
                .wrapping_add(i64::from(br[bi] as u8 - b'0'));
            bi += 1;
        }
        if an != bn {
            return an.cmp(&bn);
        }
        if ai != bi {
            return ai.cmp(&bi);
        }
        return ar[i].cmp(&br[i]);
    }
    ar.len().cmp(&br.len())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

/// What YAML's emitter may do with a scalar (`yaml_emitter_analyze_scalar`).
struct Analysis {
    multiline: bool,
    block_plain: bool,
    single: bool,
    block: bool,
}

fn printable(c: char) -> bool {
    let c = c as u32;
    c == 0x0A
        || (0x20..=0x7E).contains(&c)
        || (0xA0..=0xD7FF).contains(&c)
        || ((0xE000..=0xFFFD).contains(&c) && c != 0xFEFF)
}

fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn analyze(v: &str) -> Analysis {
    if v.is_empty() {
        return Analysis {
            multiline: false,
            block_plain: true,
            single: true,
            block: false,
        };
    }
    let chars: Vec<char> = v.chars().collect();
    let mut block_ind = v.starts_with("---") || v.starts_with("...");
    let (mut line_breaks, mut special) = (false, false);
    let (mut lead_space, mut lead_break, mut trail_space, mut trail_break) =
        (false, false, false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut prev_space, mut prev_break) = (false, false);
    let mut preceded_ws = true;
    let n = chars.len();
    for i in 0..n {
        let c = chars[i];
        let followed_ws = i + 1 >= n || matches!(chars[i + 1], ' ' | '\t');
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => block_ind = true,
                '?' | ':' | '-' if followed_ws => block_ind = true,
                _ => {}
            }
        } else {
            match c {
                ':' if followed_ws => block_ind = true,
                '#' if preceded_ws => block_ind = true,
                _ => {}
            }
        }
        if !printable(c) {
            special = true;
        }
        if c == ' ' {
            lead_space |= i == 0;
            trail_space |= i + 1 == n;
            break_space |= prev_break;
            prev_space = true;
            prev_break = false;
        } else if is_break(c) {
            line_breaks = true;
            lead_break |= i == 0;
            trail_break |= i + 1 == n;
            space_break |= prev_space;
            prev_space = false;
            prev_break = true;
        } else {
            prev_space = false;
            prev_break = false;
        }
        preceded_ws = matches!(c, ' ' | '\t') || is_break(c);
    }
    let mut a = Analysis {
        multiline: line_breaks,
        block_plain: true,
        single: true,
        block: true,
    };
    if lead_space || lead_break || trail_space || trail_break {
        a.block_plain = false;
    }
    if trail_space {
        a.block = false;
    }
    if break_space {
        a.block_plain = false;
        a.single = false;
    }
    if space_break || special {
        a.block_plain = false;
        a.single = false;
        a.block = false;
    }
    if line_breaks || block_ind {
        a.block_plain = false;
    }
    a
}

/// YAML v2's emitter, for block-style documents.
struct Emitter {
    out: String,
    column: usize,
    whitespace: bool,
    indention: bool,
    indent: isize,
}

impl Emitter {
    fn put(&mut self, c: char) {
        self.out.push(c);
        self.column += 1;
    }

    fn put_break(&mut self) {
        self.out.push('\n');
        self.column = 0;
    }

    fn write_indent(&mut self) {
        let ind = self.indent.max(0) as usize;
        if !self.indention || self.column > ind || (self.column == ind && !self.whitespace) {
            self.put_break();
        }
        while self.column < ind {
            self.put(' ');
        }
        self.whitespace = true;
        self.indention = true;
    }

    fn indicator(&mut self, s: &str, need_ws: bool, is_ws: bool, is_indention: bool) {
        if need_ws && !self.whitespace {
            self.put(' ');
        }
        for c in s.chars() {
            self.put(c);
        }
        self.whitespace = is_ws;
        self.indention = self.indention && is_indention;
    }

    fn scalar(&mut self, v: &str, requested: Style, simple_key: bool) {
        let a = analyze(v);
        let mut style = requested;
        if simple_key && a.multiline {
            style = Style::Double;
        }
        if style == Style::Plain && (!a.block_plain || (v.is_empty() && simple_key)) {
            style = Style::Single;
        }
        if style == Style::Single && !a.single {
            style = Style::Double;
        }
        if style == Style::Literal && (!a.block || simple_key) {
            style = Style::Double;
        }
        let saved = self.indent;
        self.indent = if self.indent < 0 { 2 } else { self.indent + 2 };
        let allow_breaks = !simple_key;
        let chars: Vec<char> = v.chars().collect();
        let n = chars.len();
        match style {
            Style::Plain => {
                if !self.whitespace {
                    self.put(' ');
                }
                let mut spaces = false;
                let mut i = 0;
                while i < n {
                    let c = chars[i];
                    if c == ' ' {
                        if allow_breaks
                            && !spaces
                            && self.column > BEST_WIDTH
                            && chars.get(i + 1) != Some(&' ')
                        {
                            self.write_indent();
                        } else {
                            self.put(c);
                        }
                        spaces = true;
                    } else {
                        self.put(c);
                        self.indention = false;
                        spaces = false;
                    }
                    i += 1;
                }
                self.whitespace = false;
                self.indention = false;
            }
            Style::Single => {
                self.indicator("'", true, false, false);
                let (mut spaces, mut breaks) = (false, false);
                for i in 0..n {
                    let c = chars[i];
                    if c == ' ' {
                        if allow_breaks
                            && !spaces
                            && self.column > BEST_WIDTH
                            && i != 0
                            && i != n - 1
                            && chars.get(i + 1) != Some(&' ')
                        {
                            self.write_indent();
                        } else {
                            self.put(c);
                        }
                        spaces = true;
                    } else if is_break(c) {
                        if !breaks && c == '\n' {
                            self.put_break();
                        }
                        self.put_break();
                        self.indention = true;
                        breaks = true;
                    } else {
                        if breaks {
                            self.write_indent();
                        }
                        if c == '\'' {
                            self.put('\'');
                        }
                        self.put(c);
                        self.indention = false;
                        spaces = false;
                        breaks = false;
                    }
                }
                self.indicator("'", false, false, false);
            }
            Style::Double => {
                self.indicator("\"", true, false, false);
                let mut spaces = false;
                for i in 0..n {
                    let c = chars[i];
                    if !printable(c) || c == '\u{FEFF}' || is_break(c) || c == '"' || c == '\\' {
                        self.put('\\');
                        let esc = match c {
                            '\0' => "0".to_string(),
                            '\x07' => "a".into(),
                            '\x08' => "b".into(),
                            '\t' => "t".into(),
                            '\n' => "n".into(),
                            '\x0B' => "v".into(),
                            '\x0C' => "f".into(),
                            '\r' => "r".into(),
                            '\x1B' => "e".into(),
                            '"' => "\"".into(),
                            '\\' => "\\".into(),
                            '\u{85}' => "N".into(),
                            '\u{A0}' => "_".into(),
                            '\u{2028}' => "L".into(),
                            '\u{2029}' => "P".into(),
                            c if (c as u32) <= 0xFF => format!("x{:02X}", c as u32),
                            c if (c as u32) <= 0xFFFF => format!("u{:04X}", c as u32),
                            c => format!("U{:08X}", c as u32),
                        };
                        for e in esc.chars() {
                            self.put(e);
                        }
                        spaces = false;
                    } else if c == ' ' {
                        if allow_breaks
                            && !spaces
                            && self.column > BEST_WIDTH
                            && i != 0
                            && i != n - 1
                        {
                            self.write_indent();
                            if chars.get(i + 1) == Some(&' ') {
                                self.put('\\');
                            }
                        } else {
                            self.put(c);
                        }
                        spaces = true;
                    } else {
                        self.put(c);
                        spaces = false;
                    }
                }
                self.indicator("\"", false, false, false);
            }
            Style::Literal => {
                self.indicator("|", true, false, false);
                if chars[0] == ' ' || is_break(chars[0]) {
                    self.put('2');
                }
                let last_break = is_break(chars[n - 1]);
                let chomp = if !last_break {
                    "-"
                } else if n == 1 || is_break(chars[n - 2]) {
                    "+"
                } else {
                    ""
                };
                for c in chomp.chars() {
                    self.put(c);
                }
                self.put_break();
                self.indention = true;
                self.whitespace = true;
                let mut breaks = true;
                for &c in &chars {
                    if is_break(c) {
                        self.put_break();
                        self.indention = true;
                        breaks = true;
                    } else {
                        if breaks {
                            self.write_indent();
                            breaks = false;
                        }
                        self.put(c);
                        self.indention = false;
                    }
                }
            }
        }
        self.indent = saved;
    }

    fn string(&mut self, s: &str, simple_key: bool) {
        let plain_ok = matches!(resolve(s), Scalar::Str) && !base60_re().is_match(s);
        let style = if s.contains('\n') {
            Style::Literal
        } else if plain_ok {
            Style::Plain
        } else {
            Style::Double
        };
        self.scalar(s, style, simple_key);
    }

    fn node(&mut self, n: &Node, in_map_value: bool) {
        match n {
            Node::Null => self.scalar("null", Style::Plain, false),
            Node::Bool(b) => self.scalar(if *b { "true" } else { "false" }, Style::Plain, false),
            Node::Num(t) => self.scalar(t, Style::Plain, false),
            Node::Str(s) => self.string(s, false),
            Node::Seq(items) if items.is_empty() => {
                self.indicator("[", true, true, false);
                self.indicator("]", false, false, false);
            }
            Node::Map(entries) if entries.is_empty() => {
                self.indicator("{", true, true, false);
                self.indicator("}", false, false, false);
            }
            Node::Seq(items) => {
                let saved = self.indent;
                let indentless = in_map_value && !self.indention;
                if self.indent < 0 {
                    self.indent = 0;
                } else if !indentless {
                    self.indent += 2;
                }
                for item in items {
                    self.write_indent();
                    self.indicator("-", true, false, true);
                    self.node(item, false);
                }
                self.indent = saved;
            }
            Node::Map(entries) => {
                let saved = self.indent;
                self.indent = if self.indent < 0 { 0 } else { self.indent + 2 };
                for (k, v) in entries {
                    self.write_indent();
                    if k.len() <= 128 && !k.chars().any(is_break) {
                        self.string(k, true);
                        self.indicator(":", false, false, false);
                    } else {
                        self.indicator("?", true, false, true);
                        self.string(k, false);
                        self.write_indent();
                        self.indicator(":", true, false, true);
                    }
                    self.node(v, true);
                }
                self.indent = saved;
            }
        }
    }
}

/// ESO's `toYAML`: the YAML text without its final newline, empty when JSON marshalling fails.
fn to_yaml(b: &mut Budget, v: &Value) -> FResult {
    let Some(node) = to_node(v, 0) else {
        return Ok(Value::str(""));
    };
    let mut e = Emitter {
        out: String::new(),
        column: 0,
        whitespace: true,
        indention: true,
        indent: -1,
    };
    e.node(&node, false);
    b.alloc(e.out.len())?;
    Ok(Value::str(e.out))
}

/// A parsed YAML value, before the JSON conversion.
#[derive(Clone)]
enum Y {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Y>),
    Map(Vec<(Y, Y)>),
}

struct Reader<'a> {
    events: Vec<Event<'a>>,
    pos: usize,
    anchors: HashMap<usize, Y>,
    steps: u64,
}

fn scalar_value(v: &str, style: ScalarStyle, tag: Option<&granit_parser::Tag>) -> Y {
    if let Some(t) = tag {
        if t.is_yaml_core_schema_tag("str") {
            return Y::Str(v.to_string());
        }
        if t.is_yaml_core_schema_tag("float") {
            return match resolve(v) {
                Scalar::Int(i) => Y::Float(i as f64),
                Scalar::Float(f) => Y::Float(f),
                _ => Y::Str(v.to_string()),
            };
        }
    }
    if style != ScalarStyle::Plain {
        return Y::Str(v.to_string());
    }
    match resolve(v) {
        Scalar::Null => Y::Null,
        Scalar::Bool(b) => Y::Bool(b),
        Scalar::Int(i) => Y::Int(i),
        Scalar::Float(f) => Y::Float(f),
        Scalar::Timestamp | Scalar::Str => Y::Str(v.to_string()),
    }
}

impl Reader<'_> {
    fn node(&mut self, depth: usize) -> Result<Y, String> {
        if depth > MAX_NEST {
            return Err("yaml: exceeded max depth".into());
        }
        self.steps += 1;
        if self.steps > 100_000 {
            return Err("yaml: document is too large".into());
        }
        let ev = self
            .events
            .get(self.pos)
            .cloned()
            .ok_or("yaml: unexpected end")?;
        self.pos += 1;
        match ev {
            Event::Scalar(v, style, anchor, tag) => {
                let y = scalar_value(&v, style, tag.as_deref());
                self.anchors.insert(anchor, y.clone());
                Ok(y)
            }
            Event::Alias(id) => {
                let y = self
                    .anchors
                    .get(&id)
                    .ok_or_else(|| "yaml: unknown anchor".to_string())?;
                // Aliases copy their node: count the copy, so that nested aliases cannot
                // grow the document exponentially.
                self.steps += size(y, 100_001);
                if self.steps > 100_000 {
                    return Err("yaml: document is too large".into());
                }
                Ok(y.clone())
            }
            Event::SequenceStart(_, anchor, _) => {
                let mut items = Vec::new();
                while !matches!(self.events.get(self.pos), Some(Event::SequenceEnd) | None) {
                    items.push(self.node(depth + 1)?);
                }
                self.pos += 1;
                let y = Y::Seq(items);
                self.anchors.insert(anchor, y.clone());
                Ok(y)
            }
            Event::MappingStart(_, anchor, _) => {
                let mut entries: Vec<(Y, Y)> = Vec::new();
                while !matches!(self.events.get(self.pos), Some(Event::MappingEnd) | None) {
                    let is_merge = matches!(
                        self.events.get(self.pos),
                        Some(Event::Scalar(k, ScalarStyle::Plain, _, None)) if k == "<<"
                    );
                    let k = self.node(depth + 1)?;
                    let v = self.node(depth + 1)?;
                    if is_merge {
                        let sources = match v {
                            Y::Seq(l) => l,
                            other => vec![other],
                        };
                        for src in sources {
                            let Y::Map(m) = src else {
                                return Err(
                                    "yaml: map merge requires map or sequence of maps as the value"
                                        .into(),
                                );
                            };
                            for (mk, mv) in m {
                                set(&mut entries, mk, mv);
                            }
                        }
                        continue;
                    }
                    set(&mut entries, k, v);
                }
                self.pos += 1;
                let y = Y::Map(entries);
                self.anchors.insert(anchor, y.clone());
                Ok(y)
            }
            _ => Err("yaml: unexpected event".into()),
        }
    }
}

/// The number of nodes in `y`, counting no further than `cap`.
fn size(y: &Y, cap: u64) -> u64 {
    let mut n = 1;
    match y {
        Y::Seq(l) => {
            for e in l {
                n += size(e, cap);
                if n > cap {
                    break;
                }
            }
        }
        Y::Map(m) => {
            for (k, v) in m {
                n += size(k, cap) + size(v, cap);
                if n > cap {
                    break;
                }
            }
        }
        _ => {}
    }
    n
}

fn same_key(a: &Y, b: &Y) -> bool {
    match (a, b) {
        (Y::Null, Y::Null) => true,
        (Y::Bool(x), Y::Bool(y)) => x == y,
        (Y::Int(x), Y::Int(y)) => x == y,
        (Y::Float(x), Y::Float(y)) => x == y,
        (Y::Str(x), Y::Str(y)) => x == y,
        _ => false,
    }
}

fn set(entries: &mut Vec<(Y, Y)>, k: Y, v: Y) {
    match entries.iter_mut().find(|(ek, _)| same_key(ek, &k)) {
        Some(slot) => slot.1 = v,
        None => entries.push((k, v)),
    }
}

/// sigs.k8s.io/yaml's JSON conversion and `json.Unmarshal` into `interface{}`.
fn to_json_value(y: Y) -> Result<Value, String> {
    Ok(match y {
        Y::Null => Value::Nil,
        Y::Bool(b) => Value::Bool(b),
        Y::Int(i) => Value::Float(i as f64),
        Y::Float(f) if f.is_finite() => Value::Float(f),
        Y::Float(f) => {
            let t = if f.is_nan() {
                "NaN"
            } else if f > 0.0 {
                "+Inf"
            } else {
                "-Inf"
            };
            return Err(format!(
                "error converting YAML to JSON: json: unsupported value: {t}"
            ));
        }
        Y::Str(s) => Value::str(s),
        Y::Seq(l) => Value::list(l.into_iter().map(to_json_value).collect::<Result<_, _>>()?),
        Y::Map(m) => {
            let mut out = BTreeMap::new();
            for (k, v) in m {
                let key = match k {
                    Y::Str(s) => s,
                    Y::Int(i) => i.to_string(),
                    Y::Bool(b) => b.to_string(),
                    Y::Float(f) => {
                        let s = format_float(f64::from(f as f32), 'g', None, false);
                        match s.as_str() {
                            "+Inf" => ".inf".into(),
                            "-Inf" => "-.inf".into(),
                            "NaN" => ".nan".into(),
                            _ => s,
                        }
                    }
                    _ => {
                        return Err("error converting YAML to JSON: unsupported map key".into());
                    }
                };
                out.insert(key.into_bytes(), to_json_value(v)?);
            }
            Value::map(out)
        }
    })
}

fn kind_name(y: &Y) -> &'static str {
    match y {
        Y::Seq(_) => "array",
        Y::Str(_) => "string",
        Y::Bool(_) => "bool",
        _ => "number",
    }
}

/// ESO's `fromYAML`: a map, with the error under `Error` when the text is not a YAML map.
fn from_yaml(b: &mut Budget, text: &[u8]) -> FResult {
    b.alloc(text.len().saturating_mul(4))?;
    let result = (|| -> Result<BTreeMap<Vec<u8>, Value>, String> {
        let text = std::str::from_utf8(text)
            .map_err(|_| "error converting YAML to JSON: yaml: invalid UTF-8".to_string())?;
        let mut events = Vec::new();
        let mut docs = 0;
        for ev in Parser::new_from_str(text) {
            let (ev, _) =
                ev.map_err(|e| format!("error converting YAML to JSON: yaml: {}", e.info()))?;
            match ev {
                Event::DocumentStart(..) => docs += 1,
                Event::DocumentEnd if docs >= 1 => break,
                ev @ (Event::Scalar(..)
                | Event::Alias(_)
                | Event::SequenceStart(..)
                | Event::SequenceEnd
                | Event::MappingStart(..)
                | Event::MappingEnd) => events.push(ev),
                _ => {}
            }
            if events.len() > 1_000_000 {
                return Err("error converting YAML to JSON: yaml: document is too large".into());
            }
        }
        if events.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut r = Reader {
            events,
            pos: 0,
            anchors: HashMap::new(),
            steps: 0,
        };
        let y = r
            .node(0)
            .map_err(|e| format!("error converting YAML to JSON: {e}"))?;
        match y {
            Y::Null => Ok(BTreeMap::new()),
            Y::Map(_) => {
                let v = to_json_value(y)?;
                match &v {
                    Value::Map(m, _) => Ok(m.borrow().clone()),
                    _ => Ok(BTreeMap::new()),
                }
            }
            other => Err(format!(
                "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                kind_name(&other)
            )),
        }
    })();
    Ok(Value::map(match result {
        Ok(m) => m,
        Err(e) => {
            let mut m = BTreeMap::new();
            m.insert(b"Error".to_vec(), Value::str(e));
            m
        }
    }))
}

pub(super) fn lookup(name: &str) -> Option<Func> {
    use Ty::*;
    Some(match name {
        "toYaml" => f!(&[Any], None, |b, a| to_yaml(b, &a[0])),
        "fromYaml" => f!(&[Str], None, |b, a| from_yaml(b, s(&a, 0))),
        _ => return None,
    })
}
