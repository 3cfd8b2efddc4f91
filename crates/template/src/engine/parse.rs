//! Lexer and parser for Go `text/template` syntax. Produces the tree that `exec` walks.

use std::collections::BTreeMap;
use std::rc::Rc;

/// A parse error: byte offset into the template and a message built from template text only.
#[derive(Debug, Clone)]
pub struct ParseError {
    /// Byte offset of the error in the template.
    pub pos: usize,
    /// What went wrong.
    pub msg: String,
}

type PResult<T> = Result<T, ParseError>;

fn err<T>(pos: usize, msg: impl Into<String>) -> PResult<T> {
    Err(ParseError {
        pos,
        msg: msg.into(),
    })
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Text(Vec<u8>),
    Left,
    Right,
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
    Str(Vec<u8>),
    Char(i64),
    Number(String),
    Bool(bool),
    Nil,
    Dot,
    Field(String),
    Var(String),
    Ident(String),
    Kw(&'static str),
    Eof,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    pos: usize,
    /// Preceded by white space inside an action.
    sp: bool,
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_alnum(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphanumeric() || c >= 0x80
}

const KEYWORDS: [&str; 10] = [
    "block", "break", "continue", "define", "else", "end", "if", "range", "template", "with",
];

struct Lexer<'a> {
    src: &'a [u8],
    left: &'a [u8],
    right: &'a [u8],
    toks: Vec<Token>,
}

impl<'a> Lexer<'a> {
    fn push(&mut self, tok: Tok, pos: usize, sp: bool) {
        self.toks.push(Token { tok, pos, sp });
    }

    fn right_trim_at(&self, p: usize) -> bool {
        let s = &self.src[p..];
        s.len() >= 2 && is_space(s[0]) && s[1] == b'-' && s[2..].starts_with(self.right)
    }

    fn run(mut self) -> PResult<Vec<Token>> {
        let src = self.src;
        let mut pos = 0;
        let mut trim_next = false;
        loop {
            let found = find(&src[pos..], self.left).map(|i| i + pos);
            let end = found.unwrap_or(src.len());
            let mut text = &src[pos..end];
            if trim_next {
                let n = text.iter().take_while(|c| is_space(**c)).count();
                text = &text[n..];
            }
            let mut p = end;
            if let Some(idx) = found {
                p = idx + self.left.len();
                let s = &src[p..];
                if s.len() >= 2 && s[0] == b'-' && is_space(s[1]) {
                    let n = text.iter().rev().take_while(|c| is_space(**c)).count();
                    text = &text[..text.len() - n];
                    p += 2;
                }
            }
            if !text.is_empty() {
                self.push(Tok::Text(text.to_vec()), pos, false);
            }
            let Some(idx) = found else { break };
            trim_next = false;
            // Comments.
            let mut q = p;
            while q < src.len() && is_space(src[q]) {
                q += 1;
            }
            if src[q..].starts_with(b"/*") {
                let Some(e) = find(&src[q + 2..], b"*/") else {
                    return err(idx, "unclosed comment");
                };
                let after = q + 2 + e + 2;
                if self.right_trim_at(after) {
                    trim_next = true;
                    pos = after + 2 + self.right.len();
                } else if src[after..].starts_with(self.right) {
                    pos = after + self.right.len();
                } else {
                    return err(idx, "comment ends before closing delimiter");
                }
                continue;
            }
            self.push(Tok::Left, idx, false);
            let mut depth = 0i32;
            let mut sp = false;
            loop {
                if self.right_trim_at(p) || src[p..].starts_with(self.right) {
                    if depth > 0 {
                        return err(p, "unclosed left paren");
                    }
                    let trim = self.right_trim_at(p);
                    self.push(Tok::Right, p, sp);
                    if trim {
                        trim_next = true;
                        p += 2;
                    }
                    pos = p + self.right.len();
                    break;
                }
                let Some(&c) = src.get(p) else {
                    return err(idx, "unclosed action");
                };
                let start = p;
                if is_space(c) {
                    while p < src.len()
                        && is_space(src[p])
                        && !self.right_trim_at(p)
                        && !src[p..].starts_with(self.right)
                    {
                        p += 1;
                    }
                    sp = true;
                    continue;
                }
                let tok = match c {
                    b'=' => {
                        p += 1;
                        Tok::Assign
                    }
                    b':' => {
                        if src.get(p + 1) != Some(&b'=') {
                            return err(p, "expected :=");
                        }
                        p += 2;
                        Tok::Declare
                    }
                    b'|' => {
                        p += 1;
                        Tok::Pipe
                    }
                    b',' => {
                        p += 1;
                        Tok::Comma
                    }
                    b'(' => {
                        depth += 1;
                        p += 1;
                        Tok::LParen
                    }
                    b')' => {
                        depth -= 1;
                        if depth < 0 {
                            return err(p, "unexpected right paren");
                        }
                        p += 1;
                        Tok::RParen
                    }
                    b'"' => {
                        p += 1;
                        loop {
                            match src.get(p) {
                                None | Some(b'\n') => {
                                    return err(start, "unterminated quoted string");
                                }
                                Some(b'\\') => p += 2,
                                Some(b'"') => break,
                                _ => p += 1,
                            }
                        }
                        p += 1;
                        Tok::Str(unquote(&src[start + 1..p - 1], b'"').ok_or_else(|| {
                            ParseError {
                                pos: start,
                                msg: "invalid syntax in quoted string".into(),
                            }
                        })?)
                    }
                    b'`' => {
                        let Some(e) = src[p + 1..].iter().position(|c| *c == b'`') else {
                            return err(start, "unterminated raw quoted string");
                        };
                        p += e + 2;
                        Tok::Str(src[start + 1..p - 1].to_vec())
                    }
                    b'\'' => {
                        p += 1;
                        loop {
                            match src.get(p) {
                                None | Some(b'\n') => {
                                    return err(start, "unterminated character constant");
                                }
                                Some(b'\\') => p += 2,
                                Some(b'\'') => break,
                                _ => p += 1,
                            }
                        }
                        p += 1;
                        let u = unquote(&src[start + 1..p - 1], b'\'');
                        let s = u.as_deref().and_then(|b| std::str::from_utf8(b).ok());
                        let mut chars = s.map(|s| s.chars()).into_iter().flatten();
                        match (chars.next(), chars.next()) {
                            (Some(ch), None) => Tok::Char(i64::from(u32::from(ch))),
                            _ => return err(start, "malformed character constant"),
                        }
                    }
                    b'$' => {
                        p += 1;
                        while p < src.len() && is_alnum(src[p]) {
                            p += 1;
                        }
                        Tok::Var(String::from_utf8_lossy(&src[start..p]).into_owned())
                    }
                    b'.' if src.get(p + 1).is_some_and(u8::is_ascii_digit) => {
                        p = scan_number(src, p)?;
                        Tok::Number(String::from_utf8_lossy(&src[start..p]).into_owned())
                    }
                    b'.' => {
                        p += 1;
                        while p < src.len() && is_alnum(src[p]) {
                            p += 1;
                        }
                        if p == start + 1 {
                            Tok::Dot
                        } else {
                            Tok::Field(String::from_utf8_lossy(&src[start + 1..p]).into_owned())
                        }
                    }
                    b'+' | b'-' | b'0'..=b'9' => {
                        p = scan_number(src, p)?;
                        Tok::Number(String::from_utf8_lossy(&src[start..p]).into_owned())
                    }
                    c if is_alnum(c) => {
                        while p < src.len() && is_alnum(src[p]) {
                            p += 1;
                        }
                        let w = String::from_utf8_lossy(&src[start..p]).into_owned();
                        match w.as_str() {
                            "true" => Tok::Bool(true),
                            "false" => Tok::Bool(false),
                            "nil" => Tok::Nil,
                            _ => match KEYWORDS.iter().find(|k| **k == w) {
                                Some(k) => Tok::Kw(k),
                                None => Tok::Ident(w),
                            },
                        }
                    }
                    _ => return err(p, "unrecognized character in action"),
                };
                // Go requires a terminator after identifiers, fields and variables.
                if matches!(
                    tok,
                    Tok::Ident(_) | Tok::Field(_) | Tok::Var(_) | Tok::Kw(_)
                ) && let Some(&n) = src.get(p)
                {
                    {
                        let ok = is_space(n)
                            || matches!(n, b'.' | b',' | b'|' | b':' | b')' | b'(' | b'=')
                            || src[p..].starts_with(self.right);
                        if !ok {
                            return err(p, "bad character in identifier");
                        }
                    }
                }
                self.push(tok, start, sp);
                sp = false;
            }
        }
        self.push(Tok::Eof, src.len(), false);
        Ok(self.toks)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn scan_number(src: &[u8], mut p: usize) -> PResult<usize> {
    let start = p;
    if matches!(src.get(p), Some(b'+' | b'-')) {
        p += 1;
    }
    let mut digits: &[u8] = b"0123456789_";
    if src.get(p) == Some(&b'0') {
        match src.get(p + 1) {
            Some(b'x' | b'X') => {
                digits = b"0123456789abcdefABCDEF_";
                p += 2;
            }
            Some(b'o' | b'O') => {
                digits = b"01234567_";
                p += 2;
            }
            Some(b'b' | b'B') => {
                digits = b"01_";
                p += 2;
            }
            _ => {}
        }
    }
    let run = |p: &mut usize, set: &[u8]| {
        while src.get(*p).is_some_and(|c| set.contains(c)) {
            *p += 1;
        }
    };
    run(&mut p, digits);
    if src.get(p) == Some(&b'.') {
        p += 1;
        run(&mut p, digits);
    }
    if digits.len() == 11 && matches!(src.get(p), Some(b'e' | b'E')) {
        p += 1;
        if matches!(src.get(p), Some(b'+' | b'-')) {
            p += 1;
        }
        run(&mut p, b"0123456789_");
    }
    if src.get(p).is_some_and(|c| is_alnum(*c)) {
        return err(start, "bad number syntax");
    }
    Ok(p)
}

/// Interprets Go escape sequences in a quoted string or character literal body.
fn unquote(s: &[u8], quote: u8) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c != b'\\' {
            if c == quote {
                return None;
            }
            out.push(c);
            i += 1;
            continue;
        }
        let e = *s.get(i + 1)?;
        i += 2;
        let hex = |i: &mut usize, n: usize| -> Option<u32> {
            let h = std::str::from_utf8(s.get(*i..*i + n)?).ok()?;
            *i += n;
            u32::from_str_radix(h, 16).ok()
        };
        match e {
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'\\' => out.push(b'\\'),
            b'\'' | b'"' if e == quote => out.push(e),
            b'x' => out.push(u8::try_from(hex(&mut i, 2)?).ok()?),
            b'0'..=b'7' => {
                let o = std::str::from_utf8(s.get(i - 1..i + 2)?).ok()?;
                i += 2;
                out.push(u8::try_from(u32::from_str_radix(o, 8).ok()?).ok()?);
            }
            b'u' | b'U' => {
                let c = char::from_u32(hex(&mut i, if e == b'u' { 4 } else { 8 })?)?;
                out.extend_from_slice(c.to_string().as_bytes());
            }
            _ => return None,
        }
    }
    Some(out)
}

/// A number literal with Go's ideal-constant interpretations.
#[derive(Debug, Clone)]
pub struct Number {
    /// The literal text.
    pub text: String,
    /// Its value as an integer, when it is one.
    pub int: Option<i64>,
    /// Its value as a float, when it is one.
    pub float: Option<f64>,
    /// It overflows int64 but fits uint64.
    pub uint_only: bool,
}

impl Number {
    fn parse(text: &str, pos: usize) -> PResult<Number> {
        let t: String = text.chars().filter(|c| *c != '_').collect();
        let (neg, body) = match t.as_bytes().first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, &t[..]),
        };
        let lower = body.to_ascii_lowercase();
        let radix_int = if let Some(h) = lower.strip_prefix("0x") {
            u64::from_str_radix(h, 16).ok()
        } else if let Some(o) = lower.strip_prefix("0o") {
            u64::from_str_radix(o, 8).ok()
        } else if let Some(b) = lower.strip_prefix("0b") {
            u64::from_str_radix(b, 2).ok()
        } else if lower.len() > 1
            && lower.starts_with('0')
            && lower.bytes().all(|c| c.is_ascii_digit())
        {
            u64::from_str_radix(&lower[1..], 8).ok()
        } else {
            lower.parse::<u64>().ok()
        };
        let mut n = Number {
            text: text.to_string(),
            int: None,
            float: None,
            uint_only: false,
        };
        if let Some(u) = radix_int {
            let i = if neg {
                0i128 - i128::from(u)
            } else {
                i128::from(u)
            };
            match i64::try_from(i) {
                Ok(i) => {
                    n.int = Some(i);
                    n.float = Some(i as f64);
                }
                Err(_) if !neg => {
                    n.uint_only = true;
                    n.float = Some(u as f64);
                }
                Err(_) => return err(pos, format!("integer overflow: {text:?}")),
            }
            return Ok(n);
        }
        match t.parse::<f64>() {
            Ok(f) if f.is_finite() => {
                if !text.contains(['.', 'e', 'E', 'p', 'P']) {
                    return err(pos, format!("integer overflow: {text:?}"));
                }
                n.float = Some(f);
                if f.fract() == 0.0 && f.abs() < 9.2e18 {
                    n.int = Some(f as i64);
                }
                Ok(n)
            }
            _ => err(pos, format!("illegal number syntax: {text:?}")),
        }
    }

    /// Go's `idealConstant`: the value a literal has where any type is accepted.
    pub fn is_float_literal(&self) -> bool {
        let hex = self
            .text
            .trim_start_matches(['+', '-'])
            .to_ascii_lowercase()
            .starts_with("0x");
        self.float.is_some() && !hex && self.text.contains(['.', 'e', 'E', 'p', 'P'])
    }
}

