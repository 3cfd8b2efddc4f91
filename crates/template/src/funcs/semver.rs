//! sprig's `semver` and `semverCompare`: the version parsing (coercing, as `NewVersion`
//! does by default) and the constraint language of Masterminds semver v3.

use std::cmp::Ordering;
use std::rc::Rc;
use std::sync::OnceLock;

use regex::Regex;

use super::args::{err, s};
use super::{FResult, Func, FuncError, Ty};
use crate::value::{Obj, Value};

macro_rules! f {
    ($params:expr, $var:expr, $call:expr) => {
        Func {
            params: $params,
            variadic: $var,
            call: $call,
        }
    };
}

/// A semantic version (`*semver.Version`).
#[derive(Clone, Debug)]
pub struct Version {
    major: u64,
    minor: u64,
    patch: u64,
    pre: String,
    metadata: String,
    original: String,
}

const LOOSE: &str = r"v?([0-9]+)(\.[0-9]+)?(\.[0-9]+)?(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?";
const CV: &str = r"v?([0-9|x|X|\*]+)(\.[0-9|x|X|\*]+)?(\.[0-9|x|X|\*]+)?(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?";
const OPS: &str = r"=||!=|>|<|>=|=>|<=|=<|~|~>|\^";
/// Go's `\s` (ASCII white space).
const WS: &str = r"[\t\n\f\r ]";

struct Res {
    loose: Regex,
    constraint: Regex,
    range: Regex,
    find: Regex,
    valid: Regex,
}

fn res() -> &'static Res {
    static R: OnceLock<Res> = OnceLock::new();
    R.get_or_init(|| {
        let re = |p: String| Regex::new(&p).expect("semver regex");
        Res {
            loose: re(format!("^{LOOSE}$")),
            constraint: re(format!("^{WS}*({OPS}){WS}*({CV}){WS}*$")),
            range: re(format!("{WS}*({CV}){WS}+-{WS}+({CV}){WS}*")),
            find: re(format!("({OPS}){WS}*({CV})")),
            valid: re(format!(
                "^({WS}*({OPS}){WS}*({CV}){WS}*)((?:{WS}+|,{WS}*)({OPS}){WS}*({CV}){WS}*)*$"
            )),
        }
    })
}

fn only(s: &str, digits_only: bool) -> bool {
    s.bytes()
        .all(|c| c.is_ascii_digit() || (!digits_only && (c.is_ascii_alphabetic() || c == b'-')))
}

fn validate_pre(p: &str) -> Result<(), &'static str> {
    for part in p.split('.') {
        if part.is_empty() {
            return Err("invalid prerelease string");
        } else if only(part, true) {
            if part.len() > 1 && part.starts_with('0') {
                return Err("version segment starts with 0");
            }
        } else if !only(part, false) {
            return Err("invalid prerelease string");
        }
    }
    Ok(())
}

fn validate_meta(m: &str) -> Result<(), &'static str> {
    if m.split('.').any(|p| p.is_empty() || !only(p, false)) {
        return Err("invalid metadata string");
    }
    Ok(())
}

impl Version {
    /// `semver.NewVersion` (coercing: `v1`, `1.2` are accepted).
    pub fn parse(v: &str) -> Result<Version, String> {
        let m = res()
            .loose
            .captures(v)
            .ok_or_else(|| "invalid semantic version".to_string())?;
        let g = |i: usize| m.get(i).map_or("", |x| x.as_str());
        let seg = |s: &str| -> Result<u64, String> {
            if s.is_empty() {
                return Ok(0);
            }
            s.trim_start_matches('.')
                .parse::<u64>()
                .map_err(|_| "error parsing version segment".to_string())
        };
        let out = Version {
            major: seg(g(1))?,
            minor: seg(g(2))?,
            patch: seg(g(3))?,
            pre: g(5).to_string(),
            metadata: g(8).to_string(),
            original: v.to_string(),
        };
        if !out.pre.is_empty() {
            validate_pre(&out.pre)?;
        }
        if !out.metadata.is_empty() {
            validate_meta(&out.metadata)?;
        }
        Ok(out)
    }

    /// `Version.String()`.
    pub fn string(&self) -> String {
        let mut s = format!("{}.{}.{}", self.major, self.minor, self.patch);
        if !self.pre.is_empty() {
            s.push('-');
            s.push_str(&self.pre);
        }
        if !self.metadata.is_empty() {
            s.push('+');
            s.push_str(&self.metadata);
        }
        s
    }

    fn compare(&self, o: &Version) -> Ordering {
        self.major
            .cmp(&o.major)
            .then(self.minor.cmp(&o.minor))
            .then(self.patch.cmp(&o.patch))
            .then_with(|| match (self.pre.is_empty(), o.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                _ => compare_pre(&self.pre, &o.pre),
            })
    }

