//! Private keys as Go's `crypto/x509` reads and writes them: PKCS#1, PKCS#8 and SEC 1 in, the
//! encodings Go's `Marshal*` functions produce out, and signing keys for certificates.

use super::pem::{self, oids};

/// A parsed private key.
#[derive(Clone, Debug)]
pub enum Key {
    /// RSA, as canonical PKCS#1 DER.
    Rsa(Vec<u8>),
    /// ECDSA: curve OID, private scalar (curve size), uncompressed public point.
    Ec {
        /// Named curve.
        curve: &'static [u64],
        /// Private scalar.
        d: Vec<u8>,
        /// Public point (`04 || x || y`).
        public: Vec<u8>,
    },
    /// Ed25519 seed.
    Ed25519(Vec<u8>),
}

/// The curve of an OID and its scalar size.
fn curve_of(o: &[u8]) -> Option<(&'static [u64], usize)> {
    [(oids::P256, 32), (oids::P384, 48), (oids::P521, 66)]
        .into_iter()
        .find(|(c, _)| pem::oid(c)[2..] == *o)
}

fn ec_alg(curve: &[u64]) -> &'static aws_lc_rs::signature::EcdsaSigningAlgorithm {
    use aws_lc_rs::signature::*;
    if curve == oids::P384 {
        &ECDSA_P384_SHA384_ASN1_SIGNING
    } else if curve == oids::P521 {
        &ECDSA_P521_SHA512_ASN1_SIGNING
    } else {
        &ECDSA_P256_SHA256_ASN1_SIGNING
    }
}

/// Go's `ParsePKCS1PrivateKey` (two-prime keys), re-encoded canonically.
pub fn parse_pkcs1(der: &[u8]) -> Option<Key> {
    let ((tag, body), rest) = pem::read(der)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let items = pem::read_all(body)?;
    if items.len() != 9 || items.iter().any(|(t, c)| *t != 0x02 || c.is_empty()) {
        return None;
    }
    if items[0].1 != [0] || items[1..].iter().any(|(_, c)| c[0] & 0x80 != 0) {
        return None;
    }
    // aws-lc checks the key is consistent (2048 to 8192 bits); smaller keys, down to the 1024
    // bits Go's RSA operations accept, are checked by RustCrypto's RSA.
    let ints: Vec<Vec<u8>> = items.iter().map(|(_, c)| pem::uint(c)).collect();
    let refs: Vec<&[u8]> = ints.iter().map(Vec::as_slice).collect();
    let canon = pem::seq(&refs);
    if aws_lc_rs::rsa::KeyPair::from_der(&canon).is_err() && rsa_key(&canon).is_none() {
        return None;
    }
    Some(Key::Rsa(canon))
}

/// RustCrypto's RSA key of a canonical PKCS#1 structure, if consistent and of 1024 to 8192
/// bits.
pub fn rsa_key(pkcs1: &[u8]) -> Option<rsa::PrivateKey> {
    use rsa::BoxedUint;
    let ((_, body), _) = pem::read(pkcs1)?;
    let items = pem::read_all(body)?;
    let n = |i: usize| {
        items
            .get(i)
            .map(|(_, c)| BoxedUint::from_be_slice_vartime(c))
    };
    let modulus = n(1)?;
    // Go's crypto/rsa refuses keys under 1024 bits; RustCrypto's would take them.
    if !(1024..=8192).contains(&modulus.bit_width_vartime()) {
        return None;
    }
    rsa::PrivateKey::from_components(modulus, n(2)?, n(3)?, vec![n(4)?, n(5)?]).ok()
}

