//! The random and time-dependent cryptographic functions, checked by properties: round trips,
//! formats, and what the certificates say.

use std::collections::BTreeMap;

use lockstep_template::{Limits, render};
use x509_parser::prelude::*;

fn r(t: &str) -> String {
    let data: BTreeMap<String, String> = BTreeMap::new();
    let limits = Limits {
        cpu_time: std::time::Duration::from_secs(60),
        ..Limits::default()
    };
    match render(t, &data, &limits) {
        Ok(o) => String::from_utf8(o).unwrap(),
        Err(e) => panic!("{t}: {e}"),
    }
}

fn cert_der(pem_text: &str) -> Vec<u8> {
    let (block, _) = lockstep_template::funcs::pem::decode(pem_text.as_bytes());
    let block = block.expect("a PEM block");
    assert_eq!(block.kind, b"CERTIFICATE");
    block.bytes
}

#[test]
fn aes_round_trips_and_is_randomized() {
    let a = r(r#"{{ encryptAES "secretkey" "plaintext value" }}"#);
    let b = r(r#"{{ encryptAES "secretkey" "plaintext value" }}"#);
    assert_ne!(a, b, "the IV is random");
    assert_eq!(a.len(), 44, "16-byte IV and one padded block, base64");
    assert_eq!(
        r(&format!(r#"{{{{ decryptAES "secretkey" "{a}" }}}}"#)),
        "plaintext value"
    );
    assert_eq!(
        r(r#"{{ encryptAES "k" "exactly sixteen!" | decryptAES "k" }}"#),
        "exactly sixteen!"
    );
    assert_eq!(r(r#"{{ encryptAES "k" "" }}"#), "");
}

#[test]
fn bcrypt_and_htpasswd_verify() {
    let h = r(r#"{{ bcrypt "hunter2" }}"#);
    assert!(h.starts_with("$2a$10$") && h.len() == 60, "{h}");
    assert!(bcrypt::verify("hunter2", &h).unwrap());
    assert!(!bcrypt::verify("hunter3", &h).unwrap());
    for alg in ["bcrypt", "", "SHA"] {
        let line = r(&format!(r#"{{{{ htpasswd "admin" "s3cret" "{alg}" }}}}"#));
        let (user, hash) = line.split_once(':').unwrap();
        assert_eq!(user, "admin");
        assert!(bcrypt::verify("s3cret", hash).unwrap(), "{alg}: {hash}");
    }
    assert_eq!(
        r(r#"{{ htpasswd "a:b" "x" "bcrypt" }}"#),
        "invalid username: a:b"
    );
}

/// The integers of a DER SEQUENCE that holds INTEGERs only, each minimally encoded and not
/// negative (what Go's `asn1.Marshal` writes for `big.Int`s and a zero `int`).
fn der_uints(der: &[u8]) -> Vec<Vec<u8>> {
    use lockstep_template::funcs::pem;
    let ((tag, body), rest) = pem::read(der).expect("a DER element");
    assert_eq!(
        (tag, rest.len()),
        (0x30, 0),
        "one SEQUENCE, nothing after it"
    );
    pem::read_all(body)
        .expect("DER elements")
        .into_iter()
        .map(|(tag, c)| {
            assert_eq!(tag, 0x02, "INTEGER");
            assert!(!c.is_empty() && c[0] & 0x80 == 0, "non-negative");
            assert!(c.len() == 1 || c[0] != 0 || c[1] & 0x80 != 0, "minimal");
            c.to_vec()
        })
        .collect()
}

#[test]
fn dsa_keys_are_sprigs_structure_and_a_valid_key_pair() {
    use crypto_bigint::modular::{BoxedMontyForm, BoxedMontyParams};
    use crypto_bigint::{BoxedUint, Odd, Resize};
    use crypto_primes::{Flavor, is_prime};
    let keys = [
        r(r#"{{ genPrivateKey "dsa" }}"#),
        r(r#"{{ genPrivateKey "dsa" }}"#),
    ];
    assert_ne!(keys[0], keys[1]);
    let mut ps = Vec::new();
    for text in &keys {
        assert!(
            text.starts_with("-----BEGIN DSA PRIVATE KEY-----\n")
                && text.ends_with("-----END DSA PRIVATE KEY-----\n"),
            "{text}"
        );
        let block = lockstep_template::funcs::pem::decode(text.as_bytes())
            .0
            .unwrap();
        assert_eq!(block.kind, b"DSA PRIVATE KEY");
        // sprig's DSAKeyFormat: Version, P, Q, G, Y, X and nothing else.
        let ints = der_uints(&block.bytes);
        assert_eq!(ints.len(), 6);
        assert_eq!(ints[0], [0], "version 0");
        // The engine's reader of DSA keys (buildCustomCert) takes what it made.
        let read = lockstep_template::funcs::keys::parse_dsa(&block.bytes).unwrap();
        assert_eq!(read.to_vec(), ints);
        // All at the precision of p, so that they compare and multiply.
        let [p, q, g, y, x] = [1, 2, 3, 4, 5].map(|i| {
            BoxedUint::from_be_slice_vartime(&ints[i])
                .try_resize(2048)
                .expect("under 2048 bits")
        });
        // L2048N256, as Go's sprig asks for.
        assert_eq!(p.bit_width_vartime(), 2048);
        assert_eq!(q.bit_width_vartime(), 256);
        assert!(is_prime(Flavor::Any, &p), "p is prime");
        assert!(is_prime(Flavor::Any, &q), "q is prime");
        let one = BoxedUint::one().resize(2048);
        let p_minus_1 = p.wrapping_sub(&one);
        let q_nz = crypto_bigint::NonZero::new(q.clone()).unwrap();
        assert!(
            bool::from((&p_minus_1 % &q_nz).is_zero()),
            "q divides p - 1"
        );
        let params = BoxedMontyParams::new_vartime(Odd::new(p.clone()).unwrap());
        let pow = |b: &BoxedUint, e: &BoxedUint| {
            BoxedMontyForm::new(b.clone(), &params).pow(e).retrieve()
        };
        assert!(g > one && g < p, "1 < g < p");
        assert_eq!(pow(&g, &q), one, "g generates the subgroup of order q");
        assert!(!bool::from(x.is_zero()) && x < q, "0 < x < q");
        assert_eq!(pow(&g, &x), y, "y = g^x mod p");
        ps.push(p);
    }
    assert_ne!(
        ps[0], ps[1],
        "fresh parameters each call, as Go's sprig makes them"
    );
}

#[test]
fn dsa_generation_is_charged_before_the_work() {
    // 200000 steps are charged before the parameters are searched: under a smaller step
    // limit the call fails at once instead of working for seconds.
    let data: BTreeMap<String, String> = BTreeMap::new();
    let limits = Limits {
        max_steps: 150_000,
        ..Limits::default()
    };
    let start = std::time::Instant::now();
    let e = render(r#"{{ genPrivateKey "dsa" }}"#, &data, &limits).unwrap_err();
    assert_eq!(e.kind, lockstep_template::ErrorKind::Limit, "{e}");
    assert!(start.elapsed() < std::time::Duration::from_millis(100));
}

#[test]
fn private_keys_have_go_formats() {
    let rsa = r(r#"{{ genPrivateKey "rsa" }}"#);
    assert!(
        rsa.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"),
        "{rsa}"
    );
    let block = lockstep_template::funcs::pem::decode(rsa.as_bytes())
        .0
        .unwrap();
    let key = lockstep_template::funcs::keys::parse_pkcs1(&block.bytes).unwrap();
    assert!(matches!(key, lockstep_template::funcs::keys::Key::Rsa(_)));
    // 4096-bit modulus: the PKCS#1 structure is over 2300 bytes.
    assert!(block.bytes.len() > 2300, "{}", block.bytes.len());
    let ec = r(r#"{{ genPrivateKey "ecdsa" }}"#);
    assert!(ec.starts_with("-----BEGIN EC PRIVATE KEY-----\n"), "{ec}");
    let ed = r(r#"{{ genPrivateKey "ed25519" }}"#);
    assert!(ed.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{ed}");
    assert_eq!(r(r#"{{ genPrivateKey "x" }}"#), "Unknown type x");
}

#[test]
fn generated_certificates_say_what_was_asked() {
    let out = r(
        r#"{{ $ca := genCA "my-ca" 365 }}{{ $c := genSignedCert "svc.example" (list "10.0.0.1" "::1") (list "svc.example" "svc") 30 $ca }}{{ $ca.Cert }}|{{ $c.Cert }}|{{ $c.Key }}"#,
    );
    let parts: Vec<&str> = out.split('|').collect();
    let ca_der = cert_der(parts[0]);
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    assert_eq!(
        ca.subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        "my-ca"
    );
    assert!(ca.is_ca());
    let days = (ca.validity().not_after.timestamp() - ca.validity().not_before.timestamp()) / 86400;
    assert_eq!(days, 365);
    let leaf_der = cert_der(parts[1]);
    let (_, leaf) = X509Certificate::from_der(&leaf_der).unwrap();
    assert!(!leaf.is_ca());
    assert_eq!(leaf.issuer(), ca.subject());
    assert!(leaf.verify_signature(Some(ca.public_key())).is_ok());
    let san = leaf.subject_alternative_name().unwrap().unwrap();
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|g| g.to_string())
        .collect();
    assert!(names.iter().any(|n| n.contains("svc.example")), "{names:?}");
    assert!(names.len() == 4, "{names:?}");
    assert!(parts[2].starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    // certSANs reads them back in Go's order: DNS names, then IPs.
    assert_eq!(
        r(&format!(
            r#"{{{{ certSANs "{}" | join "," }}}}"#,
            parts[1].replace('\n', "\\n")
        )),
        "svc.example,svc,10.0.0.1,::1"
    );
}

#[test]
fn certificates_with_given_keys() {
    let out = r(
        r#"{{ $k := genPrivateKey "ecdsa" }}{{ $c := genSelfSignedCertWithKey "self" nil nil 1 $k }}{{ $c.Cert }}|{{ $c.Key }}|{{ $k }}"#,
    );
    let parts: Vec<&str> = out.split('|').collect();
    assert_eq!(parts[1], parts[2], "the key is returned as given");
    let der = cert_der(parts[0]);
    let (_, c) = X509Certificate::from_der(&der).unwrap();
    assert!(c.verify_signature(None).is_ok());
    let ed = r(
        r#"{{ $k := genPrivateKey "ed25519" }}{{ $ca := genCAWithKey "ed-ca" 2 $k }}{{ $c := genSignedCertWithKey "leaf" nil (list "a.b") 1 $ca $k }}{{ $c.Cert }}"#,
    );
    let der = cert_der(&ed);
    assert!(X509Certificate::from_der(&der).is_ok());
    let custom = r(
        r#"{{ $ca := genCA "x" 1 }}{{ $c := buildCustomCert ($ca.Cert | b64enc) ($ca.Key | b64enc) }}{{ eq $c.Cert $ca.Cert }} {{ eq $c.Key $ca.Key }}"#,
    );
    assert_eq!(custom, "true true");
}
