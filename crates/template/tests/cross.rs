//! Outputs made by this crate that Go must read: `conformance/rust_made.json` holds templates
//! over data this crate produced (PKCS#12 files, AES ciphertexts, certificates) and the output
//! expected. `testenv/go/templates/check.sh` renders them with Go; this test renders them here.
//! `LOCKSTEP_UPDATE_RUST_MADE=1 cargo test -p lockstep-template --test cross` makes them anew.

use std::collections::BTreeMap;

use lockstep_template::{Limits, render};
use serde_json::{Value as Json, json};

fn dir() -> String {
    format!("{}/tests/conformance", manifest_dir())
}

fn run(t: &str, data: &BTreeMap<String, String>) -> String {
    // No one-second limit: key generation on a loaded machine may take longer.
    let limits = Limits {
        cpu_time: std::time::Duration::from_secs(120),
        ..Limits::default()
    };
    let out = render(t, data, &limits).unwrap_or_else(|e| panic!("{t}: {e}"));
    String::from_utf8(out).unwrap()
}

/// The certificate and key data of the conformance cases: every data key of the `eso/` and
/// `crypto/` cases that has one value throughout the table (`leaf`, `leafkey`, `chain`, ...).
fn fixture_data() -> BTreeMap<String, String> {
    let cases: Json =
        serde_json::from_str(&std::fs::read_to_string(format!("{}/cases.json", dir())).unwrap())
            .unwrap();
    let mut seen: BTreeMap<String, Option<String>> = BTreeMap::new();
    for case in cases.as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        if !(name.starts_with("eso/") || name.starts_with("crypto/")) {
            continue;
        }
        let Some(data) = case["data"].as_object() else {
            continue;
        };
        for (k, v) in data {
            let v = v.as_str().unwrap().to_string();
            let slot = seen.entry(k.clone()).or_insert_with(|| Some(v.clone()));
            if slot.as_deref() != Some(v.as_str()) {
                *slot = None;
            }
        }
    }
    seen.into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
}

/// (name, template making the data, template reading it, template of the expected output).
const MADE: &[(&str, &str, &str, &str)] = &[
    (
        "pkcs12-full-chain-password",
        r#"{{ fullPemToPkcs12Pass .scrambled .leafkey "pw" }}"#,
        r#"{{ .made | b64dec | pkcs12certPass "pw" }}{{ .made | b64dec | pkcs12keyPass "pw" }}"#,
        "{{ .chain }}{{ .leafkey }}",
    ),
    (
        "pkcs12-no-password-ec-key",
        "{{ pemToPkcs12 .int .intkey1 }}",
        "{{ .made | b64dec | pkcs12cert }}{{ .made | b64dec | pkcs12key }}",
        "{{ .int }}{{ .intkey }}",
    ),
    (
        "pkcs12-pkcs1-key",
        r#"{{ pemToPkcs12Pass .leaf .leafkey1 "s3cr3t" }}"#,
        r#"{{ .made | b64dec | pkcs12keyPass "s3cr3t" }}"#,
        "{{ .leafkey }}",
    ),
    (
        "aes",
        r#"{{ encryptAES "secretkey" .leafkey }}"#,
        r#"{{ decryptAES "secretkey" .made }}"#,
        "{{ .leafkey }}",
    ),
    (
        "signed-certificate",
        r#"{{ $ca := genCAWithKey "ca" 30 .leafkey1 }}{{ (genSignedCertWithKey "svc" (list "10.0.0.1") (list "svc.example") 30 $ca .intkey1).Cert }}"#,
        r#"{{ certSANs .made | join "," }} {{ filterCertChain "leaf" .made | len | lt 100 }}"#,
        "svc.example,10.0.0.1 true",
    ),
    (
        "dsa-private-key",
        r#"{{ genPrivateKey "dsa" }}"#,
        r#"{{ $ca := genCA "x" 1 }}{{ eq (buildCustomCert (b64enc $ca.Cert) (b64enc .made)).Key .made }}"#,
        "true",
    ),
];

/// Rows that the Go harness also checks with Go's own libraries (`go_check` in
/// `rust_made.json`; see `testenv/go/templates/dsa.go`): the DSA key must be sprig's
/// structure, of L2048N256 sizes, a valid key pair, and sign and verify in Go's crypto/dsa.
const GO_CHECKS: &[(&str, &str)] = &[("dsa-private-key", "dsa")];

#[test]
fn rust_made_outputs_read_back() {
    let path = format!("{}/rust_made.json", dir());
    let base = fixture_data();
    if std::env::var_os("LOCKSTEP_UPDATE_RUST_MADE").is_some() {
        let mut rows = Vec::new();
        for (name, make, read, want) in MADE {
            let mut data = base.clone();
            data.insert("made".into(), run(make, &base));
            let output = run(want, &base);
            let data: BTreeMap<String, String> = data
                .into_iter()
                .filter(|(k, _)| k == "made" || read.contains(&format!(".{k}")))
                .collect();
            let mut row = json!({"name": name, "template": read, "data": data, "output": output});
            if let Some((_, check)) = GO_CHECKS.iter().find(|(n, _)| n == name) {
                row["go_check"] = json!(check);
            }
            rows.push(row);
        }
        std::fs::write(&path, serde_json::to_string_pretty(&rows).unwrap() + "\n").unwrap();
    }
    let rows: Json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(
        rows.len(),
        MADE.len(),
        "run with LOCKSTEP_UPDATE_RUST_MADE=1"
    );
    for (name, check) in GO_CHECKS {
        let row = rows.iter().find(|r| r["name"] == *name).expect(name);
        assert_eq!(
            row["go_check"], *check,
            "{name}: run with LOCKSTEP_UPDATE_RUST_MADE=1"
        );
    }
    for row in rows {
        let data: BTreeMap<String, String> = row["data"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        assert_eq!(
            run(row["template"].as_str().unwrap(), &data),
            row["output"].as_str().unwrap(),
            "{}",
            row["name"]
        );
    }
}

/// The package's folder: from cargo at run time (a test binary that cargo kept from a build of
/// another checkout of the same tree would otherwise look in that checkout), else as compiled.
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned())
}
