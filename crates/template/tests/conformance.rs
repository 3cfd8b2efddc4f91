//! Renders every case of `conformance/cases.json` and compares with the golden results Go's
//! `text/template` + sprig produced (`testenv/go/templates/check.sh` regenerates them).

use std::collections::BTreeMap;

use lockstep_template::{Delims, Limits, Template};
use serde_json::Value as Json;

fn load(name: &str) -> Vec<Json> {
    let path = format!("{}/tests/conformance/{name}", manifest_dir());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    match serde_json::from_str(&text) {
        Ok(Json::Array(rows)) => rows,
        other => panic!("{path}: not a JSON array: {other:?}"),
    }
}

fn s<'a>(row: &'a Json, key: &str) -> &'a str {
    row.get(key).and_then(Json::as_str).unwrap_or_default()
}

fn b64decode(s: &str) -> Vec<u8> {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = ABC.iter().position(|x| *x == c).expect("base64") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

#[test]
fn go_conformance() {
    let cases = load("cases.json");
    let golden: BTreeMap<String, Json> = load("golden.json")
        .into_iter()
        .map(|g| (s(&g, "name").to_string(), g))
        .collect();
    assert_eq!(
        cases.len(),
        golden.len(),
        "golden.json is stale; run testenv/go/templates/check.sh --update"
    );
    // The default limits except time: key generation and scrypt take from 0.1 s to several
    // seconds on a loaded machine, and a case that crosses the one-second render limit would
    // fail for a reason that is not the output's (the time limit has its own tests in
    // limits.rs).
    let limits = Limits {
        cpu_time: std::time::Duration::from_secs(120),
        ..Limits::default()
    };
    let mut failures = Vec::new();
    for case in &cases {
        let name = s(case, "name");
        let want = golden
            .get(name)
            .unwrap_or_else(|| panic!("no golden result for {name}"));
        let mut data: BTreeMap<String, Vec<u8>> = case
            .get("data")
            .and_then(Json::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str().unwrap_or_default().as_bytes().to_vec(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let Some(m) = case.get("data_base64").and_then(Json::as_object) {
            for (k, v) in m {
                data.insert(k.clone(), b64decode(v.as_str().unwrap_or_default()));
            }
        }
        let delims = match (s(case, "left"), s(case, "right")) {
            ("", "") => Delims::default(),
            (l, r) => Delims {
                left: l.into(),
                right: r.into(),
            },
        };
        let got =
            Template::parse(s(case, "template"), &delims).and_then(|t| t.execute(&data, &limits));
        let expected: Result<Vec<u8>, &str> = match (want.get("output"), want.get("output_base64"))
        {
            (Some(Json::String(o)), _) => Ok(o.as_bytes().to_vec()),
            (_, Some(Json::String(b))) => Ok(b64decode(b)),
            _ => Err(s(want, "error")),
        };
        match (&got, &expected) {
            (Ok(g), Ok(w)) if g == w => {}
            (Err(_), Err(_)) => {}
            _ => failures.push(format!(
                "{name}: template {:?}\n    go:   {:?}\n    rust: {:?}",
                s(case, "template"),
                expected.as_ref().map(|o| String::from_utf8_lossy(o)),
                got.as_ref()
                    .map(|o| String::from_utf8_lossy(o))
                    .map_err(|e| e.to_string()),
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from Go:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    println!("{} cases agree with Go", cases.len());
}

/// The package's folder: from cargo at run time (a test binary that cargo kept from a build of
/// another checkout of the same tree would otherwise look in that checkout), else as compiled.
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned())
}
