//! sprig's `urlParse`: Go's `net/url.Parse`, rewritten here, and the fields sprig returns.

use std::collections::BTreeMap;

use super::args::{err, s};
use super::{FResult, FuncError};
use crate::value::Value;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Path,
    Host,
    UserPassword,
    Fragment,
}

fn unhex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn should_escape(c: u8, mode: Mode) -> bool {
    if c.is_ascii_alphanumeric() {
        return false;
    }
    if mode == Mode::Host {
        return !matches!(
            c,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'['
                | b']'
                | b'<'
                | b'>'
                | b'"'
                | b'-'
                | b'_'
                | b'.'
                | b'~'
        );
    }
    match c {
        b'-' | b'_' | b'.' | b'~' => false,
        b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'?' | b'@' => match mode {
            Mode::Path => c == b'?',
            Mode::UserPassword => matches!(c, b'@' | b'/' | b'?' | b':'),
            _ => false,
        },
        _ => !(mode == Mode::Fragment && matches!(c, b'!' | b'(' | b')' | b'*')),
    }
}

/// Go's `url.unescape`; the error text names the bad escape, which comes from the URL and
/// may be data, so it is left out.
fn unescape(s: &[u8], mode: Mode) -> Result<Vec<u8>, FuncError> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                let (Some(h), Some(l)) = (
                    s.get(i + 1).and_then(|c| unhex(*c)),
                    s.get(i + 2).and_then(|c| unhex(*c)),
                ) else {
                    return Err(err("unable to parse url: invalid URL escape"));
                };
                if mode == Mode::Host && h < 8 && &s[i..i + 3] != b"%25" {
                    return Err(err("unable to parse url: invalid URL escape"));
                }
                out.push(h << 4 | l);
                i += 3;
            }
            c => {
                if mode == Mode::Host && c < 0x80 && should_escape(c, mode) {
                    return Err(err("unable to parse url: invalid character in host name"));
                }
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

fn escape(s: &[u8], mode: Mode) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for &c in s {
        if c >= 0x80 || should_escape(c, mode) {
            out.extend_from_slice(format!("%{c:02X}").as_bytes());
        } else {
            out.push(c);
        }
    }
    out
}

fn valid_optional_port(p: &[u8]) -> bool {
    p.is_empty() || (p[0] == b':' && p[1..].iter().all(u8::is_ascii_digit))
}

fn parse_host(host: &[u8]) -> Result<Vec<u8>, FuncError> {
    if host.starts_with(b"[") {
        let Some(i) = host.iter().rposition(|c| *c == b']') else {
            return Err(err("unable to parse url: missing ']' in host"));
        };
        if !valid_optional_port(&host[i + 1..]) {
            return Err(err("unable to parse url: invalid port after host"));
        }
    } else if let Some(i) = host.iter().rposition(|c| *c == b':')
        && !valid_optional_port(&host[i..])
    {
        return Err(err("unable to parse url: invalid port after host"));
    }
    unescape(host, Mode::Host)
}

fn valid_userinfo(s: &[u8]) -> bool {
    s.iter().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b':'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'%'
                    | b'@'
            )
    })
}

/// The fields of a parsed URL that sprig returns.
#[derive(Default)]
struct Url {
    scheme: Vec<u8>,
    opaque: Vec<u8>,
    user: Option<(Vec<u8>, Option<Vec<u8>>)>,
    host: Vec<u8>,
    path: Vec<u8>,
    query: Vec<u8>,
    fragment: Vec<u8>,
}

fn parse(raw: &[u8]) -> Result<Url, FuncError> {
    let (u, frag) = match raw.iter().position(|c| *c == b'#') {
        Some(i) => (&raw[..i], Some(&raw[i + 1..])),
        None => (raw, None),
    };
    let mut url = Url::default();
    if u.iter().any(|c| *c < 0x20 || *c == 0x7f) {
        return Err(err(
            "unable to parse url: net/url: invalid control character in URL",
        ));
    }
    if u == b"*" {
        url.path = b"*".to_vec();
    } else {
        // Scheme.
        let mut rest = u;
        for (i, &c) in u.iter().enumerate() {
            match c {
                b'a'..=b'z' | b'A'..=b'Z' => {}
                b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
                b':' if i == 0 => return Err(err("unable to parse url: missing protocol scheme")),
                b':' => {
                    url.scheme = u[..i].to_ascii_lowercase();
                    rest = &u[i + 1..];
                    break;
                }
                _ => break,
            }
        }
        let q = rest.iter().filter(|c| **c == b'?').count();
        if rest.ends_with(b"?") && q == 1 {
            rest = &rest[..rest.len() - 1];
        } else if let Some(i) = rest.iter().position(|c| *c == b'?') {
            url.query = rest[i + 1..].to_vec();
            rest = &rest[..i];
        }
        let mut done = false;
        if !rest.starts_with(b"/") {
            if !url.scheme.is_empty() {
                url.opaque = rest.to_vec();
                done = true;
            } else {
                let seg = rest.split(|c| *c == b'/').next().unwrap_or_default();
                if seg.contains(&b':') {
                    return Err(err(
                        "unable to parse url: first path segment in URL cannot contain colon",
                    ));
                }
            }
        }
        if !done {
            if (!url.scheme.is_empty() || !rest.starts_with(b"///")) && rest.starts_with(b"//") {
                let auth_and_rest = &rest[2..];
                let (authority, r) = match auth_and_rest.iter().position(|c| *c == b'/') {
                    Some(i) => (&auth_and_rest[..i], &auth_and_rest[i..]),
                    None => (auth_and_rest, &b""[..]),
                };
                rest = r;
                let at = authority.iter().rposition(|c| *c == b'@');
                url.host = parse_host(at.map_or(authority, |i| &authority[i + 1..]))?;
                if let Some(i) = at {
                    let ui = &authority[..i];
                    if !valid_userinfo(ui) {
                        return Err(err("unable to parse url: net/url: invalid userinfo"));
                    }
                    url.user = Some(match ui.iter().position(|c| *c == b':') {
                        None => (unescape(ui, Mode::UserPassword)?, None),
                        Some(j) => (
                            unescape(&ui[..j], Mode::UserPassword)?,
                            Some(unescape(&ui[j + 1..], Mode::UserPassword)?),
                        ),
                    });
                }
            }
            url.path = unescape(rest, Mode::Path)?;
        }
    }
    if let Some(f) = frag {
        url.fragment = unescape(f, Mode::Fragment)?;
    }
    Ok(url)
}

