//! sprig's cryptographic functions: AES, bcrypt, derivePassword, key and certificate
//! generation.

use std::rc::Rc;

use hmac::{KeyInit, Mac};

use super::args::{err, int, s};
use super::keys::{self, Key};
use super::misc::{b64dec_go, b64enc};
use super::pem;
use super::time::GoTime;
use super::{Budget, FResult, Func, FuncError, Ty};
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

fn random(n: usize) -> Result<Vec<u8>, FuncError> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|_| err("random source unavailable"))?;
    Ok(b)
}

fn aes_key(password: &[u8]) -> [u8; 32] {
    let mut key = [0u8; 32];
    let n = password.len().min(32);
    key[..n].copy_from_slice(&password[..n]);
    key
}

fn encrypt_aes(b: &mut Budget, password: &[u8], plain: &[u8]) -> FResult {
    use aes::cipher::{BlockModeEncrypt, KeyIvInit, block_padding::Pkcs7};
    if plain.is_empty() {
        return Ok(Value::str(""));
    }
    b.alloc((plain.len() + 32).saturating_mul(2))?;
    let iv: [u8; 16] = random(16)?.try_into().unwrap_or([0; 16]);
    let key = aes_key(password);
    let enc = cbc::Encryptor::<aes::Aes256>::new((&key).into(), (&iv).into());
    let ct = enc.encrypt_padded_vec::<Pkcs7>(plain);
    Ok(Value::str(b64enc(&[&iv[..], &ct].concat())))
}

fn decrypt_aes(b: &mut Budget, password: &[u8], text: &[u8]) -> FResult {
    use aes::cipher::{BlockModeDecrypt, KeyIvInit, block_padding::NoPadding};
    if text.is_empty() {
        return Ok(Value::str(""));
    }
    b.alloc(text.len())?;
    let data =
        b64dec_go(text).map_err(|at| err(format!("illegal base64 data at input byte {at}")))?;
    if data.len() < 16 {
        return Err(err("ciphertext shorter than the IV"));
    }
    let (iv, ct) = data.split_at(16);
    if ct.is_empty() || ct.len() % 16 != 0 {
        return Err(err("crypto/cipher: input not full blocks"));
    }
    let key = aes_key(password);
    let iv: [u8; 16] = iv.try_into().unwrap_or([0; 16]);
    let dec = cbc::Decryptor::<aes::Aes256>::new((&key).into(), (&iv).into());
    let plain = dec
        .decrypt_padded_vec::<NoPadding>(ct)
        .map_err(|_| err("crypto/cipher: input not full blocks"))?;
    // sprig strips as many bytes as the last byte says, unchecked.
    let pad = usize::from(plain[plain.len() - 1]);
    if pad > plain.len() {
        return Err(err("slice bounds out of range"));
    }
    Ok(Value::str(&plain[..plain.len() - pad]))
}

/// Go's `bcrypt.GenerateFromPassword(p, 10)` as sprig returns it (errors as text).
fn bcrypt_hash(password: &[u8]) -> Result<String, FuncError> {
    if password.len() > 72 {
        return Ok(
            "failed to encrypt string with bcrypt: bcrypt: password length exceeds 72 bytes".into(),
        );
    }
    let salt: [u8; 16] = random(16)?.try_into().unwrap_or([0; 16]);
    let parts =
        bcrypt::hash_with_salt(password, 10, salt).map_err(|e| err(format!("bcrypt: {e}")))?;
    Ok(parts.format_for_version(bcrypt::Version::TwoA))
}

const SEED: &[u8] = b"com.lyndir.masterpassword";

fn templates(kind: &[u8]) -> Option<&'static [&'static str]> {
    Some(match kind {
        b"maximum" => &["anoxxxxxxxxxxxxxxxxx", "axxxxxxxxxxxxxxxxxno"],
        b"long" => &[
            "CvcvnoCvcvCvcv",
            "CvcvCvcvnoCvcv",
            "CvcvCvcvCvcvno",
            "CvccnoCvcvCvcv",
            "CvccCvcvnoCvcv",
            "CvccCvcvCvcvno",
            "CvcvnoCvccCvcv",
            "CvcvCvccnoCvcv",
            "CvcvCvccCvcvno",
            "CvcvnoCvcvCvcc",
            "CvcvCvcvnoCvcc",
            "CvcvCvcvCvccno",
            "CvccnoCvccCvcv",
            "CvccCvccnoCvcv",
            "CvccCvccCvcvno",
            "CvcvnoCvccCvcc",
            "CvcvCvccnoCvcc",
            "CvcvCvccCvccno",
            "CvccnoCvcvCvcc",
            "CvccCvcvnoCvcc",
            "CvccCvcvCvccno",
        ],
        b"medium" => &["CvcnoCvc", "CvcCvcno"],
        b"short" => &["Cvcn"],
        b"basic" => &["aaanaaan", "aannaaan", "aaannaaa"],
        b"pin" => &["nnnn"],
        _ => return None,
    })
}

