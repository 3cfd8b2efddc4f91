//! Which Secrets and ConfigMaps a pod template uses, and which container a reload is
//! attributed to, as Reloader decides it (pure, no I/O).
//!
//! References come from volumes (`secret`, `configMap`, and the sources of `projected`
//! volumes), `env[].valueFrom` (`secretKeyRef`, `configMapKeyRef`) and `envFrom`, in regular and
//! init containers. Not references: `imagePullSecrets`, service-account secrets, ephemeral
//! containers, downward API, and anything in another namespace.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Container, PodSpec, Volume};
use lockstep_api::reloader::ResourceKind;

/// A Secret or ConfigMap by kind and name (in the workload's namespace).
pub type Reference = (ResourceKind, String);

fn volume_refs(v: &Volume) -> Vec<Reference> {
    let mut out = Vec::new();
    if let Some(name) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
        out.push((ResourceKind::Secret, name));
    }
    if let Some(cm) = &v.config_map {
        out.push((ResourceKind::ConfigMap, cm.name.clone()));
    }
    for source in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
        if let Some(s) = &source.secret {
            out.push((ResourceKind::Secret, s.name.clone()));
        }
        if let Some(cm) = &source.config_map {
            out.push((ResourceKind::ConfigMap, cm.name.clone()));
        }
    }
    out
}

fn env_refs(c: &Container) -> Vec<Reference> {
    let mut out = Vec::new();
    for from in c.env.iter().flatten().filter_map(|e| e.value_from.as_ref()) {
        if let Some(s) = &from.secret_key_ref {
            out.push((ResourceKind::Secret, s.name.clone()));
        }
        if let Some(cm) = &from.config_map_key_ref {
            out.push((ResourceKind::ConfigMap, cm.name.clone()));
        }
    }
    for from in c.env_from.iter().flatten() {
        if let Some(s) = &from.secret_ref {
            out.push((ResourceKind::Secret, s.name.clone()));
        }
        if let Some(cm) = &from.config_map_ref {
            out.push((ResourceKind::ConfigMap, cm.name.clone()));
        }
    }
    out
}

/// Every Secret and ConfigMap the pod spec references (volumes, projected volumes, env,
/// envFrom; regular and init containers).
pub fn references(spec: &PodSpec) -> BTreeSet<Reference> {
    let mut out = BTreeSet::new();
    for v in spec.volumes.iter().flatten() {
        out.extend(volume_refs(v));
    }
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        out.extend(env_refs(c));
    }
    out
}

/// The name of the volume that holds the resource (plain or projected), if any.
fn volume_name(spec: &PodSpec, kind: ResourceKind, name: &str) -> Option<String> {
    spec.volumes
        .iter()
        .flatten()
        .find(|v| volume_refs(v).iter().any(|(k, n)| *k == kind && n == name))
        .map(|v| v.name.clone())
}

fn mounts(c: &Container, volume: &str) -> bool {
    c.volume_mounts.iter().flatten().any(|m| m.name == volume)
}

fn env_uses(c: &Container, kind: ResourceKind, name: &str) -> bool {
    env_refs(c).iter().any(|(k, n)| *k == kind && n == name)
}

