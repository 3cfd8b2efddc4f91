//! Parses and renders arbitrary templates over fixed data with small limits: no input may
//! panic, overflow the stack, or run past the limits. `render.dict` and `seeds/render/` give
//! the fuzzer the function names and typical calls (see README.md).
#![no_main]

use std::collections::BTreeMap;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use lockstep_template::{Delims, Limits, Template};

fuzz_target!(|input: &[u8]| {
    // The first byte picks the delimiters, the rest is the template.
    let Some((&sel, rest)) = input.split_first() else { return };
    let delims = match sel % 3 {
        0 => Delims::default(),
        1 => Delims { left: "<%".into(), right: "%>".into() },
        _ => Delims { left: "[[".into(), right: "]]".into() },
    };
    let src = String::from_utf8_lossy(rest);
    let Ok(t) = Template::parse(&src, &delims) else { return };
    let mut data = BTreeMap::new();
    data.insert("a".to_string(), b"{\"k\":[1,2.5,{\"z\":null}],\"s\":\"x\"}".to_vec());
    data.insert("b".to_string(), vec![0xff, 0, b'x', b'\n']);
    data.insert("a-b".to_string(), b"dash".to_vec());
    // Real inputs for the certificate, PKCS#12, YAML and date functions (an EC P-256 key and
    // certificate, and a PKCS#12 file of both with the password "pw").
    data.insert("cert".to_string(), include_bytes!("../data/ec-cert.pem").to_vec());
    data.insert("key".to_string(), include_bytes!("../data/ec-key.pem").to_vec());
    data.insert("p12".to_string(), include_bytes!("../data/ec.p12").to_vec());
    data.insert("yaml".to_string(), b"a: 1\nb: [x, {c: d}]\nc: &x {k: v}\nd: *x\n".to_vec());
    data.insert("date".to_string(), b"2024-02-29T12:34:56Z".to_vec());
    let limits = Limits {
        max_steps: 50_000,
        max_depth: 200,
        max_output: 1 << 16,
        cpu_time: Duration::from_secs(2),
    };
    let _ = t.execute(&data, &limits);
});