fn template_chars(c: u8) -> &'static [u8] {
    match c {
        b'V' => b"AEIOU",
        b'C' => b"BCDFGHJKLMNPQRSTVWXYZ",
        b'v' => b"aeiou",
        b'c' => b"bcdfghjklmnpqrstvwxyz",
        b'A' => b"AEIOUBCDFGHJKLMNPQRSTVWXYZ",
        b'a' => b"AEIOUaeiouBCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz",
        b'n' => b"0123456789",
        b'o' => b"@&%?,=[]_:-+*$#!'^~;()/.",
        _ => b"AEIOUaeiouBCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz0123456789!@#$%^&*()",
    }
}

/// sprig's `derivePassword` (the Master Password algorithm: scrypt, then HMAC-SHA256).
fn derive_password(b: &mut Budget, a: &[Value]) -> FResult {
    let counter = int(a, 0);
    let counter = u32::try_from(counter).map_err(|_| err("counter overflows uint32"))?;
    let (kind, password, user, site) = (s(a, 1), s(a, 2), s(a, 3), s(a, 4));
    let Some(tpls) = templates(kind) else {
        return Ok(Value::str(format!(
            "cannot find password template {}",
            String::from_utf8_lossy(kind)
        )));
    };
    // scrypt with N=32768, r=8 works through 32 MiB.
    b.charge(200_000)
        .map_err(|(kind, msg)| FuncError { msg, kind })?;
    let mut salt = SEED.to_vec();
    salt.extend_from_slice(&(user.len() as u32).to_be_bytes());
    salt.extend_from_slice(user);
    let params = scrypt::Params::new(15, 8, 2).map_err(|_| err("scrypt parameters"))?;
    let mut key = [0u8; 64];
    scrypt::scrypt(password, &salt, &params, &mut key).map_err(|_| err("scrypt failed"))?;
    let mut msg = SEED.to_vec();
    msg.extend_from_slice(&(site.len() as u32).to_be_bytes());
    msg.extend_from_slice(site);
    msg.extend_from_slice(&counter.to_be_bytes());
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).map_err(|_| err("hmac"))?;
    mac.update(&msg);
    let seed = mac.finalize().into_bytes();
    let tpl = tpls[usize::from(seed[0]) % tpls.len()].as_bytes();
    let out: Vec<u8> = tpl
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let chars = template_chars(*c);
            chars[usize::from(seed[i + 1]) % chars.len()]
        })
        .collect();
    Ok(Value::str(out))
}

/// Steps charged, before the work, for generating a DSA key: parameter generation searches
/// for two primes and costs more than an RSA-4096 key.
const DSA_KEYGEN_STEPS: u64 = 200_000;

fn gen_private_key(b: &mut Budget, kind: &[u8]) -> FResult {
    let kind = match kind {
        b"" | b"rsa" => "rsa",
        b"ecdsa" => "ecdsa",
        b"ed25519" => "ed25519",
        b"dsa" => "dsa",
        other => {
            return Ok(Value::str([&b"Unknown type "[..], other].concat()));
        }
    };
    let steps = if kind == "dsa" {
        DSA_KEYGEN_STEPS
    } else {
        50_000
    };
    b.charge(steps)
        .map_err(|(kind, msg)| FuncError { msg, kind })?;
    if kind == "dsa" {
        // sprig answers a generation failure with text, not an error.
        return Ok(Value::str(match keys::generate_dsa() {
            Ok(der) => pem::encode_der("DSA PRIVATE KEY", &der),
            Err(e) => e.into_bytes(),
        }));
    }
    let key = Key::generate(kind, 4096).map_err(err)?;
    Ok(Value::str(key.sprig_pem()))
}

fn cert_value(cert: Vec<u8>, key: Vec<u8>) -> Value {
    Value::Obj(Rc::new(Obj::Cert {
        cert: Rc::from(cert),
        key: Rc::from(key),
    }))
}