/// The container a reload for the resource is attributed to (its env var goes there, its name
/// into `containerRefs`), as Reloader picks it:
///
/// 1. the first regular container that mounts the volume holding the resource; if only an init
///    container mounts it, the first regular container;
/// 2. else the first regular container that uses it in env/envFrom; if only an init container
///    does, the first regular container;
/// 3. else, for a named reload (`auto == false`), the first regular container; for an auto
///    reload, none (nothing is done).
pub fn container_using(
    spec: &PodSpec,
    kind: ResourceKind,
    name: &str,
    auto: bool,
) -> Option<String> {
    let first = spec.containers.first().map(|c| c.name.clone());
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    if let Some(volume) = volume_name(spec, kind, name) {
        if let Some(c) = spec.containers.iter().find(|c| mounts(c, &volume)) {
            return Some(c.name.clone());
        }
        if inits.iter().any(|c| mounts(c, &volume)) {
            return first;
        }
    }
    if let Some(c) = spec.containers.iter().find(|c| env_uses(c, kind, name)) {
        return Some(c.name.clone());
    }
    if inits.iter().any(|c| env_uses(c, kind, name)) {
        return first;
    }
    if auto { None } else { first }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> PodSpec {
        serde_json::from_value(json).unwrap()
    }

    fn full() -> PodSpec {
        spec(serde_json::json!({
            "volumes": [
                {"name": "sv", "secret": {"secretName": "s-vol"}},
                {"name": "cv", "configMap": {"name": "c-vol"}},
                {"name": "pv", "projected": {"sources": [
                    {"secret": {"name": "s-proj"}}, {"configMap": {"name": "c-proj"}}]}},
                {"name": "iv", "secret": {"secretName": "s-init-vol"}},
                {"name": "unmounted", "secret": {"secretName": "s-unmounted"}}
            ],
            "initContainers": [{
                "name": "init", "image": "x",
                "volumeMounts": [{"name": "iv", "mountPath": "/i"}],
                "envFrom": [{"configMapRef": {"name": "c-init-envfrom"}}]
            }],
            "containers": [
                {"name": "first", "image": "x"},
                {"name": "app", "image": "x",
                 "volumeMounts": [{"name": "sv", "mountPath": "/s"}, {"name": "pv", "mountPath": "/p"},
                                  {"name": "cv", "mountPath": "/c"}],
                 "env": [
                    {"name": "A", "valueFrom": {"secretKeyRef": {"name": "s-env", "key": "k"}}},
                    {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "c-env", "key": "k"}}},
                    {"name": "C", "value": "plain"}],
                 "envFrom": [{"secretRef": {"name": "s-envfrom"}}]}
            ],
            "imagePullSecrets": [{"name": "pull"}]
        }))
    }

    #[test]
    fn finds_every_kind_of_reference() {
        let refs = references(&full());
        let s = |n: &str| (ResourceKind::Secret, n.to_owned());
        let c = |n: &str| (ResourceKind::ConfigMap, n.to_owned());
        let expected: BTreeSet<_> = [
            s("s-vol"),
            c("c-vol"),
            s("s-proj"),
            c("c-proj"),
            s("s-init-vol"),
            s("s-unmounted"),
            c("c-init-envfrom"),
            s("s-env"),
            c("c-env"),
            s("s-envfrom"),
        ]
        .into_iter()
        .collect();
        assert_eq!(refs, expected);
        assert!(
            !refs.contains(&s("pull")),
            "imagePullSecrets are not references"
        );
    }

    #[test]
    fn picks_the_container_as_reloader_does() {
        let spec = full();
        let pick = |k, n: &str, auto| container_using(&spec, k, n, auto);
        assert_eq!(
            pick(ResourceKind::Secret, "s-vol", true).as_deref(),
            Some("app")
        );
        assert_eq!(
            pick(ResourceKind::Secret, "s-proj", true).as_deref(),
            Some("app")
        );
        assert_eq!(
            pick(ResourceKind::ConfigMap, "c-env", true).as_deref(),
            Some("app")
        );
        assert_eq!(
            pick(ResourceKind::Secret, "s-envfrom", true).as_deref(),
            Some("app")
        );
        // Used only by an init container: the first regular container.
        assert_eq!(
            pick(ResourceKind::Secret, "s-init-vol", true).as_deref(),
            Some("first")
        );
        assert_eq!(
            pick(ResourceKind::ConfigMap, "c-init-envfrom", true).as_deref(),
            Some("first")
        );
        // Declared but unmounted, not in env: auto finds nothing, named takes the first.
        assert_eq!(pick(ResourceKind::Secret, "s-unmounted", true), None);
        assert_eq!(
            pick(ResourceKind::Secret, "s-unmounted", false).as_deref(),
            Some("first")
        );
        assert_eq!(pick(ResourceKind::Secret, "other", true), None);
        assert_eq!(
            pick(ResourceKind::Secret, "other", false).as_deref(),
            Some("first")
        );
        // Kinds are not confused: a ConfigMap named like a Secret reference is not used.
        assert_eq!(pick(ResourceKind::ConfigMap, "s-vol", true), None);
    }
}
