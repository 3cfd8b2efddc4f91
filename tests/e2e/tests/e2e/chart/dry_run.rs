//! The chart rendered for a matrix of values and judged by the real apiserver: every manifest
//! server-side applied with `dryRun=All` and strict field validation, and the controller's
//! pod template created as a Pod (dry-run) in a namespace that enforces Pod Security
//! Standards `restricted`, so that PodSecurity admission decides.

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use lockstep_e2e::{TIMEOUT, TestNamespace, cluster_scoped, test_env};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::{args, dry_run_apply, of_kind, one, render};

/// A minimal ServiceMonitor CRD (any spec accepted), so that the chart's ServiceMonitor has a
/// kind to be applied as; created once per run.
async fn ensure_servicemonitor_crd(client: &kube::Client) {
    static DONE: OnceCell<()> = OnceCell::const_new();
    DONE.get_or_init(|| async {
        let crd: CustomResourceDefinition = serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": { "name": "servicemonitors.monitoring.coreos.com" },
            "spec": { "group": "monitoring.coreos.com", "scope": "Namespaced",
              "names": { "kind": "ServiceMonitor", "plural": "servicemonitors",
                         "singular": "servicemonitor", "listKind": "ServiceMonitorList" },
              "versions": [{ "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": { "type": "object",
                  "properties": { "spec": { "type": "object",
                    "x-kubernetes-preserve-unknown-fields": true } } } } }] }
        }))
        .expect("CRD");
        let api = Api::<CustomResourceDefinition>::all(client.clone());
        let name = "servicemonitors.monitoring.coreos.com";
        {
            let _serial = cluster_scoped().await;
            api.patch(
                name,
                &PatchParams::apply("lockstep-e2e").force(),
                &Patch::Apply(&crd),
            )
            .await
            .expect("the ServiceMonitor CRD");
        }
        tokio::time::timeout(
            TIMEOUT,
            await_condition(api, name, conditions::is_crd_established()),
        )
        .await
        .expect("ServiceMonitor CRD established in time")
        .expect("watching the CRD");
    })
    .await;
}

/// A test namespace whose PodSecurity admission enforces `restricted`.
async fn restricted_namespace(client: &kube::Client, prefix: &str) -> TestNamespace {
    let ns = TestNamespace::create(client, prefix).await;
    Api::<Namespace>::all(client.clone())
        .patch(
            ns.name(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest" } } })),
        )
        .await
        .expect("label the namespace restricted");
    ns
}

/// Dry-run applies every rendered manifest; panics with the apiserver's message on the first
/// refusal.
async fn apply_all(client: &kube::Client, namespace: &str, docs: &[Value], case: &str) {
    for doc in docs {
        if let Err(e) = dry_run_apply(client, namespace, doc).await {
            panic!(
                "{case}: the apiserver refused {} {}: {e}",
                doc["kind"], doc["metadata"]["name"]
            );
        }
    }
}

/// Creates (for real) the rendered ServiceAccount, which Pod admission looks up, then creates
/// the Deployment's pod template as a Pod with `dryRun=All`; the apiserver's answer.
async fn dry_run_pod(
    client: &kube::Client,
    namespace: &str,
    docs: &[Value],
) -> Result<DynamicObject, kube::Error> {
    let sa = one(docs, "ServiceAccount");
    let sa_api = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        namespace,
        &kube::api::ApiResource::erase::<k8s_openapi::api::core::v1::ServiceAccount>(&()),
    );
    sa_api
        .patch(
            sa["metadata"]["name"].as_str().unwrap(),
            &PatchParams::apply("lockstep-chart-test").force(),
            &Patch::Apply(sa),
        )
        .await
        .expect("the chart's ServiceAccount");
    let template = &one(docs, "Deployment")["spec"]["template"];
    let pod: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "lockstep-pod-check", "labels": template["metadata"]["labels"] },
        "spec": template["spec"],
    }))
    .expect("a Pod from the pod template");
    Api::<DynamicObject>::namespaced_with(
        client.clone(),
        namespace,
        &kube::api::ApiResource::erase::<k8s_openapi::api::core::v1::Pod>(&()),
    )
    .create(
        &PostParams {
            dry_run: true,
            field_manager: None,
        },
        &pod,
    )
    .await
}