/// The strings of a `[]interface{}` argument (sprig refuses non-strings).
fn strings_of(v: &Value, what: &str) -> Result<Vec<String>, FuncError> {
    match v {
        Value::Nil => Ok(Vec::new()),
        Value::List(l, _) => l
            .iter()
            .map(|e| match e {
                Value::Str(s) => Ok(String::from_utf8_lossy(s).into_owned()),
                _ => Err(err(format!("error parsing {what}: not a string"))),
            })
            .collect(),
        _ => Err(err(format!("error parsing {what}: not a list"))),
    }
}

/// Go's `net.ParseIP`.
fn parse_ip(s: &str) -> Option<std::net::IpAddr> {
    if s.contains('.') && !s.contains(':') {
        let parts: Vec<&str> = s.split('.').collect();
        // Go refuses leading zeros.
        if parts.len() != 4
            || parts
                .iter()
                .any(|p| p.is_empty() || p.len() > 3 || (p.len() > 1 && p.starts_with('0')))
        {
            return None;
        }
    }
    s.parse().ok()
}

/// sprig's `getBaseCertTemplate` and `getCertAndKey`.
#[allow(clippy::too_many_arguments)]
fn make_cert(
    b: &mut Budget,
    cn: &[u8],
    ips: &Value,
    dns: &Value,
    days: i64,
    is_ca: bool,
    key: Key,
    issuer: Option<(&[u8], Key)>,
) -> FResult {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyUsagePurpose, SanType, SerialNumber,
    };
    b.charge(20_000)
        .map_err(|(kind, msg)| FuncError { msg, kind })?;
    let ips = strings_of(ips, "ip")?;
    let dns = strings_of(dns, "alternate dns name")?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, String::from_utf8_lossy(cn).into_owned());
    params.distinguished_name = dn;
    for ip in &ips {
        let a = parse_ip(ip).ok_or_else(|| err("error parsing ip"))?;
        params.subject_alt_names.push(SanType::IpAddress(a));
    }
    for d in &dns {
        let name = d
            .clone()
            .try_into()
            .map_err(|_| err("error processing alternate dns name"))?;
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    let mut serial = random(16)?;
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let now = GoTime::now();
    let after = now.add((days.clamp(-1_000_000, 1_000_000)) * 86_400 * 1_000_000_000);
    let ts = |t: &GoTime| {
        time::OffsetDateTime::from_unix_timestamp(t.unix)
            .map_err(|_| err("certificate validity out of range"))
    };
    params.not_before = ts(&now)?;
    params.not_after = ts(&after)?;
    params.key_usages = vec![
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::DigitalSignature,
    ];
    if is_ca {
        params.key_usages.push(KeyUsagePurpose::KeyCertSign);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    } else {
        params.is_ca = IsCa::ExplicitNoCa;
    }
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let signer = key.signer().map_err(err)?;
    let cert = match issuer {
        None => params.self_signed(&signer),
        Some((ca_der, ca_key)) => {
            params.use_authority_key_identifier_extension = true;
            let ca_signer = ca_key.signer().map_err(err)?;
            let issuer = Issuer::from_ca_cert_der(&ca_der.into(), ca_signer)
                .map_err(|e| err(format!("error parsing certificate: {e}")))?;
            params.signed_by(&signer, &issuer)
        }
    }
    .map_err(|e| err(format!("error creating certificate: {e}")))?;
    Ok(cert_value(
        pem::encode_der("CERTIFICATE", cert.der()),
        key.sprig_pem(),
    ))
}

fn parse_key_arg(text: &[u8]) -> Result<Key, FuncError> {
    keys::parse_sprig_pem(text).map_err(|e| err(format!("parsing private key: {e}")))
}

/// The CA of `genSignedCert`: its certificate DER and key.
fn ca_arg(v: &Value) -> Result<(Vec<u8>, Key), FuncError> {
    let Value::Obj(o) = v else {
        return Err(err("not a certificate"));
    };
    let Obj::Cert { cert, key } = &**o else {
        return Err(err("not a certificate"));
    };
    let (block, _) = pem::decode(cert);
    let block = block.ok_or_else(|| err("unable to decode certificate"))?;
    x509_parser::parse_x509_certificate(&block.bytes)
        .map_err(|_| err("error parsing certificate"))?;
    let key =
        keys::parse_sprig_pem(key).map_err(|e| err(format!("error parsing private key: {e}")))?;
    // Go refuses a CA key that does not belong to the CA certificate.
    let (_, parsed) = x509_parser::parse_x509_certificate(&block.bytes)
        .map_err(|_| err("error parsing certificate"))?;
    let signer = key.signer().map_err(err)?;
    use rcgen::PublicKeyData;
    if signer.subject_public_key_info() != parsed.public_key().raw {
        return Err(err(
            "error creating certificate: x509: provided PrivateKey doesn't match parent's PublicKey",
        ));
    }
    Ok((block.bytes, key))
}

