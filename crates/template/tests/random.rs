//! sprig's random functions, checked by properties: length, alphabet, format, spread.

use std::collections::{BTreeMap, BTreeSet};

use lockstep_template::{Limits, render};

fn r(t: &str) -> String {
    let data: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    String::from_utf8(render(t, &data, &Limits::default()).expect(t)).expect("utf-8")
}

#[test]
fn random_strings_have_the_length_and_alphabet_asked_for() {
    type Check = fn(char) -> bool;
    let cases: [(&str, Check); 4] = [
        ("randAlphaNum", |c| c.is_ascii_alphanumeric()),
        ("randAlpha", |c| c.is_ascii_alphabetic()),
        ("randNumeric", |c| c.is_ascii_digit()),
        ("randAscii", |c| (' '..='~').contains(&c)),
    ];
    for (f, ok) in cases {
        let s = r(&format!("{{{{ {f} 64 }}}}"));
        assert_eq!(s.len(), 64, "{f}");
        assert!(s.chars().all(ok), "{f}: {s}");
        assert_ne!(s, r(&format!("{{{{ {f} 64 }}}}")), "{f} repeats");
        assert_eq!(r(&format!("{{{{ {f} 0 }}}}|{{{{ {f} -3 }}}}")), "|", "{f}");
    }
}

#[test]
fn rand_int_stays_in_range_and_spreads() {
    let seen: BTreeSet<String> = (0..200).map(|_| r("{{ randInt 3 7 }}")).collect();
    assert_eq!(
        seen,
        ["3", "4", "5", "6"].iter().map(|s| s.to_string()).collect()
    );
    assert!(
        render(
            "{{ randInt 5 5 }}",
            &BTreeMap::<String, Vec<u8>>::new(),
            &Limits::default()
        )
        .is_err()
    );
}

#[test]
fn uuidv4_has_the_version_4_format() {
    let u = r("{{ uuidv4 }}");
    let b = u.as_bytes();
    assert_eq!(u.len(), 36, "{u}");
    assert!([8, 13, 18, 23].iter().all(|i| b[*i] == b'-'), "{u}");
    assert_eq!(b[14], b'4', "{u}");
    assert!(matches!(b[19], b'8' | b'9' | b'a' | b'b'), "{u}");
    assert!(
        u.chars()
            .all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
        "{u}"
    );
    assert_ne!(u, r("{{ uuidv4 }}"));
}

#[test]
fn shuffle_permutes_runes_and_rand_bytes_is_base64() {
    let s = r(r#"{{ shuffle "héllo wörld" }}"#);
    let mut a: Vec<char> = s.chars().collect();
    let mut b: Vec<char> = "héllo wörld".chars().collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    let d = r("{{ randBytes 30 }}");
    assert_eq!(d.len(), 40);
    assert_eq!(r("{{ randBytes 30 | b64dec | len }}"), "30");
}

#[test]
fn random_functions_check_the_limit_first() {
    for f in ["randAlphaNum", "randAscii", "randBytes"] {
        let e = render(
            &format!("{{{{ {f} 100000000000 }}}}"),
            &BTreeMap::<String, Vec<u8>>::new(),
            &Limits::default(),
        );
        assert!(e.is_err(), "{f}");
    }
}
