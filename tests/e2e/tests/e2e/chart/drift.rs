//! The chart's generated parts against their sources: its CRDs are exactly `lockstep crds`,
//! its README is what `scripts/chart-docs` writes from values.yaml, `deploy/rbac/clusterrole.yaml`
//! is the ClusterRole the chart renders by default, and its versions are the workspace's.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::{Value, json};

use super::{chart_dir, of_kind, one, parse_manifests, render, repo_root};
use crate::binary::lockstep_bin;

fn by_name(docs: Vec<Value>) -> BTreeMap<String, Value> {
    docs.into_iter()
        .map(|d| (d["metadata"]["name"].as_str().expect("name").to_owned(), d))
        .collect()
}

/// The JSON pointer of the first place where `a` and `b` differ, with both values there.
/// Numbers are compared by value: Helm writes the float `255.0` of a schema's `maximum` as
/// `255`, which is the same JSON number to the apiserver.
fn first_difference(a: &Value, b: &Value, at: String) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                first_difference(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    format!("{at}/{k}"),
                )
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(p, q, format!("{at}/{i}"))),
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => None,
        _ if a == b => None,
        _ => Some(format!("{at} (chart: {a}, lockstep crds: {b})")),
    }
}

#[test]
fn the_charts_crds_are_exactly_lockstep_crds_and_are_kept_on_uninstall() {
    let out = Command::new(lockstep_bin())
        .arg("crds")
        .output()
        .expect("run lockstep crds");
    assert!(out.status.success(), "lockstep crds failed");
    let generated = by_name(parse_manifests(
        &String::from_utf8(out.stdout).expect("UTF-8"),
    ));
    assert!(!generated.is_empty(), "lockstep crds printed no CRD");

    let docs = render("lockstep", "lockstep", &json!({}));
    let mut rendered = by_name(
        of_kind(&docs, "CustomResourceDefinition")
            .into_iter()
            .cloned()
            .collect(),
    );
    for (name, crd) in &mut rendered {
        let annotations = crd["metadata"]["annotations"]
            .as_object_mut()
            .unwrap_or_else(|| panic!("{name} has no annotations"));
        assert_eq!(
            annotations.remove("helm.sh/resource-policy"),
            Some(json!("keep")),
            "{name} is not kept on uninstall"
        );
        if annotations.is_empty() {
            crd["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("annotations");
        }
    }
    assert_eq!(
        rendered.keys().collect::<Vec<_>>(),
        generated.keys().collect::<Vec<_>>(),
        "the chart's CRDs are not the ones `lockstep crds` prints; regenerate deploy/crds with \
         `cargo run -p lockstep -- crds --dir deploy/crds` (the chart reads it through files/crds)"
    );
    for (name, crd) in &generated {
        if let Some(at) = first_difference(&rendered[name], crd, String::new()) {
            panic!(
                "the chart's {name} differs from `lockstep crds` at {at}; regenerate deploy/crds \
                 with `cargo run -p lockstep -- crds --dir deploy/crds`"
            );
        }
    }

    let without = render("lockstep", "lockstep", &json!({ "installCRDs": false }));
    assert!(of_kind(&without, "CustomResourceDefinition").is_empty());
}

#[test]
fn the_chart_readme_is_generated_from_values_yaml() {
    let out = Command::new("python3")
        .arg(repo_root().join("scripts/chart-docs"))
        .arg("--stdout")
        .output()
        .expect("run scripts/chart-docs");
    assert!(
        out.status.success(),
        "scripts/chart-docs failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let readme = std::fs::read_to_string(chart_dir().join("README.md")).expect("README.md");
    assert!(
        readme == String::from_utf8(out.stdout).expect("UTF-8"),
        "deploy/charts/lockstep/README.md is stale: run scripts/chart-docs"
    );
    // Every top-level value is in the table.
    let values = std::fs::read_to_string(chart_dir().join("values.yaml")).expect("values.yaml");
    for line in values.lines() {
        if let Some((key, _)) = line.split_once(':')
            && !line.starts_with([' ', '#'])
        {
            assert!(
                readme.contains(&format!("| `{key}")),
                "{key} is missing from the README"
            );
        }
    }
}

#[test]
fn deploy_rbac_clusterrole_is_the_clusterrole_the_chart_renders() {
    let docs = render("lockstep", "lockstep", &json!({}));
    let rendered = one(&docs, "ClusterRole");
    let text = std::fs::read_to_string(repo_root().join("deploy/rbac/clusterrole.yaml"))
        .expect("deploy/rbac/clusterrole.yaml");
    let file = parse_manifests(&text);
    let file = one(&file, "ClusterRole");
    assert_eq!(file["metadata"]["name"], rendered["metadata"]["name"]);
    assert!(
        file["rules"] == rendered["rules"],
        "deploy/rbac/clusterrole.yaml differs from the chart's ClusterRole: run scripts/chart-rbac\n\
         file:  {}\nchart: {}",
        file["rules"],
        rendered["rules"]
    );
}

#[test]
fn the_chart_version_and_app_version_are_the_workspace_version() {
    let chart = std::fs::read_to_string(chart_dir().join("Chart.yaml")).expect("Chart.yaml");
    let chart: Value = serde_saphyr::from_str(&chart).expect("Chart.yaml is YAML");
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["version"], version, "Chart.yaml version");
    assert_eq!(chart["appVersion"], version, "Chart.yaml appVersion");
    // The image tag defaults to it.
    let docs = render("lockstep", "lockstep", &json!({}));
    let container = &one(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["image"],
        format!("lockstep.invalid/lockstep:{version}")
    );
    assert_eq!(container["imagePullPolicy"], "IfNotPresent");
}
