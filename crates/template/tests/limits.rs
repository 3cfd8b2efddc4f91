//! Render limits: templates that loop, recurse or grow without bound stop with an error, and
//! error messages never contain data values.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lockstep_template::{ErrorKind, Limits, TemplateError, render};

const SECRET: &str = "hunter2-very-secret";

fn data() -> BTreeMap<String, Vec<u8>> {
    let mut d = BTreeMap::new();
    d.insert("secret".to_string(), SECRET.as_bytes().to_vec());
    d.insert(
        "json".to_string(),
        format!("{{\"k\":\"{SECRET}\"}}").into_bytes(),
    );
    d
}

fn limit_error(t: &str) -> TemplateError {
    let start = Instant::now();
    let e = render(t, &data(), &Limits::default()).expect_err(t);
    assert_eq!(e.kind, ErrorKind::Limit, "{t}: {e}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{t} took {:?}",
        start.elapsed()
    );
    e
}

#[test]
fn exponential_recursion_hits_the_step_limit() {
    limit_error(
        r#"{{ define "a" }}{{ template "a" . }}{{ template "a" . }}{{ end }}{{ template "a" . }}"#,
    );
    limit_error(
        r#"{{ define "b" }}{{ if lt (len .) 150 }}{{ template "b" (print . "x") }}{{ template "b" (print . "y") }}{{ end }}{{ end }}{{ template "b" "" }}"#,
    );
}

