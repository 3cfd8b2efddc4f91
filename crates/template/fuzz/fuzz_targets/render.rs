//! Parses and renders arbitrary templates over fixed data with small limits: no input may
//! panic, overflow the stack, or run past the limits.
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
    let limits = Limits {
        max_steps: 50_000,
        max_depth: 200,
        max_output: 1 << 16,
        cpu_time: Duration::from_secs(2),
    };
    let _ = t.execute(&data, &limits);
});