    fn v_prefix(&self) -> &'static str {
        if self.original.starts_with('v') {
            "v"
        } else {
            ""
        }
    }

    fn next(&self, major: u64, minor: u64, patch: u64) -> Version {
        let mut n = Version {
            major,
            minor,
            patch,
            pre: String::new(),
            metadata: String::new(),
            original: String::new(),
        };
        n.original = format!("{}{}", self.v_prefix(), n.string());
        n
    }

    /// A field or method of `*semver.Version`.
    pub fn method(&self, name: &str, args: &[Value]) -> Option<FResult> {
        let uint = |n: u64| Value::Int64(n.min(i64::MAX as u64) as i64);
        let other = |a: &[Value]| match a {
            [Value::Obj(o)] => match &**o {
                Obj::Version(v) => Some(v.clone()),
                _ => None,
            },
            _ => None,
        };
        let ord = other(args).map(|o| self.compare(&o));
        Some(Ok(match (name, args.len()) {
            ("Major", 0) => uint(self.major),
            ("Minor", 0) => uint(self.minor),
            ("Patch", 0) => uint(self.patch),
            ("Prerelease", 0) => Value::str(&self.pre),
            ("Metadata", 0) => Value::str(&self.metadata),
            ("Original", 0) => Value::str(&self.original),
            ("String", 0) => Value::str(self.string()),
            ("IncMajor", 0) => version_value(self.next(self.major + 1, 0, 0)),
            ("IncMinor", 0) => version_value(self.next(self.major, self.minor + 1, 0)),
            ("IncPatch", 0) => {
                let mut n = self.next(self.major, self.minor, self.patch);
                if self.pre.is_empty() {
                    n = self.next(self.major, self.minor, self.patch + 1);
                }
                version_value(n)
            }
            ("Compare", 1) => Value::Int(ord? as i64),
            ("LessThan", 1) => Value::Bool(ord? == Ordering::Less),
            ("LessThanEqual", 1) => Value::Bool(ord? != Ordering::Greater),
            ("GreaterThan", 1) => Value::Bool(ord? == Ordering::Greater),
            ("GreaterThanEqual", 1) => Value::Bool(ord? != Ordering::Less),
            ("Equal", 1) => Value::Bool(ord? == Ordering::Equal),
            _ => return None,
        }))
    }
}

fn compare_pre(a: &str, b: &str) -> Ordering {
    let (sa, sb): (Vec<&str>, Vec<&str>) = (a.split('.').collect(), b.split('.').collect());
    for i in 0..sa.len().max(sb.len()) {
        let d = compare_pre_part(
            sa.get(i).copied().unwrap_or(""),
            sb.get(i).copied().unwrap_or(""),
        );
        if d != Ordering::Equal {
            return d;
        }
    }
    Ordering::Equal
}

fn compare_pre_part(s: &str, o: &str) -> Ordering {
    if s == o {
        return Ordering::Equal;
    }
    if s.is_empty() {
        return Ordering::Less;
    }
    if o.is_empty() {
        return Ordering::Greater;
    }
    match (s.parse::<u64>(), o.parse::<u64>()) {
        (Err(_), Err(_)) => {
            if s > o {
                Ordering::Greater
            } else {
                Ordering::Less
            }
        }
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Ok(a), Ok(b)) => {
            if a > b {
                Ordering::Greater
            } else {
                Ordering::Less
            }
        }
    }
}

fn version_value(v: Version) -> Value {
    Value::Obj(Rc::new(Obj::Version(v)))
}

/// One comparison of a constraint.
struct Constraint {
    con: Version,
    op: String,
    minor_dirty: bool,
    patch_dirty: bool,
    dirty: bool,
}

fn is_x(s: &str) -> bool {
    matches!(s, "x" | "X" | "*")
}

fn parse_constraint(c: &str) -> Result<Constraint, String> {
    if c.is_empty() {
        return Ok(Constraint {
            con: Version::parse("0.0.0")?,
            op: String::new(),
            minor_dirty: false,
            patch_dirty: false,
            dirty: true,
        });
    }
    let m = res()
        .constraint
        .captures(c)
        .ok_or_else(|| "improper constraint".to_string())?;
    let g = |i: usize| m.get(i).map_or("", |x| x.as_str());
    let (mut minor_dirty, mut patch_dirty, mut dirty) = (false, false, false);
    let mut ver = g(2).to_string();
    if is_x(g(3)) || g(3).is_empty() {
        ver = format!("0.0.0{}", g(6));
        dirty = true;
    } else if is_x(g(4).trim_start_matches('.')) || g(4).is_empty() {
        minor_dirty = true;
        dirty = true;
        ver = format!("{}.0.0{}", g(3), g(6));
    } else if is_x(g(5).trim_start_matches('.')) || g(5).is_empty() {
        dirty = true;
        patch_dirty = true;
        ver = format!("{}{}.0{}", g(3), g(4), g(6));
    }
    let con = Version::parse(&ver).map_err(|_| "constraint parser error".to_string())?;
    Ok(Constraint {
        con,
        op: g(1).to_string(),
        minor_dirty,
        patch_dirty,
        dirty,
    })
}

