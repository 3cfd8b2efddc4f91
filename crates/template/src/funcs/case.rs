//! sprig's `snakecase`, `kebabcase` and `camelcase`: the word-splitting rules of the Go
//! library sprig uses (xstrings), rewritten here.

use super::strings::is_space;
use crate::engine::fmt::decode_rune;

const RUNE_ERROR: char = '\u{fffd}';

#[derive(Clone, Copy, PartialEq, Eq)]
enum Wt {
    Invalid,
    Number,
    Upper,
    Alphabet,
    Connector,
    Punct,
    Other,
}

fn is_connector(r: char) -> bool {
    r == '-' || r == '_' || is_space(r)
}

fn is_upper(r: char) -> bool {
    r.is_uppercase()
}

/// An approximation of Go's `unicode.IsPunct` (category P): ASCII and the common ranges.
fn is_punct(r: char) -> bool {
    if r.is_ascii() {
        return r.is_ascii_punctuation() && !"$+<=>^`|~".contains(r);
    }
    matches!(r as u32,
        0xa1 | 0xa7 | 0xab | 0xb6 | 0xb7 | 0xbb | 0xbf
        | 0x2010..=0x2027 | 0x2030..=0x2043 | 0x2045..=0x2051 | 0x2053..=0x205e
        | 0x3001..=0x3003 | 0x3008..=0x3011 | 0x3014..=0x301f)
}

fn is_alphabet(r: char) -> bool {
    if !r.is_alphabetic() {
        return false;
    }
    let c = r as u32;
    !((0x4e00..=0x9fcc).contains(&c)
        || (0x3400..=0x4d85).contains(&c)
        || (0x20000..=0x2b81d).contains(&c))
}

fn decode(s: &[u8]) -> (char, usize) {
    let (r, n) = decode_rune(s);
    (r.unwrap_or(RUNE_ERROR), n)
}

fn next_valid_rune(mut s: &[u8], prev: char) -> (char, usize) {
    let mut size = 0;
    while !s.is_empty() {
        let (r, sz) = decode(s);
        size += sz;
        if r != RUNE_ERROR {
            return (r, size);
        }
        s = &s[sz..];
    }
    (prev, size)
}

fn next_word(s: &[u8]) -> (Wt, &[u8], &[u8]) {
    if s.is_empty() {
        return (Wt::Invalid, s, s);
    }
    let mut remaining = s;
    let (mut r, mut size) = next_valid_rune(remaining, RUNE_ERROR);
    let mut offset = size;
    if r == RUNE_ERROR {
        return (Wt::Invalid, &s[..offset], &s[offset..]);
    }
    let run =
        |remaining: &mut &[u8], r: &mut char, offset: &mut usize, keep: &dyn Fn(char) -> bool| {
            while !remaining.is_empty() {
                let (nr, sz) = next_valid_rune(remaining, *r);
                *r = nr;
                if !keep(nr) {
                    break;
                }
                *offset += sz;
                *remaining = &remaining[sz..];
            }
        };
    let wt;
    if is_connector(r) {
        wt = Wt::Connector;
        remaining = &remaining[size..];
        run(&mut remaining, &mut r, &mut offset, &is_connector);
    } else if is_punct(r) {
        wt = Wt::Punct;
        remaining = &remaining[size..];
        run(&mut remaining, &mut r, &mut offset, &is_punct);
    } else if is_upper(r) {
        wt = Wt::Upper;
        remaining = &remaining[size..];
        if !remaining.is_empty() {
            (r, size) = next_valid_rune(remaining, r);
            if is_upper(r) {
                let mut prev_size = size;
                offset += size;
                remaining = &remaining[size..];
                while !remaining.is_empty() {
                    (r, size) = next_valid_rune(remaining, r);
                    if !is_upper(r) {
                        break;
                    }
                    prev_size = size;
                    offset += size;
                    remaining = &remaining[size..];
                }
                if !remaining.is_empty() && is_alphabet(r) {
                    offset -= prev_size;
                    remaining = &s[offset..];
                }
            } else if is_alphabet(r) {
                offset += size;
                remaining = &remaining[size..];
                run(&mut remaining, &mut r, &mut offset, &|c| {
                    is_alphabet(c) && !is_upper(c)
                });
            }
        }
    } else if is_alphabet(r) {
        wt = Wt::Alphabet;
        remaining = &remaining[size..];
        run(&mut remaining, &mut r, &mut offset, &|c| {
            is_alphabet(c) && !is_upper(c)
        });
    } else if r.is_numeric() {
        wt = Wt::Number;
        remaining = &remaining[size..];
        run(&mut remaining, &mut r, &mut offset, &char::is_numeric);
    } else {
        wt = Wt::Other;
        remaining = &remaining[size..];
        while !remaining.is_empty() {
            let (nr, sz) = next_valid_rune(remaining, r);
            r = nr;
            if sz == 0 || is_connector(nr) || is_alphabet(nr) || nr.is_numeric() || is_punct(nr) {
                break;
            }
            offset += sz;
            remaining = &remaining[sz..];
        }
    }
    (wt, &s[..offset], remaining)
}