fn hostname(host: &[u8]) -> &[u8] {
    let mut h = host;
    if let Some(i) = host.iter().rposition(|c| *c == b':')
        && valid_optional_port(&host[i..])
    {
        h = &host[..i];
    }
    if h.starts_with(b"[") && h.ends_with(b"]") && h.len() >= 2 {
        h = &h[1..h.len() - 1];
    }
    h
}

/// sprig's `urlParse`.
pub fn url_parse(a: &[Value]) -> FResult {
    let u = parse(s(a, 0))?;
    let userinfo = match &u.user {
        None => Vec::new(),
        Some((name, pass)) => {
            let mut o = escape(name, Mode::UserPassword);
            if let Some(p) = pass {
                o.push(b':');
                o.extend_from_slice(&escape(p, Mode::UserPassword));
            }
            o
        }
    };
    let mut m = BTreeMap::new();
    m.insert(b"scheme".to_vec(), Value::str(&u.scheme));
    m.insert(b"host".to_vec(), Value::str(&u.host));
    m.insert(b"hostname".to_vec(), Value::str(hostname(&u.host)));
    m.insert(b"path".to_vec(), Value::str(&u.path));
    m.insert(b"query".to_vec(), Value::str(&u.query));
    m.insert(b"opaque".to_vec(), Value::str(&u.opaque));
    m.insert(b"fragment".to_vec(), Value::str(&u.fragment));
    m.insert(b"userinfo".to_vec(), Value::str(userinfo));
    Ok(Value::map(m))
}

fn dict_str(m: &BTreeMap<Vec<u8>, Value>, key: &str) -> Result<Vec<u8>, FuncError> {
    match m.get(key.as_bytes()) {
        None => Ok(Vec::new()),
        Some(Value::Str(s)) => Ok(s.to_vec()),
        Some(v) => Err(err(format!(
            "unable to parse {key} key, must be of type string, but {} found",
            v.kind_name()
        ))),
    }
}

/// sprig's `urlJoin`: Go's `url.URL.String` of the dict's fields.
pub fn url_join(a: &[Value]) -> FResult {
    let Value::Map(m, _) = &a[0] else {
        return Err(err("assignment to entry in nil map"));
    };
    let m = m.borrow();
    let (scheme, host, path) = (
        dict_str(&m, "scheme")?,
        dict_str(&m, "host")?,
        dict_str(&m, "path")?,
    );
    let (query, opaque, fragment) = (
        dict_str(&m, "query")?,
        dict_str(&m, "opaque")?,
        dict_str(&m, "fragment")?,
    );
    let userinfo = dict_str(&m, "userinfo")?;
    let user = if userinfo.is_empty() {
        None
    } else {
        let raw = [&b"proto://"[..], &userinfo, b"@host"].concat();
        parse(&raw)
            .map_err(|_| err("unable to parse userinfo in dict"))?
            .user
    };
    let mut buf = Vec::new();
    if !scheme.is_empty() {
        buf.extend_from_slice(&scheme);
        buf.push(b':');
    }
    if !opaque.is_empty() {
        buf.extend_from_slice(&opaque);
    } else {
        if !scheme.is_empty() || !host.is_empty() || user.is_some() {
            if !host.is_empty() || !path.is_empty() || user.is_some() {
                buf.extend_from_slice(b"//");
            }
            if let Some((name, pass)) = &user {
                buf.extend_from_slice(&escape(name, Mode::UserPassword));
                if let Some(p) = pass {
                    buf.push(b':');
                    buf.extend_from_slice(&escape(p, Mode::UserPassword));
                }
                buf.push(b'@');
            }
            buf.extend_from_slice(&escape(&host, Mode::Host));
        }
        let epath = if path == b"*" {
            path.clone()
        } else {
            escape(&path, Mode::Path)
        };
        if !epath.is_empty() && epath[0] != b'/' && !host.is_empty() {
            buf.push(b'/');
        }
        if buf.is_empty()
            && epath
                .split(|c| *c == b'/')
                .next()
                .unwrap_or_default()
                .contains(&b':')
        {
            buf.extend_from_slice(b"./");
        }
        buf.extend_from_slice(&epath);
    }
    if !query.is_empty() {
        buf.push(b'?');
        buf.extend_from_slice(&query);
    }
    if !fragment.is_empty() {
        buf.push(b'#');
        buf.extend_from_slice(&escape(&fragment, Mode::Fragment));
    }
    Ok(Value::str(buf))
}
