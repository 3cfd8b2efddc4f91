//! `helm lint --strict`, and values that the schema or the chart's own checks refuse with a
//! message that names the value.

use serde_json::{Value, json};

use super::{chart_dir, helm, template_output, values_file};

fn lint(values: &Value) {
    let out = helm()
        .args(["lint", "--strict"])
        .arg(chart_dir())
        .arg("-f")
        .arg(values_file(values))
        .output()
        .expect("run helm lint");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "helm lint --strict with {values} failed:\n{text}"
    );
    assert!(
        text.contains("1 chart(s) linted, 0 chart(s) failed"),
        "helm lint said:\n{text}"
    );
}

#[test]
fn the_chart_passes_helm_lint_strict_in_every_mode() {
    lint(&json!({}));
    lint(&json!({ "scopedNamespace": "apps", "scopedRBAC": true }));
    lint(&json!({ "reloader": { "enabled": false }, "processClusterStore": false }));
    lint(&json!({
        "serviceMonitor": { "enabled": true }, "podDisruptionBudget": { "enabled": true },
        "replicaCount": 2, "hostNetwork": true
    }));
}

/// `helm template` with `values` fails, and its message contains every one of `expected`.
fn refused(values: Value, expected: &[&str]) {
    let out = template_output("lockstep", "lockstep", &values);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "helm template accepted {values}:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for part in expected {
        assert!(
            stderr.contains(part),
            "the refusal of {values} does not say {part:?}:\n{stderr}"
        );
    }
}

#[test]
fn wrong_values_fail_with_a_message_that_names_them() {
    // Types and enums, from values.schema.json.
    refused(
        json!({ "replicaCount": "two" }),
        &["replicaCount", "integer"],
    );
    refused(
        json!({ "log": { "level": "verbose" } }),
        &["/log/level", "error", "trace"],
    );
    refused(
        json!({ "log": { "format": "logfmt" } }),
        &["/log/format", "json", "text"],
    );
    refused(
        json!({ "reloader": { "reloadStrategy": "rolling" } }),
        &["/reloader/reloadStrategy", "env-vars", "annotations"],
    );
    refused(json!({ "installCRDs": "yes" }), &["installCRDs", "boolean"]);
    refused(
        json!({ "image": { "pullPolicy": "Sometimes" } }),
        &["/image/pullPolicy", "IfNotPresent"],
    );
    refused(json!({ "concurrent": 0 }), &["/concurrent", "minimum"]);
    // A misspelt key is refused instead of silently ignored.
    refused(
        json!({ "reloader": { "reloadStratgy": "annotations" } }),
        &["reloadStratgy"],
    );
    refused(json!({ "scopedRbac": true }), &["scopedRbac"]);
    // Contradictions, from the chart's own checks.
    refused(
        json!({ "scopedRBAC": true }),
        &["scopedRBAC needs scopedNamespace"],
    );
    refused(
        json!({ "reloader": { "ignoreSecrets": true, "ignoreConfigMaps": true } }),
        &["reloader.ignoreSecrets and reloader.ignoreConfigMaps"],
    );
    refused(
        json!({ "scopedNamespace": "apps", "scopedRBAC": true,
                "reloader": { "namespaceSelector": "team=a" } }),
        &["reloader.namespaceSelector", "scopedRBAC"],
    );
    refused(
        json!({ "serviceAccount": { "create": false } }),
        &["serviceAccount.name is required"],
    );
}