fn container(docs: &[Value]) -> &Value {
    &one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
}

#[tokio::test]
async fn every_values_case_is_accepted_by_the_apiserver_and_passes_restricted() {
    let env = test_env();
    let admin = env.admin_client().await;
    ensure_servicemonitor_crd(&admin).await;
    let ns = restricted_namespace(&admin, "chart").await;
    let apps = TestNamespace::create(&admin, "chart-apps").await;
    let role_arn = "arn:aws:iam::111122223333:role/lockstep";

    let cases: Vec<(&str, Value)> = vec![
        ("defaults", json!({})),
        (
            "namespaced",
            json!({ "scopedNamespace": apps.name(), "scopedRBAC": true }),
        ),
        ("reload off", json!({ "reloader": { "enabled": false } })),
        (
            "IRSA",
            json!({ "serviceAccount": { "annotations": { "eks.amazonaws.com/role-arn": role_arn } } }),
        ),
        (
            "custom resources",
            json!({ "resources": { "requests": { "cpu": "50m", "memory": "96Mi" },
                                   "limits": { "cpu": "1", "memory": "1Gi" } } }),
        ),
        (
            "replicas and PDB",
            json!({ "replicaCount": 2, "podDisruptionBudget": { "enabled": true, "maxUnavailable": 1 },
                    "topologySpreadConstraints": [{ "maxSkew": 1,
                        "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway" }] }),
        ),
        (
            "everything else",
            json!({
                "installCRDs": false, "processClusterStore": false, "concurrent": 2,
                "controllerClass": "lockstep", "commonLabels": { "team": "platform" },
                "log": { "level": "debug", "format": "text" },
                "image": { "digest": format!("sha256:{}", "a".repeat(64)) },
                "imagePullSecrets": [{ "name": "regcred" }],
                "podAnnotations": { "a": "b" }, "podLabels": { "c": "d" },
                "priorityClassName": "system-cluster-critical",
                "nodeSelector": { "kubernetes.io/os": "linux" },
                "tolerations": [{ "key": "k", "operator": "Exists", "effect": "NoSchedule" }],
                "metrics": { "service": { "enabled": true, "annotations": { "prometheus.io/scrape": "true" } } },
                "serviceMonitor": { "enabled": true, "additionalLabels": { "release": "prom" } },
                "extraArgs": { "require-store-conditions": true, "aws-client-recheck-seconds": 600 },
                "extraEnv": [{ "name": "AWS_REGION", "value": "us-east-1" }],
                "extraVolumes": [{ "name": "ca", "configMap": { "name": "kube-root-ca.crt" } }],
                "extraVolumeMounts": [{ "name": "ca", "mountPath": "/etc/ca", "readOnly": true }],
                "reloader": { "reloadStrategy": "annotations", "autoReloadAll": true,
                              "reloadOnCreate": true, "reloadOnDelete": true, "ignoreCronJobs": true,
                              "namespaceSelector": "team in (a,b)", "resourceLabelSelector": "reload=yes",
                              "namespacesToIgnore": ["kube-system"], "maxRolloutsPerMinute": 10,
                              "udsPodReload": true, "customAnnotations": { "auto": "example.com/auto" } }
            }),
        ),
    ];
    for (case, values) in &cases {
        let docs = render("lockstep", ns.name(), values);
        apply_all(&admin, ns.name(), &docs, case).await;
        if let Err(e) = dry_run_pod(&admin, ns.name(), &docs).await {
            panic!("{case}: the controller's pod is refused in a restricted namespace: {e}");
        }
    }

    // What each case is for, in the rendered manifests.
    let docs = render("lockstep", ns.name(), &cases[0].1);
    let c = container(&docs);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(
        c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    let pod = &one(&docs, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], true);
    assert!(pod.get("volumes").is_none(), "no volume by default: {pod}");
    assert_eq!(
        one(&docs, "ServiceAccount")["automountServiceAccountToken"],
        false
    );

    let irsa = render("lockstep", ns.name(), &cases[3].1);
    assert_eq!(
        one(&irsa, "ServiceAccount")["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        role_arn
    );
    let resources = render("lockstep", ns.name(), &cases[4].1);
    assert_eq!(
        container(&resources)["resources"]["limits"]["memory"],
        "1Gi"
    );
    let replicas = render("lockstep", ns.name(), &cases[5].1);
    assert_eq!(one(&replicas, "Deployment")["spec"]["replicas"], 2);
    assert_eq!(
        one(&replicas, "PodDisruptionBudget")["spec"]["maxUnavailable"],
        1
    );
    assert_eq!(
        one(&replicas, "Deployment")["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["labelSelector"]
            ["matchLabels"]["app.kubernetes.io/name"],
        "lockstep"
    );
    let everything = render("lockstep", ns.name(), &cases[6].1);
    assert!(of_kind(&everything, "CustomResourceDefinition").is_empty());
    one(&everything, "ServiceMonitor");
    one(&everything, "Service");
    let controller = container(&everything);
    assert!(
        controller["env"]
            .as_array()
            .expect("env")
            .iter()
            .any(|e| e["name"] == "LOCKSTEP_LOG_LEVEL" && e["value"] == "debug"),
        "log.level reaches LOCKSTEP_LOG_LEVEL: {}",
        controller["env"]
    );
    let a = args(&everything);
    for expected in [
        "--log-format=text",
        "--concurrency=2",
        "--disable-cluster-stores",
        "--controller-class=lockstep",
        "--reload-strategy=annotations",
        "--auto-reload-all",
        "--reload-on-create=true",
        "--reload-on-delete=true",
        "--ignored-workload-types=cronjobs",
        "--namespace-selector=team in (a,b)",
        "--resource-label-selector=reload=yes",
        "--namespaces-to-ignore=kube-system",
        "--reload-max-rollouts-per-minute=10",
        "--uds-pod-reload",
        "--auto-annotation=example.com/auto",
        "--require-store-conditions",
        "--aws-client-recheck-seconds=600",
    ] {
        assert!(a.contains(&expected.to_owned()), "{expected} not in {a:?}");
    }
    assert!(
        container(&everything)["image"]
            .as_str()
            .unwrap()
            .ends_with(&format!("@sha256:{}", "a".repeat(64)))
    );
}

#[tokio::test]
async fn host_network_is_accepted_by_the_apiserver_but_refused_by_restricted() {
    let env = test_env();
    let admin = env.admin_client().await;
    let ns = restricted_namespace(&admin, "chart-hostnet").await;
    let docs = render("lockstep", ns.name(), &json!({ "hostNetwork": true }));
    let pod = &one(&docs, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
    apply_all(&admin, ns.name(), &docs, "hostNetwork").await;
    // The check is real: PodSecurity refuses the host network, and only for that.
    match dry_run_pod(&admin, ns.name(), &docs).await {
        Ok(_) => panic!("a hostNetwork pod was admitted in a restricted namespace"),
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 403, "{e:?}");
            assert!(
                e.message.contains("violates PodSecurity") && e.message.contains("hostNetwork"),
                "{}",
                e.message
            );
            assert!(
                !e.message.contains("allowPrivilegeEscalation")
                    && !e.message.contains("runAsNonRoot")
                    && !e.message.contains("seccompProfile")
                    && !e.message.contains("capabilities"),
                "only the host network is refused: {}",
                e.message
            );
        }
        Err(e) => panic!("dry-run pod: {e}"),
    }
}
