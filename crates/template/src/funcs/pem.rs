//! Go's `encoding/pem` (`Decode`, `Encode`) and the few DER shapes the key functions read and
//! write (PKCS#1, PKCS#8, SEC 1, SubjectPublicKeyInfo).

use super::misc::{b64dec_go, b64enc};

/// A PEM block.
#[derive(Clone, Debug)]
pub struct Block {
    /// The type (`CERTIFICATE`, `PRIVATE KEY`, ...).
    pub kind: Vec<u8>,
    /// Headers in the order read.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// The decoded bytes.
    pub bytes: Vec<u8>,
}

fn trim_right(mut s: &[u8]) -> &[u8] {
    while let Some(c) = s.last() {
        if *c == b' ' || *c == b'\t' {
            s = &s[..s.len() - 1];
        } else {
            break;
        }
    }
    s
}

/// Go's `getLine`: the line without CR LF and trailing blanks, the rest, bytes consumed.
fn get_line(data: &[u8]) -> (&[u8], &[u8], usize) {
    match data.iter().position(|c| *c == b'\n') {
        None => (trim_right(data), &[], data.len()),
        Some(i) => {
            let j = i + 1;
            let end = if i > 0 && data[i - 1] == b'\r' {
                i - 1
            } else {
                i
            };
            (trim_right(&data[..end]), &data[j..], j)
        }
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn rfind(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).rposition(|w| w == n)
}

fn trim_space(mut s: &[u8]) -> &[u8] {
    while s.first().is_some_and(u8::is_ascii_whitespace) {
        s = &s[1..];
    }
    while s.last().is_some_and(u8::is_ascii_whitespace) {
        s = &s[..s.len() - 1];
    }
    s
}

/// Go's `pem.Decode`: the first block and the rest after it, or `None` (and the whole input).
pub fn decode(data: &[u8]) -> (Option<Block>, &[u8]) {
    const END: &[u8] = b"\n-----END ";
    const START: &[u8] = b"-----BEGIN ";
    let mut rest = data;
    let mut end_trailer: isize = 0;
    loop {
        if end_trailer < 0 || end_trailer as usize > rest.len() {
            return (None, data);
        }
        rest = &rest[end_trailer as usize..];
        let Some(end_index) = find(rest, END) else {
            return (None, data);
        };
        let mut end_index = end_index as isize;
        end_trailer = end_index + END.len() as isize;
        let begin = match rfind(&rest[..end_index as usize], START) {
            Some(b) if b == 0 || rest[b - 1] == b'\n' => b,
            _ => continue,
        };
        rest = &rest[begin + START.len()..];
        end_index -= (begin + START.len()) as isize;
        end_trailer -= (begin + START.len()) as isize;
        let (type_line, r, consumed) = get_line(rest);
        rest = r;
        end_index -= consumed as isize;
        end_trailer -= consumed as isize;
        let Some(kind) = type_line.strip_suffix(b"-----") else {
            continue;
        };
        let mut headers = Vec::new();
        loop {
            if rest.is_empty() {
                return (None, data);
            }
            let (line, next, consumed) = get_line(rest);
            let Some(i) = line.iter().position(|c| *c == b':') else {
                break;
            };
            headers.push((
                trim_space(&line[..i]).to_vec(),
                trim_space(&line[i + 1..]).to_vec(),
            ));
            rest = next;
            end_index -= consumed as isize;
            end_trailer -= consumed as isize;
        }
        if !headers.is_empty() && end_index < 0 {
            continue;
        }
        if end_trailer < 0 || end_trailer as usize > rest.len() {
            continue;
        }
        let trailer_all = &rest[end_trailer as usize..];
        let tlen = kind.len() + 5;
        if trailer_all.len() < tlen {
            continue;
        }
        let (trailer, rest_of_end) = trailer_all.split_at(tlen);
        if !trailer.starts_with(kind) || !trailer.ends_with(b"-----") {
            continue;
        }
        if !get_line(rest_of_end).0.is_empty() {
            continue;
        }
        let mut bytes = Vec::new();
        if end_index > 0 {
            let b64: Vec<u8> = rest[..end_index as usize]
                .iter()
                .copied()
                .filter(|c| *c != b' ' && *c != b'\t')
                .collect();
            match b64dec_go(&b64) {
                Ok(b) => bytes = b,
                Err(_) => continue,
            }
        }
        let after = &rest[(end_index.max(0) as usize + END.len() - 1).min(rest.len())..];
        let (_, rest, _) = get_line(after);
        return (
            Some(Block {
                kind: kind.to_vec(),
                headers,
                bytes,
            }),
            rest,
        );
    }
}

/// Go's `pem.Encode` (headers sorted, `Proc-Type` first).
pub fn encode(b: &Block) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.bytes.len() * 4 / 3 + 64);
    out.extend_from_slice(b"-----BEGIN ");
    out.extend_from_slice(&b.kind);
    out.extend_from_slice(b"-----\n");
    if !b.headers.is_empty() {
        let mut hs: Vec<&(Vec<u8>, Vec<u8>)> = b.headers.iter().collect();
        hs.sort_by(|x, y| {
            (x.0 != b"Proc-Type")
                .cmp(&(y.0 != b"Proc-Type"))
                .then(x.0.cmp(&y.0))
        });
        hs.dedup_by(|x, y| x.0 == y.0);
        for (k, v) in hs {
            out.extend_from_slice(k);
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.push(b'\n');
        }
        out.push(b'\n');
    }
    for line in b64enc(&b.bytes).chunks(64) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(b"-----END ");
    out.extend_from_slice(&b.kind);
    out.extend_from_slice(b"-----\n");
    out
}