/// An operand of a command.
#[derive(Debug, Clone)]
pub enum Arg {
    /// `.`
    Dot,
    /// `nil`
    Nil,
    /// `true` / `false`
    Bool(bool),
    /// A number or character literal.
    Number(Number),
    /// A string literal.
    Str(Rc<[u8]>),
    /// `.a.b`
    Field(Vec<String>),
    /// `$x.a.b`
    Var(String, Vec<String>),
    /// A function name.
    Ident(String),
    /// `(pipeline)`
    Pipe(Box<Pipe>),
    /// `(pipeline).a.b` or `fn.a`
    Chain(Box<Arg>, Vec<String>),
}

/// A command: its operands; the first one is what is executed.
#[derive(Debug, Clone)]
pub struct Cmd {
    /// Byte offset.
    pub pos: usize,
    /// Operands.
    pub args: Vec<Arg>,
}

/// A pipeline with its optional variable declarations.
#[derive(Debug, Clone)]
pub struct Pipe {
    /// Byte offset.
    pub pos: usize,
    /// Declared or assigned variables.
    pub decl: Vec<String>,
    /// `=` rather than `:=`.
    pub assign: bool,
    /// Commands separated by `|`.
    pub cmds: Vec<Cmd>,
}

/// A node of the template tree.
#[derive(Debug, Clone)]
pub enum Node {
    /// Literal text.
    Text(Vec<u8>),
    /// `{{pipeline}}`
    Action(Pipe),
    /// `{{if}}`, `{{with}}` (`with` true) and their else branch.
    If {
        /// Byte offset.
        pos: usize,
        /// `with` rather than `if`.
        with: bool,
        /// The condition.
        pipe: Pipe,
        /// Taken when the condition is true.
        list: Vec<Node>,
        /// Taken otherwise.
        else_list: Vec<Node>,
    },
    /// `{{range}}`
    Range {
        /// Byte offset.
        pos: usize,
        /// What is iterated.
        pipe: Pipe,
        /// The body.
        list: Vec<Node>,
        /// Taken when there is nothing to iterate.
        else_list: Vec<Node>,
    },
    /// `{{template "name" pipeline}}`
    Template {
        /// Byte offset.
        pos: usize,
        /// The template called.
        name: Vec<u8>,
        /// The new dot.
        pipe: Option<Pipe>,
    },
    /// `{{break}}`
    Break(usize),
    /// `{{continue}}`
    Continue(usize),
}

