//! The Helm chart in `deploy/charts/lockstep`: linted and rendered by the pinned helm
//! (`LOCKSTEP_HELM`, built by `testenv/tools.py`), its manifests judged by the real apiserver
//! (server-side dry-run, PodSecurity admission), its RBAC checked per mode, and its generated
//! parts (CRDs, README, `deploy/rbac/clusterrole.yaml`) checked against their sources.

mod drift;
mod dry_run;
mod lint;
mod rbac;
mod run;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kube::api::{Api, DynamicObject, Patch, PatchParams, ValidationDirective};
use kube::core::GroupVersionKind;
use kube::discovery::{Scope, pinned_kind};
use lockstep_e2e::{test_env, unique_name};
use serde_json::Value;

/// The repository's root.
pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The chart's folder.
pub(crate) fn chart_dir() -> PathBuf {
    repo_root().join("deploy/charts/lockstep")
}

/// The pinned helm binary: `LOCKSTEP_HELM` from the process or from the test environment's
/// variables; panics saying how to get it when neither has it.
pub(crate) fn helm_bin() -> PathBuf {
    let path = std::env::var_os("LOCKSTEP_HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(test_env().var("LOCKSTEP_HELM")));
    assert!(
        path.is_file(),
        "LOCKSTEP_HELM is {}, which is not a file: build helm with `python3 testenv/tools.py helm`",
        path.display()
    );
    path
}

/// A helm command with its own, empty configuration, cache and data folders.
pub(crate) fn helm() -> Command {
    let home = std::env::temp_dir().join(format!("lockstep-e2e-helm-{}", std::process::id()));
    let mut command = Command::new(helm_bin());
    for (var, sub) in [
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_DATA_HOME", "data"),
    ] {
        command.env(var, home.join(sub));
    }
    command.env_remove("KUBECONFIG");
    command
}

/// Writes `values` (JSON, which is YAML) into a file of its own and returns its path.
pub(crate) fn values_file(values: &Value) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lockstep-e2e-values-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("values folder");
    let path = dir.join(format!("{}.json", unique_name("values")));
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(values).expect("values JSON"),
    )
    .expect("values file");
    path
}

/// `helm template` of the chart as release `release` in `namespace` with `values`; the raw
/// output (whatever its status).
pub(crate) fn template_output(release: &str, namespace: &str, values: &Value) -> Output {
    helm()
        .args(["template", release])
        .arg(chart_dir())
        .args(["--namespace", namespace, "-f"])
        .arg(values_file(values))
        .output()
        .expect("run helm template")
}

/// The chart rendered by `helm template` (which must succeed), one JSON value per manifest.
pub(crate) fn render(release: &str, namespace: &str, values: &Value) -> Vec<Value> {
    let out = template_output(release, namespace, values);
    assert!(
        out.status.success(),
        "helm template with {values} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_manifests(&String::from_utf8(out.stdout).expect("UTF-8 manifests"))
}

/// The documents of a multi-document YAML stream, empty ones left out.
pub(crate) fn parse_manifests(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .expect("manifests are YAML")
        .into_iter()
        .filter(|doc| !doc.is_null())
        .collect()
}

/// The manifests of `kind`.
pub(crate) fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The one manifest of `kind`.
pub(crate) fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found = of_kind(docs, kind);
    assert_eq!(
        found.len(),
        1,
        "one {kind} expected, rendered {}",
        found.len()
    );
    found[0]
}

/// The controller container's arguments.
pub(crate) fn args(docs: &[Value]) -> Vec<String> {
    one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_owned())
        .collect()
}

/// Server-side applies `doc` with `dryRun=All` and strict field validation (an unknown or
/// misplaced field fails); a namespaced object without a namespace goes to `namespace`.
/// Returns the apiserver's answer.
pub(crate) async fn dry_run_apply(
    client: &kube::Client,
    namespace: &str,
    doc: &Value,
) -> Result<DynamicObject, kube::Error> {
    let (group, version) = match doc["apiVersion"]
        .as_str()
        .expect("apiVersion")
        .split_once('/')
    {
        Some((g, v)) => (g.to_owned(), v.to_owned()),
        None => (
            String::new(),
            doc["apiVersion"].as_str().unwrap().to_owned(),
        ),
    };
    let gvk = GroupVersionKind::gvk(&group, &version, doc["kind"].as_str().expect("kind"));
    let (resource, caps) = pinned_kind(client, &gvk)
        .await
        .unwrap_or_else(|e| panic!("the apiserver does not serve {gvk:?}: {e}"));
    let name = doc["metadata"]["name"].as_str().expect("name");
    let api: Api<DynamicObject> = if caps.scope == Scope::Namespaced {
        let ns = doc["metadata"]["namespace"].as_str().unwrap_or(namespace);
        Api::namespaced_with(client.clone(), ns, &resource)
    } else {
        Api::all_with(client.clone(), &resource)
    };
    let params = PatchParams {
        dry_run: true,
        force: true,
        field_manager: Some("lockstep-chart-test".to_owned()),
        field_validation: Some(ValidationDirective::Strict),
    };
    api.patch(name, &params, &Patch::Apply(doc)).await
}