/// PEM text of `der` under `kind`, without headers.
pub fn encode_der(kind: &str, der: &[u8]) -> Vec<u8> {
    encode(&Block {
        kind: kind.as_bytes().to_vec(),
        headers: Vec::new(),
        bytes: der.to_vec(),
    })
}

/// A DER element: tag, content.
pub type Tlv<'a> = (u8, &'a [u8]);

/// Reads one DER element from the front of `d`.
pub fn read(d: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let tag = *d.first()?;
    let first = *d.get(1)?;
    let (len, hdr) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || d.len() < 2 + n {
            return None;
        }
        let mut l = 0usize;
        for b in &d[2..2 + n] {
            l = (l << 8) | *b as usize;
        }
        (l, 2 + n)
    };
    let end = hdr.checked_add(len)?;
    if d.len() < end {
        return None;
    }
    Some(((tag, &d[hdr..end]), &d[end..]))
}

/// All elements of a constructed content.
pub fn read_all(mut d: &[u8]) -> Option<Vec<Tlv<'_>>> {
    let mut out = Vec::new();
    while !d.is_empty() {
        let (t, rest) = read(d)?;
        out.push(t);
        d = rest;
    }
    Some(out)
}

/// Writes a DER element.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// A SEQUENCE of already encoded elements.
pub fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// A non-negative INTEGER from big-endian magnitude bytes.
pub fn uint(mag: &[u8]) -> Vec<u8> {
    let skip = mag.iter().take_while(|b| **b == 0).count();
    let mut m = mag[skip..].to_vec();
    if m.is_empty() || m[0] & 0x80 != 0 {
        m.insert(0, 0);
    }
    tlv(0x02, &m)
}

/// An OBJECT IDENTIFIER from its dotted form.
pub fn oid(dotted: &[u64]) -> Vec<u8> {
    let mut c = Vec::new();
    let mut arcs = vec![dotted[0] * 40 + dotted[1]];
    arcs.extend_from_slice(&dotted[2..]);
    for a in arcs {
        let mut tmp = vec![(a & 0x7f) as u8];
        let mut v = a >> 7;
        while v > 0 {
            tmp.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        tmp.reverse();
        c.extend_from_slice(&tmp);
    }
    tlv(0x06, &c)
}

/// OIDs of the key algorithms.
pub mod oids {
    /// rsaEncryption.
    pub const RSA: &[u64] = &[1, 2, 840, 113_549, 1, 1, 1];
    /// id-ecPublicKey.
    pub const EC: &[u64] = &[1, 2, 840, 10_045, 2, 1];
    /// Ed25519.
    pub const ED25519: &[u64] = &[1, 3, 101, 112];
    /// X25519.
    pub const X25519: &[u64] = &[1, 3, 101, 110];
    /// prime256v1.
    pub const P256: &[u64] = &[1, 2, 840, 10_045, 3, 1, 7];
    /// secp384r1.
    pub const P384: &[u64] = &[1, 3, 132, 0, 34];
    /// secp521r1.
    pub const P521: &[u64] = &[1, 3, 132, 0, 35];
}

/// The algorithm identifier of a PKCS#8 or SPKI structure: key OID and parameters.
pub fn alg_id(key_oid: &[u64], params: Option<&[u64]>) -> Vec<u8> {
    match (key_oid, params) {
        (k, _) if k == oids::RSA => seq(&[&oid(k), &[0x05, 0x00]]),
        (k, Some(p)) => seq(&[&oid(k), &oid(p)]),
        (k, None) => seq(&[&oid(k)]),
    }
}

/// PKCS#8 `PrivateKeyInfo`.
pub fn pkcs8(alg: &[u8], private_key: &[u8]) -> Vec<u8> {
    seq(&[&[0x02, 0x01, 0x00], alg, &tlv(0x04, private_key)])
}

/// `SubjectPublicKeyInfo`.
pub fn spki(alg: &[u8], public_key: &[u8]) -> Vec<u8> {
    let mut bits = vec![0u8];
    bits.extend_from_slice(public_key);
    seq(&[alg, &tlv(0x03, &bits)])
}

/// SEC 1 `ECPrivateKey`; `curve` is written when given (Go's `MarshalECPrivateKey`), left
/// out inside PKCS#8 (Go's `MarshalPKCS8PrivateKey`).
pub fn sec1(private: &[u8], curve: Option<&[u64]>, public: &[u8]) -> Vec<u8> {
    let mut bits = vec![0u8];
    bits.extend_from_slice(public);
    let mut parts: Vec<Vec<u8>> = vec![vec![0x02, 0x01, 0x01], tlv(0x04, private)];
    if let Some(c) = curve {
        parts.push(tlv(0xa0, &oid(c)));
    }
    parts.push(tlv(0xa1, &tlv(0x03, &bits)));
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    seq(&refs)
}