fn rsa2048() -> Result<Key, FuncError> {
    Key::generate("rsa", 2048).map_err(|e| err(format!("error generating rsa key: {e}")))
}

fn build_custom(a: &[Value]) -> FResult {
    let cert = b64dec_go(s(a, 0)).map_err(|_| err("unable to decode base64 certificate"))?;
    let key = b64dec_go(s(a, 1)).map_err(|_| err("unable to decode base64 private key"))?;
    let (block, _) = pem::decode(&cert);
    let block = block.ok_or_else(|| err("unable to decode certificate"))?;
    match x509_parser::parse_x509_certificate(&block.bytes) {
        Ok((b"", _)) => {}
        _ => return Err(err("error parsing certificate")),
    }
    keys::check_sprig_pem(&key).map_err(|e| err(format!("error parsing private key: {e}")))?;
    Ok(cert_value(cert, key))
}

pub(super) fn lookup(name: &str) -> Option<Func> {
    use Ty::*;
    Some(match name {
        "encryptAES" => f!(&[Str, Str], None, |b, a| encrypt_aes(b, s(&a, 0), s(&a, 1))),
        "decryptAES" => f!(&[Str, Str], None, |b, a| decrypt_aes(b, s(&a, 0), s(&a, 1))),
        "bcrypt" => f!(&[Str], None, |_, a| Ok(Value::str(bcrypt_hash(s(&a, 0))?))),
        "htpasswd" => f!(&[Str, Str, HashAlgorithm], None, |_, a| {
            let user = s(&a, 0);
            if user.contains(&b':') {
                return Ok(Value::str([&b"invalid username: "[..], user].concat()));
            }
            // "sha" gives Apache's {SHA} scheme; anything else bcrypt.
            let h = if s(&a, 2) == b"sha" {
                use sha1::Digest as _;
                let sum = b64enc(&sha1::Sha1::digest(s(&a, 1)));
                format!("{{SHA}}{}", String::from_utf8_lossy(&sum))
            } else {
                bcrypt_hash(s(&a, 1))?
            };
            Ok(Value::str([user, b":", h.as_bytes()].concat()))
        }),
        "derivePassword" => f!(&[Int, Str, Str, Str, Str], None, |b, a| derive_password(
            b, &a
        )),
        "genPrivateKey" => f!(&[Str], None, |b, a| gen_private_key(b, s(&a, 0))),
        "buildCustomCert" => f!(&[Str, Str], None, |_, a| build_custom(&a)),
        "genCA" => f!(&[Str, Int], None, |b, a| {
            let key = rsa2048()?;
            make_cert(
                b,
                s(&a, 0),
                &Value::Nil,
                &Value::Nil,
                int(&a, 1),
                true,
                key,
                None,
            )
        }),
        "genCAWithKey" => f!(&[Str, Int, Str], None, |b, a| {
            let key = parse_key_arg(s(&a, 2))?;
            make_cert(
                b,
                s(&a, 0),
                &Value::Nil,
                &Value::Nil,
                int(&a, 1),
                true,
                key,
                None,
            )
        }),
        "genSelfSignedCert" => f!(&[Str, List, List, Int], None, |b, a| {
            let key = rsa2048()?;
            make_cert(b, s(&a, 0), &a[1], &a[2], int(&a, 3), false, key, None)
        }),
        "genSelfSignedCertWithKey" => f!(&[Str, List, List, Int, Str], None, |b, a| {
            let key = parse_key_arg(s(&a, 4))?;
            make_cert(b, s(&a, 0), &a[1], &a[2], int(&a, 3), false, key, None)
        }),
        "genSignedCert" => f!(&[Str, List, List, Int, Cert], None, |b, a| {
            let (ca, ca_key) = ca_arg(&a[4])?;
            let key = rsa2048()?;
            make_cert(
                b,
                s(&a, 0),
                &a[1],
                &a[2],
                int(&a, 3),
                false,
                key,
                Some((&ca, ca_key)),
            )
        }),
        "genSignedCertWithKey" => f!(&[Str, List, List, Int, Cert, Str], None, |b, a| {
            let (ca, ca_key) = ca_arg(&a[4])?;
            let key = parse_key_arg(s(&a, 5))?;
            make_cert(
                b,
                s(&a, 0),
                &a[1],
                &a[2],
                int(&a, 3),
                false,
                key,
                Some((&ca, ca_key)),
            )
        }),
        _ => return None,
    })
}