fn lower_rune(c: char) -> char {
    let mut it = c.to_lowercase();
    match (it.next(), it.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

fn upper_rune(c: char) -> char {
    let mut it = c.to_uppercase();
    match (it.next(), it.next()) {
        (Some(u), None) => u,
        _ => c,
    }
}

fn push_rune(out: &mut Vec<u8>, c: char) {
    let mut b = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
}

fn to_lower(out: &mut Vec<u8>, wt: Wt, s: &[u8], connector: char) {
    if wt != Wt::Upper && wt != Wt::Connector {
        out.extend_from_slice(s);
        return;
    }
    let mut s = s;
    while !s.is_empty() {
        let (r, size) = decode(s);
        s = &s[size.max(1)..];
        if is_connector(r) {
            push_rune(out, connector);
        } else if is_upper(r) {
            push_rune(out, lower_rune(r));
        } else {
            push_rune(out, r);
        }
    }
}

/// xstrings' `camelCaseToLowerCase` (snakecase with `_`, kebabcase with `-`).
pub fn to_lower_case(s: &[u8], connector: char) -> Vec<u8> {
    let mut buf = Vec::new();
    if s.is_empty() {
        return buf;
    }
    let (mut wt, mut word, mut remaining) = next_word(s);
    while !remaining.is_empty() {
        if wt != Wt::Connector {
            to_lower(&mut buf, wt, word, connector);
        }
        let prev = wt;
        let last = word;
        (wt, word, remaining) = next_word(remaining);
        match prev {
            Wt::Number => {
                while wt == Wt::Alphabet || wt == Wt::Number {
                    to_lower(&mut buf, wt, word, connector);
                    (wt, word, remaining) = next_word(remaining);
                }
                if wt != Wt::Invalid && wt != Wt::Punct && wt != Wt::Connector {
                    push_rune(&mut buf, connector);
                }
            }
            Wt::Connector => to_lower(&mut buf, prev, last, connector),
            Wt::Punct => {}
            _ => {
                if wt != Wt::Number {
                    if wt != Wt::Connector && wt != Wt::Punct {
                        push_rune(&mut buf, connector);
                    }
                    continue;
                }
                if remaining.is_empty() {
                    continue;
                }
                let last = word;
                (wt, word, remaining) = next_word(remaining);
                if wt != Wt::Alphabet {
                    to_lower(&mut buf, Wt::Number, last, connector);
                    if wt != Wt::Connector && wt != Wt::Punct {
                        push_rune(&mut buf, connector);
                    }
                    continue;
                }
                push_rune(&mut buf, connector);
                to_lower(&mut buf, Wt::Number, last, connector);
                while wt == Wt::Alphabet || wt == Wt::Number {
                    to_lower(&mut buf, wt, word, connector);
                    (wt, word, remaining) = next_word(remaining);
                }
                if wt != Wt::Invalid && wt != Wt::Connector && wt != Wt::Punct {
                    push_rune(&mut buf, connector);
                }
            }
        }
    }
    to_lower(&mut buf, wt, word, connector);
    buf
}

/// xstrings' `ToPascalCase` (sprig's `camelcase`).
pub fn to_pascal_case(s: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    if s.is_empty() {
        return buf;
    }
    let mut s = s;
    let mut first_upper = false;
    let mut r0 = RUNE_ERROR;
    let mut size = 0;
    while !s.is_empty() {
        (r0, size) = decode(s);
        s = &s[size..];
        if !is_connector(r0) {
            first_upper = is_upper(r0);
            r0 = upper_rune(r0);
            break;
        }
        push_rune(&mut buf, r0);
    }
    if s.is_empty() {
        if size != 0 {
            push_rune(&mut buf, r0);
        }
        return buf;
    }
    while !s.is_empty() {
        let r1 = r0;
        (r0, size) = decode(s);
        s = &s[size..];
        if is_connector(r0) && is_connector(r1) {
            push_rune(&mut buf, r1);
            continue;
        }
        if is_connector(r1) {
            first_upper = is_upper(r0);
            r0 = upper_rune(r0);
        } else {
            if first_upper {
                if is_upper(r0) {
                    r0 = lower_rune(r0);
                } else {
                    first_upper = false;
                }
            }
            push_rune(&mut buf, r1);
        }
    }
    push_rune(&mut buf, r0);
    buf
}