/// A parsed template with its associated (defined) templates.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    /// The main template.
    pub main: Vec<Node>,
    /// Templates from `define` and `block`.
    pub defs: BTreeMap<Vec<u8>, Rc<Vec<Node>>>,
}

enum Stop {
    End,
    Else(usize),
    Eof,
}

/// Nesting of control structures and parenthesized pipelines beyond which a template is
/// refused (the parser and executor recurse on it; Go has no such limit but no template
/// written by hand comes near it).
pub const MAX_NEST: usize = 200;

struct Parser<'f> {
    toks: Vec<Token>,
    i: usize,
    nest: usize,
    vars: Vec<String>,
    range_depth: usize,
    defs: BTreeMap<Vec<u8>, Rc<Vec<Node>>>,
    is_func: &'f dyn Fn(&str) -> bool,
}

/// Parses `src` with the given delimiters; `is_func` says which function names exist.
pub fn parse(
    src: &[u8],
    left: &[u8],
    right: &[u8],
    is_func: &dyn Fn(&str) -> bool,
) -> PResult<Tree> {
    let toks = Lexer {
        src,
        left,
        right,
        toks: Vec::new(),
    }
    .run()?;
    let mut p = Parser {
        toks,
        i: 0,
        nest: 0,
        vars: vec!["$".into()],
        range_depth: 0,
        defs: BTreeMap::new(),
        is_func,
    };
    let (main, stop) = p.list(true)?;
    match stop {
        Stop::Eof => Ok(Tree { main, defs: p.defs }),
        Stop::End => err(p.pos(), "unexpected {{end}}"),
        Stop::Else(pos) => err(pos, "unexpected {{else}}"),
    }
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.i].tok
    }

    fn pos(&self) -> usize {
        self.toks[self.i].pos
    }

    fn next(&mut self) -> Token {
        let t = self.toks[self.i].clone();
        if self.i + 1 < self.toks.len() {
            self.i += 1;
        }
        t
    }

    fn expect_right(&mut self, ctx: &str) -> PResult<()> {
        let t = self.next();
        if t.tok != Tok::Right {
            return err(t.pos, format!("unexpected token in {ctx}"));
        }
        Ok(())
    }

    fn enter(&mut self) -> PResult<()> {
        self.nest += 1;
        if self.nest > MAX_NEST {
            return err(
                self.pos(),
                format!("template nested more than {MAX_NEST} levels deep"),
            );
        }
        Ok(())
    }

    fn list(&mut self, top: bool) -> PResult<(Vec<Node>, Stop)> {
        self.enter()?;
        let r = self.list_inner(top);
        self.nest -= 1;
        r
    }

    fn list_inner(&mut self, top: bool) -> PResult<(Vec<Node>, Stop)> {
        let mut nodes = Vec::new();
        loop {
            let t = self.next();
            match t.tok {
                Tok::Eof => {
                    if !top {
                        return err(t.pos, "unexpected EOF");
                    }
                    return Ok((nodes, Stop::Eof));
                }
                Tok::Text(s) => nodes.push(Node::Text(s)),
                Tok::Left => {
                    let kt = self.next();
                    match kt.tok {
                        Tok::Kw("end") => {
                            self.expect_right("end")?;
                            if top {
                                return err(kt.pos, "unexpected {{end}}");
                            }
                            return Ok((nodes, Stop::End));
                        }
                        Tok::Kw("else") => {
                            if top {
                                return err(kt.pos, "unexpected {{else}}");
                            }
                            return Ok((nodes, Stop::Else(kt.pos)));
                        }
                        Tok::Kw("define") if top => self.define(kt.pos)?,
                        Tok::Kw("if") => nodes.push(self.control(kt.pos, "if")?),
                        Tok::Kw("with") => nodes.push(self.control(kt.pos, "with")?),
                        Tok::Kw("range") => nodes.push(self.control(kt.pos, "range")?),
                        Tok::Kw("template") => nodes.push(self.template(kt.pos, false)?),
                        Tok::Kw("block") => nodes.push(self.template(kt.pos, true)?),
                        Tok::Kw(k @ ("break" | "continue")) => {
                            if self.range_depth == 0 {
                                return err(kt.pos, format!("{{{{{k}}}}} outside {{{{range}}}}"));
                            }
                            self.expect_right(k)?;
                            nodes.push(if k == "break" {
                                Node::Break(kt.pos)
                            } else {
                                Node::Continue(kt.pos)
                            });
                        }
                        Tok::Kw(k) => return err(kt.pos, format!("unexpected <{k}> in command")),
                        _ => {
                            self.i -= 1;
                            let pipe = self.pipeline("command", false)?;
                            nodes.push(Node::Action(pipe));
                        }
                    }
                }
                _ => return err(t.pos, "unexpected token"),
            }
        }
    }

    fn string_name(&mut self, ctx: &str) -> PResult<Vec<u8>> {
        let t = self.next();
        match t.tok {
            Tok::Str(s) => Ok(s),
            _ => err(t.pos, format!("unexpected token in {ctx} clause")),
        }
    }

    fn add_def(&mut self, pos: usize, name: Vec<u8>, body: Vec<Node>) -> PResult<()> {
        let empty = body
            .iter()
            .all(|n| matches!(n, Node::Text(t) if t.iter().all(|c| is_space(*c))));
        if let Some(old) = self.defs.get(&name) {
            let old_empty = old
                .iter()
                .all(|n| matches!(n, Node::Text(t) if t.iter().all(|c| is_space(*c))));
            if !old_empty && !empty {
                return err(
                    pos,
                    format!(
                        "template: multiple definition of template {:?}",
                        String::from_utf8_lossy(&name)
                    ),
                );
            }
            if empty {
                return Ok(());
            }
        }
        self.defs.insert(name, Rc::new(body));
        Ok(())
    }

    fn define(&mut self, pos: usize) -> PResult<()> {
        let name = self.string_name("define")?;
        self.expect_right("define")?;
        let saved = std::mem::replace(&mut self.vars, vec!["$".into()]);
        let saved_range = std::mem::replace(&mut self.range_depth, 0);
        let (body, stop) = self.list(false)?;
        self.vars = saved;
        self.range_depth = saved_range;
        if !matches!(stop, Stop::End) {
            return err(pos, "unexpected {{else}} in define");
        }
        self.add_def(pos, name, body)
    }

    fn template(&mut self, pos: usize, block: bool) -> PResult<Node> {
        let ctx = if block { "block" } else { "template" };
        let name = self.string_name(ctx)?;
        let pipe = if *self.peek() == Tok::Right {
            if block {
                return err(pos, "missing value for block clause");
            }
            self.next();
            None
        } else {
            Some(self.pipeline(ctx, false)?)
        };
        if block {
            let saved = std::mem::replace(&mut self.vars, vec!["$".into()]);
            let saved_range = std::mem::replace(&mut self.range_depth, 0);
            let (body, stop) = self.list(false)?;
            self.vars = saved;
            self.range_depth = saved_range;
            if !matches!(stop, Stop::End) {
                return err(pos, "unexpected {{else}} in block");
            }
            self.add_def(pos, name.clone(), body)?;
        }
        Ok(Node::Template { pos, name, pipe })
    }

    fn control(&mut self, pos: usize, ctx: &'static str) -> PResult<Node> {
        // `else if` chains recurse here rather than through `list`.
        self.enter()?;
        let r = self.control_inner(pos, ctx);
        self.nest -= 1;
        r
    }

    fn control_inner(&mut self, pos: usize, ctx: &'static str) -> PResult<Node> {
        let mark = self.vars.len();
        let pipe = self.pipeline(ctx, ctx == "range")?;
        if ctx == "range" {
            self.range_depth += 1;
        }
        let (list, stop) = self.list(false)?;
        if ctx == "range" {
            self.range_depth -= 1;
        }
        let else_list = match stop {
            Stop::End => Vec::new(),
            Stop::Eof => return err(pos, "unexpected EOF"),
            Stop::Else(epos) => {
                if (ctx == "if" && *self.peek() == Tok::Kw("if"))
                    || (ctx == "with" && *self.peek() == Tok::Kw("with"))
                {
                    let kpos = self.next().pos;
                    vec![self.control(kpos, ctx)?]
                } else {
                    self.expect_right("else")?;
                    let (l, stop) = self.list(false)?;
                    if !matches!(stop, Stop::End) {
                        return err(epos, "expected end; found else");
                    }
                    l
                }
            }
        };
        self.vars.truncate(mark);
        Ok(match ctx {
            "range" => Node::Range {
                pos,
                pipe,
                list,
                else_list,
            },
            _ => Node::If {
                pos,
                with: ctx == "with",
                pipe,
                list,
                else_list,
            },
        })
    }

    fn pipeline(&mut self, ctx: &str, range: bool) -> PResult<Pipe> {
        let pos = self.pos();
        let mut pipe = Pipe {
            pos,
            decl: Vec::new(),
            assign: false,
            cmds: Vec::new(),
        };
        // Declarations.
        let t0 = self.toks[self.i].tok.clone();
        let t1 = self.toks.get(self.i + 1).map(|t| t.tok.clone());
        if let Tok::Var(v0) = &t0 {
            match t1 {
                Some(Tok::Declare | Tok::Assign) => {
                    pipe.assign = t1 == Some(Tok::Assign);
                    pipe.decl.push(v0.clone());
                    self.i += 2;
                }
                Some(Tok::Comma) if range => {
                    let t2 = self.toks.get(self.i + 2).map(|t| t.tok.clone());
                    let t3 = self.toks.get(self.i + 3).map(|t| t.tok.clone());
                    match (t2, t3) {
                        (Some(Tok::Var(v1)), Some(Tok::Declare | Tok::Assign)) => {
                            pipe.assign = self.toks[self.i + 3].tok == Tok::Assign;
                            pipe.decl.push(v0.clone());
                            pipe.decl.push(v1);
                            self.i += 4;
                        }
                        _ => return err(pos, "range can only initialize variables"),
                    }
                }
                Some(Tok::Comma) => return err(pos, format!("too many declarations in {ctx}")),
                _ => {}
            }
        }
        for d in &pipe.decl {
            if pipe.assign && !self.vars.contains(d) {
                return err(pos, format!("undefined variable {d:?}"));
            }
            self.vars.push(d.clone());
        }
        let end = if ctx == "parenthesized pipeline" {
            Tok::RParen
        } else {
            Tok::Right
        };
        loop {
            if *self.peek() == end {
                self.next();
                break;
            }
            let cmd = self.command(&end)?;
            pipe.cmds.push(cmd);
        }
        if pipe.cmds.is_empty() {
            return err(pos, format!("missing value for {ctx}"));
        }
        for (i, c) in pipe.cmds.iter().enumerate().skip(1) {
            if matches!(
                c.args[0],
                Arg::Bool(_) | Arg::Dot | Arg::Nil | Arg::Number(_) | Arg::Str(_)
            ) {
                return err(
                    c.pos,
                    format!("non executable command in pipeline stage {}", i + 1),
                );
            }
        }
        Ok(pipe)
    }

    fn command(&mut self, end: &Tok) -> PResult<Cmd> {
        let mut cmd = Cmd {
            pos: self.pos(),
            args: Vec::new(),
        };
        loop {
            let t = self.toks[self.i].clone();
            if t.tok == *end {
                break;
            }
            if t.tok == Tok::Pipe {
                self.next();
                if cmd.args.is_empty() {
                    return err(t.pos, "missing value for command");
                }
                break;
            }
            if !cmd.args.is_empty() && !t.sp {
                return err(t.pos, "unexpected token in operand");
            }
            match self.operand()? {
                Some(a) => cmd.args.push(a),
                None => return err(t.pos, "unexpected token in command"),
            }
        }
        if cmd.args.is_empty() {
            return err(cmd.pos, "missing value for command");
        }
        Ok(cmd)
    }

    fn operand(&mut self) -> PResult<Option<Arg>> {
        let Some(term) = self.term()? else {
            return Ok(None);
        };
        let mut fields = Vec::new();
        while let Tok::Field(f) = self.peek() {
            if self.toks[self.i].sp {
                break;
            }
            fields.push(f.clone());
            self.next();
        }
        if fields.is_empty() {
            return Ok(Some(term));
        }
        Ok(Some(match term {
            Arg::Field(mut f) => {
                f.extend(fields);
                Arg::Field(f)
            }
            Arg::Var(v, mut f) => {
                f.extend(fields);
                Arg::Var(v, f)
            }
            Arg::Bool(_) | Arg::Str(_) | Arg::Number(_) | Arg::Nil | Arg::Dot => {
                return err(self.pos(), "unexpected . after term");
            }
            other => Arg::Chain(Box::new(other), fields),
        }))
    }

    fn term(&mut self) -> PResult<Option<Arg>> {
        let t = self.toks[self.i].clone();
        let a = match t.tok {
            Tok::Ident(name) => {
                if !(self.is_func)(&name) {
                    return err(t.pos, format!("function {name:?} not defined"));
                }
                Arg::Ident(name)
            }
            Tok::Dot => Arg::Dot,
            Tok::Nil => Arg::Nil,
            Tok::Var(v) => {
                if !self.vars.contains(&v) {
                    return err(t.pos, format!("undefined variable {v:?}"));
                }
                Arg::Var(v, Vec::new())
            }
            Tok::Field(f) => Arg::Field(vec![f]),
            Tok::Bool(b) => Arg::Bool(b),
            Tok::Char(c) => Arg::Number(Number {
                text: "'".into(),
                int: Some(c),
                float: Some(c as f64),
                uint_only: false,
            }),
            Tok::Number(n) => Arg::Number(Number::parse(&n, t.pos)?),
            Tok::Str(s) => Arg::Str(Rc::from(s)),
            Tok::LParen => {
                self.next();
                self.enter()?;
                let p = self.pipeline("parenthesized pipeline", false);
                self.nest -= 1;
                return Ok(Some(Arg::Pipe(Box::new(p?))));
            }
            _ => return Ok(None),
        };
        self.next();
        Ok(Some(a))
    }
}
