//! The public API the controller calls.

use std::collections::BTreeMap;

use lockstep_template::{Delims, ErrorKind, Limits, Template, Value, render};

#[test]
fn a_parsed_template_renders_many_times_from_pairs() {
    let t = Template::parse("{{ .user }}@{{ index . \"db-host\" }}", &Delims::default())
        .expect("parse");
    for (user, host) in [("a", "h1"), ("b", "h2")] {
        let out = t
            .execute_pairs(
                [("user", user.as_bytes()), ("db-host", host.as_bytes())],
                &Limits::default(),
            )
            .expect("render");
        assert_eq!(out, format!("{user}@{host}").into_bytes());
    }
}

#[test]
fn custom_delimiters_and_empty_ones_fall_back_to_the_default() {
    let data = BTreeMap::from([("k".to_string(), b"v".to_vec())]);
    let custom = Delims {
        left: "<<".into(),
        right: ">>".into(),
    };
    let t = Template::parse("<< .k >> {{ .k }}", &custom).expect("parse");
    assert_eq!(
        t.execute(&data, &Limits::default()).expect("render"),
        b"v {{ .k }}"
    );
    let empty = Delims {
        left: String::new(),
        right: String::new(),
    };
    let t = Template::parse("{{ .k }}", &empty).expect("parse");
    assert_eq!(t.execute(&data, &Limits::default()).expect("render"), b"v");
}

#[test]
fn any_value_can_be_dot() {
    let t = Template::parse("{{ .value | upper }}", &Delims::default()).expect("parse");
    let dot = Value::map(BTreeMap::from([(b"value".to_vec(), Value::str("key"))]));
    assert_eq!(
        t.execute_value(dot, &Limits::default()).expect("render"),
        b"KEY"
    );
}

#[test]
fn parse_errors_have_a_kind_and_a_position() {
    let e = Template::parse("ok\n{{ if }}", &Delims::default()).expect_err("parse");
    assert_eq!((e.kind, e.line), (ErrorKind::Parse, 2));
    let e = render(
        "{{ nosuch }}",
        &BTreeMap::<String, Vec<u8>>::new(),
        &Limits::default(),
    )
    .expect_err("func");
    assert_eq!(e.kind, ErrorKind::Parse);
    assert!(e.to_string().starts_with("template: 1:"), "{e}");
}

#[test]
fn binary_values_pass_through_unchanged() {
    let data = BTreeMap::from([("p12".to_string(), vec![0x30, 0x82, 0xff, 0x00])]);
    assert_eq!(
        render("{{ .p12 }}", &data, &Limits::default()).expect("render"),
        vec![0x30, 0x82, 0xff, 0x00]
    );
    assert_eq!(
        render("{{ .p12 | b64enc }}", &data, &Limits::default()).expect("render"),
        b"MIL/AA=="
    );
}

/// The time functions whose result depends on the clock: checked by properties.
#[test]
fn clock_dependent_time_functions() {
    let data: BTreeMap<String, String> = BTreeMap::new();
    let r = |t: &str| String::from_utf8(render(t, &data, &Limits::default()).unwrap()).unwrap();
    let now: i64 = r("{{ now | unixEpoch }}").parse().unwrap();
    let sys = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - sys).abs() <= 2, "{now} vs {sys}");
    let s = r("{{ now }}");
    assert!(s.ends_with(" +0000 UTC"), "{s}");
    assert_eq!(r("{{ now | date \"2006\" }}").len(), 4);
    // An hour ago, by seconds since the epoch and by time.
    let ago = r(&format!("{{{{ ago {} }}}}", sys - 3600));
    assert!(ago == "1h0m0s" || ago == "1h0m1s", "{ago}");
    assert_eq!(r("{{ now | dateModify \"-90m\" | ago }}"), "1h30m0s");
    assert_eq!(r("{{ now | dateModify \"-49h\" | durationRound }}"), "2d");
    assert_eq!(r("{{ ago \"not a time\" }}"), "0s");
}