fn rewrite_range(c: &str) -> String {
    let mut out = c.to_string();
    for m in res().range.captures_iter(c) {
        let whole = m.get(0).map_or("", |x| x.as_str());
        let t = format!(
            ">= {}, <= {} ",
            m.get(1).map_or("", |x| x.as_str()),
            m.get(11).map_or("", |x| x.as_str())
        );
        out = out.replacen(whole, &t, 1);
    }
    out
}

impl Constraint {
    fn check(&self, v: &Version, include_pre: bool) -> bool {
        if !v.pre.is_empty() && !include_pre {
            return false;
        }
        let c = &self.con;
        let lt = v.compare(c) == Ordering::Less;
        match self.op.as_str() {
            "" | "=" => {
                if self.dirty {
                    self.tilde(v)
                } else {
                    v.compare(c) == Ordering::Equal
                }
            }
            "!=" => {
                if self.dirty {
                    if c.major != v.major {
                        return true;
                    }
                    if c.minor != v.minor && !self.minor_dirty {
                        return true;
                    } else if self.minor_dirty {
                        return false;
                    } else if c.patch != v.patch && !self.patch_dirty {
                        return true;
                    } else if self.patch_dirty {
                        if !v.pre.is_empty() || !c.pre.is_empty() {
                            return compare_pre(&v.pre, &c.pre) != Ordering::Equal;
                        }
                        return false;
                    }
                }
                v.compare(c) != Ordering::Equal
            }
            ">" => {
                if !self.dirty {
                    return v.compare(c) == Ordering::Greater;
                }
                if v.major > c.major {
                    true
                } else if v.major < c.major || self.minor_dirty {
                    false
                } else if self.patch_dirty {
                    v.minor > c.minor
                } else {
                    v.compare(c) == Ordering::Greater
                }
            }
            "<" => lt,
            ">=" | "=>" => !lt,
            "<=" | "=<" => {
                if !self.dirty {
                    return v.compare(c) != Ordering::Greater;
                }
                !(v.major > c.major
                    || (v.major == c.major && v.minor > c.minor && !self.minor_dirty))
            }
            "~" | "~>" => self.tilde(v),
            "^" => {
                if lt {
                    return false;
                }
                if c.major > 0 || self.minor_dirty {
                    return v.major == c.major;
                }
                if v.major > 0 {
                    return false;
                }
                if c.minor > 0 || self.patch_dirty {
                    return v.minor == c.minor;
                }
                if v.minor > 0 {
                    return false;
                }
                c.patch == v.patch
            }
            _ => false,
        }
    }

    fn tilde(&self, v: &Version) -> bool {
        let c = &self.con;
        if v.compare(c) == Ordering::Less {
            return false;
        }
        if c.major == 0 && c.minor == 0 && c.patch == 0 && !self.minor_dirty && !self.patch_dirty {
            return true;
        }
        if v.major != c.major {
            return false;
        }
        v.minor == c.minor || self.minor_dirty
    }
}

/// `semver.NewConstraint(c).Check(v)`.
fn semver_compare(constraint: &str, version: &str) -> Result<bool, String> {
    let c = rewrite_range(constraint);
    let mut groups = Vec::new();
    for or in c.split("||") {
        if !res().valid.is_match(or) {
            return Err("improper constraint".into());
        }
        let found: Vec<&str> = res().find.find_iter(or).map(|m| m.as_str()).collect();
        let found = if found.is_empty() { vec![or] } else { found };
        let mut group = Vec::new();
        let mut has_pre = false;
        for f in found {
            let pc = parse_constraint(f)?;
            has_pre |= !pc.con.pre.is_empty();
            group.push(pc);
        }
        groups.push((group, has_pre));
    }
    let v = Version::parse(version)?;
    Ok(groups
        .iter()
        .any(|(g, pre)| g.iter().all(|c| c.check(&v, *pre))))
}

fn to_err(e: String) -> FuncError {
    err(e)
}

pub(super) fn lookup(name: &str) -> Option<Func> {
    use Ty::*;
    Some(match name {
        "semver" => f!(&[Str], None, |_, a| {
            let v = String::from_utf8_lossy(s(&a, 0)).into_owned();
            Version::parse(&v).map(version_value).map_err(to_err)
        }),
        "semverCompare" => f!(&[Str, Str], None, |_, a| {
            let c = String::from_utf8_lossy(s(&a, 0)).into_owned();
            let v = String::from_utf8_lossy(s(&a, 1)).into_owned();
            semver_compare(&c, &v).map(Value::Bool).map_err(to_err)
        }),
        _ => return None,
    })
}