#[test]
fn deep_recursion_hits_the_depth_limit() {
    let e = limit_error(r#"{{ define "r" }}{{ template "r" . }}{{ end }}{{ template "r" . }}"#);
    assert!(e.message.contains("depth"), "{e}");
}

#[test]
fn nested_ifs_inside_recursion_hit_the_depth_limit_without_overflowing_the_stack() {
    let mut body = String::new();
    for _ in 0..90 {
        body.push_str("{{ if true }}");
    }
    body.push_str(r#"{{ template "r" . }}"#);
    for _ in 0..90 {
        body.push_str("{{ end }}");
    }
    limit_error(&format!(
        r#"{{{{ define "r" }}}}{body}{{{{ end }}}}{{{{ template "r" . }}}}"#
    ));
}

#[test]
fn deep_pipelines_inside_deep_recursion_do_not_overflow_the_stack() {
    let parens = format!("{}len .{}", "(".repeat(190), ")".repeat(190));
    let t = format!(
        r#"{{{{ define "r" }}}}{{{{ $x := {parens} }}}}{{{{ template "r" . }}}}{{{{ end }}}}{{{{ template "r" . }}}}"#
    );
    limit_error(&t);
}

#[test]
fn deep_nesting_is_refused_by_the_parser() {
    let t = format!("{{{{ {}1{} }}}}", "(".repeat(5000), ")".repeat(5000));
    let e = render(&t, &data(), &Limits::default()).expect_err("nesting");
    assert_eq!(e.kind, ErrorKind::Parse);
    let t = format!(
        "{}x{}",
        "{{ if true }}".repeat(5000),
        "{{ end }}".repeat(5000)
    );
    assert_eq!(
        render(&t, &data(), &Limits::default())
            .expect_err("nesting")
            .kind,
        ErrorKind::Parse
    );
}

#[test]
fn long_loops_hit_the_step_limit() {
    limit_error("{{ range 100000000000 }}{{ end }}");
    limit_error("{{ range $i := until 100000 }}{{ range $j := until 100000 }}{{ end }}{{ end }}");
}

#[test]
fn output_is_bounded() {
    let e = limit_error(
        r#"{{ range 100000 }}{{ "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" }}{{ end }}"#,
    );
    assert!(e.message.contains("output"), "{e}");
}

#[test]
fn functions_check_the_limit_before_allocating() {
    limit_error(r#"{{ repeat 1000000000000 "x" }}"#);
    limit_error(r#"{{ until 1000000000000 }}"#);
    limit_error(r#"{{ untilStep 0 1000000000000 1 }}"#);
    limit_error(r#"{{ indent 1000000000000 "x" }}"#);
    limit_error(r#"{{ seq 1000000000000 }}"#);
    // Doubling a string: each step is checked.
    limit_error(r#"{{ $s := "xxxxxxxxxxxxxxxx" }}{{ range 40 }}{{ $s = print $s $s }}{{ end }}"#);
}

#[test]
fn the_deadline_stops_a_render() {
    let limits = Limits {
        max_steps: u64::MAX,
        cpu_time: Duration::from_millis(50),
        ..Limits::default()
    };
    let start = Instant::now();
    let e = render("{{ range 100000000000 }}{{ end }}", &data(), &limits).expect_err("deadline");
    assert_eq!(e.kind, ErrorKind::Limit);
    assert!(e.message.contains("time"), "{e}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_map_cannot_contain_itself() {
    let e = render(
        r#"{{ $d := dict }}{{ $_ := set $d "self" $d }}{{ $d }}"#,
        &data(),
        &Limits::default(),
    );
    assert!(e.is_err());
}

#[test]
fn errors_carry_a_position_and_no_data_values() {
    let cases = [
        "{{ .secret.field }}",
        "{{ index .secret 100 }}",
        "{{ range .secret }}{{ end }}",
        "{{ .secret | add1 | upper }}",
        "{{ eq .secret 1 }}",
        "{{ (fromJson .json).k.x }}",
        "{{ (fromJson .json).missing }}",
        "{{ repeat (len .secret | add 1) .secret }}",
        "{{ printf 1 .secret }}",
        "{{ template .secret }}",
        "{{ b64dec .secret | fail }}",
        "{{ get . \"secret\" }}",
        "{{ regexFindAll .secret \"x\" -1 }}{{ regexFindAll \"(\" .secret 1 }}",
    ];
    for t in cases {
        let Err(e) = render(t, &data(), &Limits::default()) else {
            continue;
        };
        let msg = e.to_string();
        assert!(!msg.contains("hunter2"), "{t}: {msg}");
        assert!(e.line >= 1 && e.col >= 1, "{t}: {msg}");
    }
    let e = render("line one\n  {{ .nope }}", &data(), &Limits::default()).expect_err("missing");
    assert_eq!(
        (e.kind, e.line, e.col),
        (ErrorKind::MissingKey, 2, 6),
        "{e}"
    );
}

#[test]
fn fail_is_its_own_kind() {
    let e = render(r#"{{ fail "stop here" }}"#, &data(), &Limits::default()).expect_err("fail");
    assert_eq!(e.kind, ErrorKind::Fail);
}

#[test]
fn deeply_nested_values_are_printed_compared_and_dropped_without_overflow() {
    let limits = Limits {
        max_steps: 10_000_000,
        cpu_time: Duration::from_secs(30),
        ..Limits::default()
    };
    let t = r#"{{ $l := list }}{{ range 300000 }}{{ $l = list $l }}{{ end }}{{ len $l }} {{ has $l (list $l) }} {{ len (toJson $l) }} {{ len (print $l) }}"#;
    let out = render(t, &data(), &limits).expect("render");
    assert!(out.starts_with(b"1 "), "{}", String::from_utf8_lossy(&out));
    let t = r#"{{ $d := dict }}{{ range 300000 }}{{ $d = dict "k" $d }}{{ end }}{{ len $d }}"#;
    assert_eq!(render(t, &data(), &limits).expect("render"), b"1");
}

#[test]
fn yaml_aliases_cannot_grow_exponentially() {
    let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        doc.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let mut data = std::collections::BTreeMap::new();
    data.insert("doc".to_string(), doc);
    let out = lockstep_template::render(
        r#"{{ hasKey (fromYaml .doc) "Error" }}"#,
        &data,
        &lockstep_template::Limits::default(),
    )
    .unwrap();
    assert_eq!(out, b"true");
}
