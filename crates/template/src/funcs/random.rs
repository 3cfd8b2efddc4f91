//! sprig's random functions, from the operating system's cryptographic random source. Their
//! outputs are checked by properties (length, alphabet, format), not against Go.

use super::args::{err, int, s};
use super::{Budget, FResult, Func, FuncError, Ty};
use crate::engine::fmt as gofmt;
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

fn random_bytes(n: usize) -> Result<Vec<u8>, FuncError> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|_| err("random source unavailable"))?;
    Ok(b)
}

/// A uniformly random index below `n` (rejection sampling).
fn below(n: u64) -> Result<u64, FuncError> {
    let zone = u64::MAX - (u64::MAX % n);
    loop {
        let b = random_bytes(8)?;
        let v = u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
        if v < zone {
            return Ok(v % n);
        }
    }
}

fn random_string(b: &mut Budget, count: i64, alphabet: &[u8]) -> FResult {
    if count <= 0 {
        return Ok(Value::str(""));
    }
    b.alloc(count as usize)?;
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        out.push(alphabet[below(alphabet.len() as u64)? as usize]);
    }
    Ok(Value::str(out))
}

const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const DIGITS: &[u8] = b"0123456789";

fn ascii() -> Vec<u8> {
    (32u8..127).collect()
}

fn uuidv4() -> FResult {
    let mut b = random_bytes(16)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(Value::str(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )))
}

fn shuffle(b: &mut Budget, st: &[u8]) -> FResult {
    b.alloc(st.len())?;
    let mut runes: Vec<&[u8]> = Vec::new();
    let mut i = 0;
    while i < st.len() {
        let (_, n) = gofmt::decode_rune(&st[i..]);
        let n = n.max(1);
        runes.push(&st[i..i + n]);
        i += n;
    }
    for i in (1..runes.len()).rev() {
        let j = below(i as u64 + 1)? as usize;
        runes.swap(i, j);
    }
    Ok(Value::str(runes.concat()))
}

fn b64(d: &[u8]) -> Vec<u8> {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut o = Vec::new();
    for c in d.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            o.push(if i <= c.len() {
                B64[((n >> (18 - 6 * i)) & 63) as usize]
            } else {
                b'='
            });
        }
    }
    o
}

pub(super) fn lookup(name: &str) -> Option<Func> {
    use Ty::*;
    Some(match name {
        "randAlphaNum" => f!(&[Int], None, |b, a| random_string(b, int(&a, 0), ALNUM)),
        "randAlpha" => f!(&[Int], None, |b, a| random_string(b, int(&a, 0), ALPHA)),
        "randNumeric" => f!(&[Int], None, |b, a| random_string(b, int(&a, 0), DIGITS)),
        "randAscii" => f!(&[Int], None, |b, a| random_string(b, int(&a, 0), &ascii())),
        "randInt" => f!(&[Int, Int], None, |_, a| {
            let (min, max) = (int(&a, 0), int(&a, 1));
            let n = max
                .checked_sub(min)
                .filter(|n| *n > 0)
                .ok_or_else(|| err("invalid argument to Intn"))?;
            Ok(Value::Int(min + below(n as u64)? as i64))
        }),
        "randBytes" => f!(&[Int], None, |b, a| {
            let n = int(&a, 0);
            if n < 0 {
                return Err(err("makeslice: len out of range"));
            }
            b.alloc((n as usize).saturating_mul(2))?;
            Ok(Value::str(b64(&random_bytes(n as usize)?)))
        }),
        "uuidv4" => f!(&[], None, |_, _| uuidv4()),
        "shuffle" => f!(&[Str], None, |b, a| shuffle(b, s(&a, 0))),
        _ => return None,
    })
}
