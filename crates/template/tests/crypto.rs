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
    let line = r(r#"{{ htpasswd "admin" "s3cret" }}"#);
    let (user, hash) = line.split_once(':').unwrap();
    assert_eq!(user, "admin");
    assert!(bcrypt::verify("s3cret", hash).unwrap());
    assert_eq!(r(r#"{{ htpasswd "a:b" "x" }}"#), "invalid username: a:b");
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