/// Go's `ParseECPrivateKey`; `curve` comes from PKCS#8 parameters when the SEC 1 structure
/// has none.
pub fn parse_sec1(der: &[u8], curve: Option<&[u8]>) -> Option<Key> {
    let ((tag, body), rest) = pem::read(der)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let items = pem::read_all(body)?;
    if items.len() < 2 || items[0] != (0x02, &[1][..]) || items[1].0 != 0x04 {
        return None;
    }
    let mut oid = curve;
    for (t, c) in &items[2..] {
        if *t == 0xa0 {
            let ((0x06, o), _) = pem::read(c)? else {
                return None;
            };
            oid = Some(o);
        }
    }
    let (curve, size) = curve_of(oid?)?;
    let raw = items[1].1;
    if raw.len() > size {
        return None;
    }
    let mut d = vec![0u8; size - raw.len()];
    d.extend_from_slice(raw);
    // The public point from the private scalar, as Go computes it.
    let probe = pem::sec1(&d, Some(curve), &[]);
    let probe = strip_public(&probe);
    let kp =
        aws_lc_rs::signature::EcdsaKeyPair::from_private_key_der(ec_alg(curve), &probe).ok()?;
    use aws_lc_rs::signature::KeyPair as _;
    Some(Key::Ec {
        curve,
        d,
        public: kp.public_key().as_ref().to_vec(),
    })
}

/// SEC 1 without the (empty) public key element.
fn strip_public(sec1: &[u8]) -> Vec<u8> {
    let Some(((_, body), _)) = pem::read(sec1) else {
        return sec1.to_vec();
    };
    let items = pem::read_all(body).unwrap_or_default();
    let parts: Vec<Vec<u8>> = items
        .iter()
        .filter(|(t, _)| *t != 0xa1)
        .map(|(t, c)| pem::tlv(*t, c))
        .collect();
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    pem::seq(&refs)
}

/// Go's `ParsePKCS8PrivateKey` for RSA, ECDSA and Ed25519 keys.
pub fn parse_pkcs8(der: &[u8]) -> Option<Key> {
    let ((tag, body), rest) = pem::read(der)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let items = pem::read_all(body)?;
    if items.len() < 3 || items[0].0 != 0x02 || items[1].0 != 0x30 || items[2].0 != 0x04 {
        return None;
    }
    let alg = pem::read_all(items[1].1)?;
    let (0x06, key_oid) = *alg.first()? else {
        return None;
    };
    let is = |o: &[u64]| pem::oid(o)[2..] == *key_oid;
    if is(oids::RSA) {
        parse_pkcs1(items[2].1)
    } else if is(oids::EC) {
        let curve = match alg.get(1) {
            Some((0x06, c)) => Some(*c),
            _ => None,
        };
        parse_sec1(items[2].1, curve)
    } else if is(oids::ED25519) {
        let ((0x04, seed), _) = pem::read(items[2].1)? else {
            return None;
        };
        (seed.len() == 32).then(|| Key::Ed25519(seed.to_vec()))
    } else {
        None
    }
}

/// ESO's `parsePrivateKey`: PKCS#1, then PKCS#8, then SEC 1.
pub fn parse_any(der: &[u8]) -> Option<Key> {
    parse_pkcs1(der)
        .or_else(|| parse_pkcs8(der))
        .or_else(|| parse_sec1(der, None))
}

impl Key {
    /// Go's `MarshalPKCS8PrivateKey`.
    pub fn pkcs8(&self) -> Vec<u8> {
        match self {
            Key::Rsa(p1) => pem::pkcs8(&pem::alg_id(oids::RSA, None), p1),
            Key::Ec { curve, d, public } => pem::pkcs8(
                &pem::alg_id(oids::EC, Some(curve)),
                &pem::sec1(d, None, public),
            ),
            Key::Ed25519(seed) => {
                pem::pkcs8(&pem::alg_id(oids::ED25519, None), &pem::tlv(0x04, seed))
            }
        }
    }

    /// sprig's `pemBlockForKey`: PKCS#1 for RSA, SEC 1 for ECDSA, PKCS#8 otherwise.
    pub fn sprig_pem(&self) -> Vec<u8> {
        match self {
            Key::Rsa(p1) => pem::encode_der("RSA PRIVATE KEY", p1),
            Key::Ec { curve, d, public } => {
                pem::encode_der("EC PRIVATE KEY", &pem::sec1(d, Some(curve), public))
            }
            Key::Ed25519(_) => pem::encode_der("PRIVATE KEY", &self.pkcs8()),
        }
    }

