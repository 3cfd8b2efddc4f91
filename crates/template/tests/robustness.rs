//! Mutated and generated templates never panic and always finish within the limits (a quick,
//! deterministic complement to the fuzz target in `crates/template/fuzz`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lockstep_template::{Limits, render};
use serde_json::Value as Json;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const FRAGMENTS: &[&str] = &[
    "{{",
    "}}",
    "{{-",
    "-}}",
    " ",
    "(",
    ")",
    "|",
    ".",
    ".a",
    ".b",
    "$",
    "$x",
    ":=",
    "=",
    ",",
    "\"s\"",
    "`r`",
    "'c'",
    "1",
    "-2",
    "1.5e3",
    "0x10",
    "nil",
    "true",
    "if",
    "else",
    "end",
    "range",
    "with",
    "define",
    "template",
    "block",
    "break",
    "continue",
    "\"t\"",
    "printf",
    "\"%v %d %s\"",
    "len",
    "index",
    "slice",
    "eq",
    "lt",
    "and",
    "or",
    "not",
    "print",
    "html",
    "js",
    "urlquery",
    "list",
    "dict",
    "set",
    "get",
    "fromJson",
    "toJson",
    "until",
    "repeat",
    "upper",
    "b64enc",
    "b64dec",
    "regexFindAll",
    "\"a+\"",
    "-1",
    "add",
    "div",
    "0",
    "merge",
    "deepCopy",
    "split",
    "join",
    "sortAlpha",
    "default",
    "/*",
    "*/",
    "\n",
    "x",
];

fn data() -> BTreeMap<String, Vec<u8>> {
    let mut d = BTreeMap::new();
    d.insert("a".into(), b"{\"k\":[1,2,{\"z\":null}]}".to_vec());
    d.insert("b".into(), vec![0xff, 0x00, b'x']);
    d
}

fn check(t: &str, limits: &Limits) {
    let start = Instant::now();
    let _ = render(t, &data(), limits);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "slow template {t:?}"
    );
}

fn limits() -> Limits {
    Limits {
        max_steps: 20_000,
        max_output: 1 << 16,
        cpu_time: Duration::from_millis(500),
        ..Limits::default()
    }
}

#[test]
fn generated_templates_do_not_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let limits = limits();
    for _ in 0..4000 {
        let n = 1 + rng.below(24);
        let t: String = (0..n)
            .map(|_| FRAGMENTS[rng.below(FRAGMENTS.len())])
            .collect::<Vec<_>>()
            .join(" ");
        check(&t, &limits);
    }
}

#[test]
fn mutated_conformance_templates_do_not_panic() {
    let path = format!("{}/tests/conformance/cases.json", manifest_dir());
    let cases: Vec<Json> =
        serde_json::from_str(&std::fs::read_to_string(path).expect("cases")).expect("json");
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let limits = limits();
    for case in &cases {
        let t = case
            .get("template")
            .and_then(Json::as_str)
            .unwrap_or_default();
        check(t, &limits);
        for _ in 0..8 {
            let mut b = t.as_bytes().to_vec();
            for _ in 0..1 + rng.below(3) {
                let i = if b.is_empty() { 0 } else { rng.below(b.len()) };
                match rng.below(3) {
                    0 if !b.is_empty() => {
                        b.remove(i);
                    }
                    1 => b.insert(i, b"{}()|$.-\"`' \n"[rng.below(12)]),
                    _ => {
                        let f = FRAGMENTS[rng.below(FRAGMENTS.len())].as_bytes();
                        b.splice(i..i, f.iter().copied());
                    }
                }
            }
            check(&String::from_utf8_lossy(&b), &limits);
        }
    }
}

/// Inputs the fuzz target found; each once panicked.
const FUZZ_REGRESSIONS: &[&str] = &[
    // A precision beyond what Rust's formatter accepts.
    "{{ printf \"%.141529E-1 3 %g %G\" 3.14159 3.14158 9}}",
];

#[test]
fn fuzz_regressions() {
    let limits = limits();
    for t in FUZZ_REGRESSIONS {
        check(t, &limits);
    }
}

/// The package's folder: from cargo at run time (a test binary that cargo kept from a build of
/// another checkout of the same tree would otherwise look in that checkout), else as compiled.
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned())
}
