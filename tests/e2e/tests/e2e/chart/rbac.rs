//! The RBAC the chart renders for each mode: no wildcard anywhere, and exactly the rules the
//! mode needs (no workload rules without reload, no ClusterSecretStores when they are not
//! served, a Role and no cluster-wide grant in namespaced mode).

use serde_json::{Value, json};

use super::{args, of_kind, one, render};

/// Every rule of every Role and ClusterRole rendered, with the kind that holds it.
fn rules(docs: &[Value]) -> Vec<(String, Value)> {
    docs.iter()
        .filter(|d| d["kind"] == "Role" || d["kind"] == "ClusterRole")
        .flat_map(|d| {
            let kind = d["kind"].as_str().unwrap().to_owned();
            d["rules"]
                .as_array()
                .expect("rules")
                .iter()
                .map(move |r| (kind.clone(), r.clone()))
        })
        .collect()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().expect("string")).collect())
        .unwrap_or_default()
}

/// The verbs granted on `group`/`resource`, over every rule.
fn verbs(docs: &[Value], group: &str, resource: &str) -> Vec<String> {
    let mut out: Vec<String> = rules(docs)
        .iter()
        .filter(|(_, r)| {
            strings(&r["apiGroups"]).contains(&group)
                && strings(&r["resources"]).contains(&resource)
        })
        .flat_map(|(_, r)| {
            strings(&r["verbs"])
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn no_wildcards(docs: &[Value], mode: &str) {
    let all = rules(docs);
    assert!(!all.is_empty(), "{mode}: no RBAC rendered");
    for (kind, rule) in &all {
        for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
            assert!(
                !strings(&rule[field]).iter().any(|s| s.contains('*')),
                "{mode}: a {kind} grants a wildcard in {field}: {rule}"
            );
        }
        assert!(
            rule.get("nonResourceURLs").is_none(),
            "{mode}: a {kind} grants non-resource URLs: {rule}"
        );
    }
    // Lockstep never writes CRDs, webhook configurations or RBAC.
    for (group, resource) in [
        ("apiextensions.k8s.io", "customresourcedefinitions"),
        (
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
        ),
        ("rbac.authorization.k8s.io", "clusterroles"),
        ("coordination.k8s.io", "leases"),
        ("", "pods"),
    ] {
        assert!(
            verbs(docs, group, resource).is_empty(),
            "{mode}: grants {group}/{resource}"
        );
    }
}

const WORKLOADS: &[(&str, &str)] = &[
    ("apps", "deployments"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
    ("argoproj.io", "rollouts"),
];

#[test]
fn cluster_wide_defaults_grant_sync_and_reload_and_nothing_else() {
    let docs = render("lockstep", "lockstep", &json!({}));
    no_wildcards(&docs, "defaults");
    assert!(of_kind(&docs, "Role").is_empty());
    let role = one(&docs, "ClusterRole");
    let binding = one(&docs, "ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(
        binding["subjects"],
        json!([{ "kind": "ServiceAccount", "name": "lockstep", "namespace": "lockstep" }])
    );
    assert_eq!(
        verbs(&docs, "external-secrets.io", "clustersecretstores"),
        ["get", "list", "patch", "update", "watch"]
    );
    assert_eq!(
        verbs(&docs, "", "secrets"),
        [
            "create", "delete", "get", "list", "patch", "update", "watch"
        ]
    );
    assert_eq!(verbs(&docs, "", "configmaps"), ["get", "list", "watch"]);
    // Namespaces are only read (ClusterSecretStore conditions) unless a namespace selector
    // has to follow their labels.
    assert_eq!(verbs(&docs, "", "namespaces"), ["get"]);
    for (group, resource) in WORKLOADS {
        assert!(
            !verbs(&docs, group, resource).is_empty(),
            "reload needs {group}/{resource}"
        );
    }
    assert_eq!(
        verbs(&docs, "apps", "deployments"),
        ["get", "list", "patch", "watch"]
    );
    let a = args(&docs);
    assert!(a.contains(&"--reload".to_owned()), "{a:?}");
    assert!(!a.iter().any(|x| x.starts_with("--namespace=")), "{a:?}");
}

#[test]
fn reload_off_drops_every_workload_rule() {
    let docs = render(
        "lockstep",
        "lockstep",
        &json!({ "reloader": { "enabled": false } }),
    );
    no_wildcards(&docs, "reload off");
    for (group, resource) in WORKLOADS {
        assert!(
            verbs(&docs, group, resource).is_empty(),
            "reload off still grants {group}/{resource}"
        );
    }
    assert_eq!(verbs(&docs, "", "configmaps"), ["get"]);
    assert!(!args(&docs).iter().any(|a| a.starts_with("--reload")));
}

#[test]
fn no_cluster_stores_drops_their_rules_and_namespaces() {
    let docs = render(
        "lockstep",
        "lockstep",
        &json!({ "processClusterStore": false }),
    );
    no_wildcards(&docs, "processClusterStore=false");
    let text = serde_json::to_string(&rules(&docs)).unwrap();
    assert!(!text.contains("clustersecretstores"), "{text}");
    assert!(verbs(&docs, "", "namespaces").is_empty());
    assert!(args(&docs).contains(&"--disable-cluster-stores".to_owned()));
}

#[test]
fn reload_options_narrow_or_widen_exactly_their_rules() {
    let docs = render(
        "lockstep",
        "lockstep",
        &json!({ "reloader": { "namespaceSelector": "team:a", "ignoreConfigMaps": true,
                               "ignoreJobs": true, "isArgoRollouts": false } }),
    );
    no_wildcards(&docs, "reload options");
    assert_eq!(verbs(&docs, "", "namespaces"), ["get", "list", "watch"]);
    assert_eq!(verbs(&docs, "", "configmaps"), ["get"]);
    // CronJobs are still rolled, by creating a Job after listing the ones they own.
    assert_eq!(verbs(&docs, "batch", "jobs"), ["create", "list"]);
    assert!(verbs(&docs, "argoproj.io", "rollouts").is_empty());
    let a = args(&docs);
    for expected in [
        "--namespace-selector=team:a",
        "--resources-to-ignore=configMaps",
        "--ignored-workload-types=jobs",
    ] {
        assert!(a.contains(&expected.to_owned()), "{expected} not in {a:?}");
    }
    let both = render(
        "lockstep",
        "lockstep",
        &json!({ "reloader": { "ignoreJobs": true, "ignoreCronJobs": true } }),
    );
    assert!(verbs(&both, "batch", "jobs").is_empty());
    assert!(verbs(&both, "batch", "cronjobs").is_empty());
    assert!(args(&both).contains(&"--ignored-workload-types=jobs,cronjobs".to_owned()));
}

#[test]
fn namespaced_mode_grants_a_role_in_that_namespace_only() {
    let docs = render(
        "lockstep",
        "lockstep",
        &json!({ "scopedNamespace": "apps", "scopedRBAC": true }),
    );
    no_wildcards(&docs, "namespaced");
    assert!(of_kind(&docs, "ClusterRole").is_empty());
    assert!(of_kind(&docs, "ClusterRoleBinding").is_empty());
    let roles = of_kind(&docs, "Role");
    let main = roles
        .iter()
        .find(|r| r["metadata"]["name"] == "lockstep")
        .expect("the Role");
    assert_eq!(main["metadata"]["namespace"], "apps");
    let text = serde_json::to_string(&main["rules"]).unwrap();
    assert!(!text.contains("clustersecretstores"), "{text}");
    assert!(!text.contains("namespaces"), "{text}");
    // The reload hash key lives in the release namespace: read by name, created once.
    let key = roles
        .iter()
        .find(|r| r["metadata"]["name"] == "lockstep-reload-key")
        .expect("the hash key Role");
    assert_eq!(key["metadata"]["namespace"], "lockstep");
    assert_eq!(
        key["rules"],
        json!([
            { "apiGroups": [""], "resources": ["secrets"],
              "resourceNames": ["lockstep-reload-hash-key"], "verbs": ["get"] },
            { "apiGroups": [""], "resources": ["secrets"], "verbs": ["create"] }
        ])
    );
    for binding in of_kind(&docs, "RoleBinding") {
        assert_eq!(
            binding["subjects"],
            json!([{ "kind": "ServiceAccount", "name": "lockstep", "namespace": "lockstep" }])
        );
    }
    let a = args(&docs);
    assert!(a.contains(&"--namespace=apps".to_owned()), "{a:?}");
    assert!(a.contains(&"--disable-cluster-stores".to_owned()), "{a:?}");

    // In its own namespace, the one Role covers the hash key too.
    let same = render(
        "lockstep",
        "apps",
        &json!({ "scopedNamespace": "apps", "scopedRBAC": true }),
    );
    assert_eq!(of_kind(&same, "Role").len(), 1);
    assert_eq!(of_kind(&same, "RoleBinding").len(), 1);

    // scopedNamespace without scopedRBAC: one namespace watched under a ClusterRole, as in
    // ESO's chart.
    let cluster = render(
        "lockstep",
        "lockstep",
        &json!({ "scopedNamespace": "apps" }),
    );
    no_wildcards(&cluster, "scopedNamespace without scopedRBAC");
    one(&cluster, "ClusterRole");
    assert!(args(&cluster).contains(&"--namespace=apps".to_owned()));
}