    /// A certificate signing key with Go's signature algorithm for the key type.
    pub fn signer(&self) -> Result<rcgen::KeyPair, String> {
        let alg: &'static rcgen::SignatureAlgorithm = match self {
            Key::Rsa(_) => &rcgen::PKCS_RSA_SHA256,
            Key::Ec { curve, .. } if *curve == oids::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            Key::Ec { curve, .. } if *curve == oids::P521 => &rcgen::PKCS_ECDSA_P521_SHA512,
            Key::Ec { .. } => &rcgen::PKCS_ECDSA_P256_SHA256,
            Key::Ed25519(_) => &rcgen::PKCS_ED25519,
        };
        let der = match self {
            // aws-lc reads EC keys with the curve inside the SEC 1 structure.
            Key::Ec { curve, d, public } => pem::pkcs8(
                &pem::alg_id(oids::EC, Some(curve)),
                &pem::sec1(d, Some(curve), public),
            ),
            _ => self.pkcs8(),
        };
        rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der.into(), alg)
            .map_err(|e| format!("unusable private key: {e}"))
    }

    /// Generates a key as sprig's `genPrivateKey` does: RSA of `bits`, ECDSA P-256, Ed25519.
    pub fn generate(kind: &str, rsa_bits: usize) -> Result<Key, String> {
        use aws_lc_rs::encoding::AsDer;
        let fail = |_| "failed to generate private key".to_string();
        match kind {
            "rsa" => {
                let size = match rsa_bits {
                    2048 => aws_lc_rs::rsa::KeySize::Rsa2048,
                    _ => aws_lc_rs::rsa::KeySize::Rsa4096,
                };
                let kp = aws_lc_rs::rsa::KeyPair::generate(size).map_err(fail)?;
                let p8 = kp.as_der().map_err(fail)?;
                parse_pkcs8(p8.as_ref()).ok_or_else(|| "generated key unreadable".to_string())
            }
            "ecdsa" => {
                let kp = aws_lc_rs::signature::EcdsaKeyPair::generate(
                    &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                )
                .map_err(fail)?;
                let p8 = kp.to_pkcs8v1().map_err(fail)?;
                parse_pkcs8(p8.as_ref()).ok_or_else(|| "generated key unreadable".to_string())
            }
            "ed25519" => {
                let kp = aws_lc_rs::signature::Ed25519KeyPair::generate().map_err(fail)?;
                let p8 = kp.to_pkcs8v1().map_err(fail)?;
                parse_pkcs8(p8.as_ref()).ok_or_else(|| "generated key unreadable".to_string())
            }
            _ => Err(format!("unsupported key type {kind}")),
        }
    }
}

/// One DER element as Go's `encoding/asn1` reads it: single-byte tag (the only kind a DSA key
/// has), definite length in the shortest form. Returns the tag, the content and the rest.
fn read_strict(d: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *d.first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let first = *d.get(1)?;
    let (len, hdr) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        // 0x80 is BER's indefinite length; Go refuses lengths that do not fit an int32.
        if n == 0 || n > 4 || d.len() < 2 + n || d[2] == 0 {
            return None;
        }
        let len = d[2..2 + n]
            .iter()
            .fold(0usize, |l, b| (l << 8) | usize::from(*b));
        if len < 0x80 || len > i32::MAX as usize {
            return None;
        }
        (len, 2 + n)
    };
    let end = hdr.checked_add(len)?;
    (d.len() >= end).then(|| (tag, &d[hdr..end], &d[end..]))
}

/// An INTEGER's content as Go accepts it: not empty, in the fewest bytes.
fn minimal_int(c: &[u8]) -> bool {
    match c {
        [] => false,
        [_] => true,
        [a, b, ..] => !((*a == 0 && b & 0x80 == 0) || (*a == 0xff && b & 0x80 != 0)),
    }
}

/// The integers of sprig's `DSAKeyFormat` (`Version`, `P`, `Q`, `G`, `Y`, `X`), as Go's
/// `asn1.Unmarshal` reads the `DSA PRIVATE KEY` PEM block: a SEQUENCE whose first six elements
/// are minimally encoded INTEGERs (the version fitting 64 bits); later elements and bytes after
/// the SEQUENCE are ignored, and the numbers are not checked further. Each integer is its
/// two's-complement content bytes.
pub fn parse_dsa(der: &[u8]) -> Option<[Vec<u8>; 6]> {
    let (0x30, mut body, _) = read_strict(der)? else {
        return None;
    };
    let mut ints: [Vec<u8>; 6] = Default::default();
    for (i, slot) in ints.iter_mut().enumerate() {
        let (0x02, c, rest) = read_strict(body)? else {
            return None;
        };
        if !minimal_int(c) || (i == 0 && c.len() > 8) {
            return None;
        }
        *slot = c.to_vec();
        body = rest;
    }
    Some(ints)
}

/// Generates a key as sprig's `genPrivateKey "dsa"` does: fresh parameters of Go's
/// `dsa.L2048N256` sizes (2048-bit `p`, 256-bit `q`), a key pair on them, and sprig's
/// `DSAKeyFormat` DER (version 0, `p`, `q`, `g`, `y`, `x`).
pub fn generate_dsa() -> Result<Vec<u8>, String> {
    use dsa::{Components, KeySize, SigningKey};
    let mut rng = getrandom::SysRng;
    let components =
        Components::try_generate_from_rng_with_key_size(&mut rng, KeySize::DSA_2048_256)
            .map_err(|e| format!("failed to generate dsa params: {e}"))?;
    let key = SigningKey::try_generate_from_rng_with_components(&mut rng, components)
        .map_err(|e| format!("failed to generate private key: {e}"))?;
    let public = key.verifying_key();
    let c = public.components();
    let parts = [
        pem::uint(&[0]),
        pem::uint(&c.p().to_be_bytes()),
        pem::uint(&c.q().to_be_bytes()),
        pem::uint(&c.g().to_be_bytes()),
        pem::uint(&public.y().to_be_bytes()),
        pem::uint(&key.x().to_be_bytes()),
    ];
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    Ok(pem::seq(&refs))
}

/// What sprig's `parsePrivateKeyPEM` accepts: every key [`parse_sprig_pem`] returns, and DSA
/// keys, which Go reads but cannot sign certificates with (`buildCustomCert` takes them).
pub fn check_sprig_pem(text: &[u8]) -> Result<(), String> {
    read_sprig_pem(text).map(|_| ())
}

/// sprig's `parsePrivateKeyPEM`, for keys that sign certificates: a DSA key is the error Go's
/// `x509.CreateCertificate` gives for it.
pub fn parse_sprig_pem(text: &[u8]) -> Result<Key, String> {
    read_sprig_pem(text)?
        .ok_or_else(|| "x509: certificate private key does not implement crypto.Signer".to_string())
}

/// sprig's `parsePrivateKeyPEM`: the key, or `None` for a DSA key.
fn read_sprig_pem(text: &[u8]) -> Result<Option<Key>, String> {
    let (block, _) = pem::decode(text);
    let block = block.ok_or_else(|| "no PEM data in input".to_string())?;
    let bad = |what: &str| format!("{what}: invalid key");
    match block.kind.as_slice() {
        b"PRIVATE KEY" => parse_pkcs8(&block.bytes)
            .map(Some)
            .ok_or_else(|| bad("decoding PEM as PKCS#8")),
        b"RSA PRIVATE KEY" => parse_pkcs1(&block.bytes)
            .map(Some)
            .ok_or_else(|| bad("parsing RSA private key from PEM")),
        b"EC PRIVATE KEY" => parse_sec1(&block.bytes, None)
            .map(Some)
            .ok_or_else(|| bad("parsing EC private key from PEM")),
        b"DSA PRIVATE KEY" => parse_dsa(&block.bytes)
            .map(|_| None)
            .ok_or_else(|| bad("parsing DSA private key from PEM")),
        k if k.ends_with(b" PRIVATE KEY") => Err("invalid private key type".into()),
        _ => Err("no private key data in PEM block".into()),
    }
}
