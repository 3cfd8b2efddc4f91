//! From the hashes of the Secrets and ConfigMaps a workload uses to the patch that rolls it
//! (pure, no I/O): the baseline kept in the workload's metadata, Reloader's values recognised
//! as a baseline, and the two strategies.
//!
//! For each resource, the baseline is Lockstep's recorded hash ([`LOCKSTEP_HASHES`]), else the
//! value Reloader left in the workload (its `STAKATER_<NAME>_<TYPE>` env var, or its
//! `last-reloaded-from` annotation when that names this resource), else the current hash (first
//! sight: recorded, nothing rolls). Only a baseline that is the hash of other content rolls the
//! workload (see [`compare`]), so the same content never rolls twice, a restart of Lockstep
//! rolls nothing, and a value made under an unknown key is re-recorded without a rollout. What
//! Lockstep writes is its keyed hash, never Reloader's SHA-1.
//! Everything that changed is written in one patch: one rollout for a Secret and a ConfigMap
//! changed together.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodSpec;
use lockstep_api::reload_hash::{Comparison, ContentHashes, HashKey, compare};
use lockstep_api::reloader::{
    self, LAST_RELOADED_FROM, LOCKSTEP_HASHES, ReloadSource, ResourceKind,
};
use serde_json::{Value, json};

use super::decide::Annotations;

/// How a reload changes the pod template.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    /// Set `STAKATER_<NAME>_<TYPE>=<hash>` on one container (Reloader's default).
    #[default]
    EnvVars,
    /// Set the `reloader.stakater.com/last-reloaded-from` pod-template annotation.
    Annotations,
}

/// One resource the workload reloads on, as seen now.
#[derive(Clone, Debug)]
pub struct Observed {
    /// Its kind.
    pub kind: ResourceKind,
    /// Its name.
    pub name: String,
    /// The hashes of its data now; `None` when it does not exist (deleted, or not created yet).
    pub hashes: Option<ContentHashes>,
    /// The container a reload is attributed to.
    pub container: String,
    /// Whether only UDS Core's contract (not Reloader's annotations) asks for this reload: its
    /// rollout is then written as UDS Core writes it, `uds.dev/restartedAt`.
    pub uds_only: bool,
}

/// Reloader's options for resources that appear or disappear.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Events {
    /// `--reload-on-create`: a resource created after the workload was seen without it rolls it.
    pub on_create: bool,
    /// `--reload-on-delete`: a resource deleted after the workload was seen with it rolls it.
    pub on_delete: bool,
}

/// What Lockstep records for a referenced resource that does not exist, so that its creation
/// can be told apart from a first sight.
pub const ABSENT: &str = "absent";

/// What to write to a workload.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// The strategic merge patch, or `None` when nothing changes.
    pub patch: Option<Value>,
    /// The resources whose change rolls the workload (empty: the patch, if any, only records
    /// baselines in the metadata and rolls nothing).
    pub rolled: Vec<(ResourceKind, String, String)>,
}

/// The state of the workload the plan starts from.
pub struct Workload<'a> {
    /// Its namespace.
    pub namespace: &'a str,
    /// Its metadata annotations.
    pub annotations: Option<&'a Annotations>,
    /// Its pod template's annotations.
    pub pod_annotations: Option<&'a Annotations>,
    /// Its pod spec.
    pub spec: &'a PodSpec,
}

fn key(kind: ResourceKind, name: &str) -> String {
    format!("{}/{name}", kind.key_prefix())
}

/// Lockstep's recorded baselines of a workload (an unreadable value counts as none).
pub fn recorded(annotations: Option<&Annotations>) -> BTreeMap<String, String> {
    annotations
        .and_then(|a| a.get(LOCKSTEP_HASHES))
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default()
}

/// The hash Reloader left in the workload for this resource, if any.
pub fn reloader_value(workload: &Workload<'_>, kind: ResourceKind, name: &str) -> Option<String> {
    let env = reloader::env_var_name(name, kind);
    let from_env = workload
        .spec
        .containers
        .iter()
        .flat_map(|c| c.env.iter().flatten())
        .find(|e| e.name == env)
        .and_then(|e| e.value.clone());
    from_env.or_else(|| {
        let source: ReloadSource =
            serde_json::from_str(workload.pod_annotations?.get(LAST_RELOADED_FROM)?).ok()?;
        (source.kind == kind.reloader_type()
            && source.name == name
            && source.namespace == workload.namespace)
            .then_some(source.hash)
    })
}

/// The patch for `observed` (every resource the workload reloads on, with its current hashes
/// under `key`), written with `strategy`; `now` is the unix time for `observedAt`.
pub fn plan(
    workload: &Workload<'_>,
    observed: &[Observed],
    hash_key: &HashKey,
    strategy: Strategy,
    events: Events,
    now: i64,
) -> Plan {
    let before = recorded(workload.annotations);
    let mut after = BTreeMap::new();
    let mut rolled = Vec::new();
    for o in observed {
        let k = key(o.kind, &o.name);
        let baseline = before
            .get(&k)
            .cloned()
            .or_else(|| reloader_value(workload, o.kind, &o.name));
        let (roll, record) = match (&o.hashes, baseline) {
            (Some(now), None) => (false, now.keyed.clone()),
            (Some(now), Some(b)) if b == ABSENT => (events.on_create, now.keyed.clone()),
            (Some(now), Some(b)) => (
                compare(&b, now, hash_key) == Comparison::Changed,
                now.keyed.clone(),
            ),
            (None, None) => (false, ABSENT.to_owned()),
            (None, Some(b)) if b == ABSENT => (false, b),
            // Deleted: without --reload-on-delete the pods keep what they had, and so does the
            // baseline, so re-creating the same content rolls nothing.
            (None, Some(_)) if events.on_delete => (true, ABSENT.to_owned()),
            (None, Some(b)) => (false, b),
        };
        if roll {
            rolled.push((o.kind, o.name.clone(), o.container.clone()));
        }
        after.insert(k, record);
    }
    let hashes_text = serde_json::to_string(&after).expect("a map of strings serializes");
    let current_text = workload.annotations.and_then(|a| a.get(LOCKSTEP_HASHES));
    if rolled.is_empty() && current_text == Some(&hashes_text) {
        return Plan::default();
    }
    if rolled.is_empty() && after.is_empty() && current_text.is_none() {
        return Plan::default();
    }
    let mut patch = json!({"metadata": {"annotations": {LOCKSTEP_HASHES: hashes_text}}});
    if !rolled.is_empty() {
        patch["spec"] =
            json!({"template": rollout_patch(workload, observed, &rolled, strategy, now)});
    }
    Plan {
        patch: Some(patch),
        rolled: rolled
            .into_iter()
            .map(|(k, n, _)| (k, n.clone(), after[&key(k, &n)].clone()))
            .collect(),
    }
}

/// The pod-template change for `rolled`: Reloader's strategy for what Reloader's annotations
/// asked for, `uds.dev/restartedAt` for what only UDS Core's contract asked for; both in one
/// patch, so one change is one rollout whichever contracts asked for it.
fn rollout_patch(
    workload: &Workload<'_>,
    observed: &[Observed],
    rolled: &[(ResourceKind, String, String)],
    strategy: Strategy,
    now: i64,
) -> Value {
    let uds_only = |(kind, name, _): &(ResourceKind, String, String)| {
        observed
            .iter()
            .any(|o| o.kind == *kind && o.name == *name && o.uds_only)
    };
    let (by_uds, by_reloader): (Vec<_>, Vec<_>) = rolled.iter().cloned().partition(uds_only);
    let mut patch = if by_reloader.is_empty() {
        json!({})
    } else {
        template_patch(workload, observed, &by_reloader, strategy, now)
    };
    if !by_uds.is_empty() {
        patch["metadata"]["annotations"][super::uds::RESTARTED_AT] =
            json!(super::kinds::rfc3339(now));
    }
    patch
}

fn template_patch(
    workload: &Workload<'_>,
    observed: &[Observed],
    rolled: &[(ResourceKind, String, String)],
    strategy: Strategy,
    now: i64,
) -> Value {
    // The value written for a resource; `None` for a deleted one.
    let hash_of = |kind: ResourceKind, name: &str| {
        observed
            .iter()
            .find(|o| o.kind == kind && o.name == name)
            .and_then(|o| o.hashes.as_ref())
            .map(|h| h.keyed.clone())
    };
    match strategy {
        Strategy::EnvVars => {
            // Container name -> env vars to set on it, in container order.
            let mut per_container: BTreeMap<String, Vec<Value>> = BTreeMap::new();
            for (kind, name, chosen) in rolled {
                let env = reloader::env_var_name(name, *kind);
                // An existing variable is updated where it is; a new one goes on the chosen
                // container.
                let holder = workload
                    .spec
                    .containers
                    .iter()
                    .find(|c| c.env.iter().flatten().any(|e| e.name == env))
                    .map(|c| c.name.clone())
                    .unwrap_or_else(|| chosen.clone());
                let exists = workload
                    .spec
                    .containers
                    .iter()
                    .any(|c| c.env.iter().flatten().any(|e| e.name == env));
                let entry = match hash_of(*kind, name) {
                    Some(hash) => json!({"name": env, "value": hash}),
                    // Deleted: Reloader removes its variable; where there is none, the marker
                    // is set so that the pods still roll.
                    None if exists => json!({"name": env, "$patch": "delete"}),
                    None => json!({"name": env, "value": reloader::deleted_hash()}),
                };
                per_container.entry(holder).or_default().push(entry);
            }
            let containers: Vec<Value> = per_container
                .into_iter()
                .map(|(name, env)| json!({"name": name, "env": env}))
                .collect();
            json!({"spec": {"containers": containers}})
        }
        Strategy::Annotations => {
            // Reloader records only the last trigger.
            let (kind, name, container) = rolled.last().expect("called with a change");
            let source = ReloadSource {
                kind: kind.reloader_type().to_owned(),
                name: name.clone(),
                namespace: workload.namespace.to_owned(),
                hash: hash_of(*kind, name).unwrap_or_else(reloader::deleted_hash),
                container_refs: Some(vec![container.clone()]),
                observed_at: now,
            };
            let text = serde_json::to_string(&source).expect("a ReloadSource serializes");
            json!({"metadata": {"annotations": {LAST_RELOADED_FROM: text}}})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> PodSpec {
        serde_json::from_value(json!({
            "containers": [
                {"name": "app", "image": "x"},
                {"name": "side", "image": "x", "env": [{"name": "STAKATER_DB_SECRET", "value": h("old").sha1}]}
            ]
        }))
        .unwrap()
    }

    fn key() -> HashKey {
        HashKey::new(&[5; 32]).unwrap()
    }

    /// The hashes of a resource whose one value is `v`.
    fn h(v: &str) -> ContentHashes {
        let data = [(
            "k".to_owned(),
            k8s_openapi::ByteString(v.as_bytes().to_vec()),
        )]
        .into();
        lockstep_api::reload_hash::secret_hashes(&data, &key())
    }

    fn keyed(v: &str) -> String {
        h(v).keyed
    }

    fn recorded_json(pairs: &[(&str, &str)]) -> String {
        let m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), keyed(v)))
            .collect();
        serde_json::to_string(&m).unwrap()
    }

    fn obs(kind: ResourceKind, name: &str, v: &str) -> Observed {
        Observed {
            kind,
            name: name.into(),
            hashes: Some(h(v)),
            container: "app".into(),
            uds_only: false,
        }
    }

    fn annotations(pairs: &[(&str, &str)]) -> Annotations {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn first_sight_records_without_rolling() {
        let spec = spec();
        let w = Workload {
            namespace: "ns",
            annotations: None,
            pod_annotations: None,
            spec: &spec,
        };
        let p = plan(
            &w,
            &[obs(ResourceKind::Secret, "cfg", "h1")],
            &key(),
            Strategy::EnvVars,
            Events::default(),
            0,
        );
        assert!(p.rolled.is_empty());
        assert_eq!(
            p.patch,
            Some(
                json!({"metadata": {"annotations": {LOCKSTEP_HASHES: recorded_json(&[("secret/cfg", "h1")])}}})
            )
        );
    }

    #[test]
    fn same_hash_writes_nothing_and_a_new_one_rolls_once() {
        let spec = spec();
        let text = recorded_json(&[("secret/cfg", "h1")]);
        let a = annotations(&[(LOCKSTEP_HASHES, &text)]);
        let w = Workload {
            namespace: "ns",
            annotations: Some(&a),
            pod_annotations: None,
            spec: &spec,
        };
        assert_eq!(
            plan(
                &w,
                &[obs(ResourceKind::Secret, "cfg", "h1")],
                &key(),
                Strategy::EnvVars,
                Events::default(),
                0
            ),
            Plan::default()
        );
        let p = plan(
            &w,
            &[obs(ResourceKind::Secret, "cfg", "h2")],
            &key(),
            Strategy::EnvVars,
            Events::default(),
            0,
        );
        assert_eq!(
            p.rolled,
            vec![(ResourceKind::Secret, "cfg".into(), keyed("h2"))]
        );
        assert_eq!(
            p.patch,
            Some(json!({
                "metadata": {"annotations": {LOCKSTEP_HASHES: recorded_json(&[("secret/cfg", "h2")])}},
                "spec": {"template": {"spec": {"containers": [
                    {"name": "app", "env": [{"name": "STAKATER_CFG_SECRET", "value": keyed("h2")}]}
                ]}}}
            }))
        );
    }

    #[test]
    fn reloader_env_var_is_the_baseline_and_is_updated_where_it_is() {
        let spec = spec();
        let w = Workload {
            namespace: "ns",
            annotations: None,
            pod_annotations: None,
            spec: &spec,
        };
        // Same hash as Reloader's: recorded, no roll.
        let p = plan(
            &w,
            &[obs(ResourceKind::Secret, "db", "old")],
            &key(),
            Strategy::EnvVars,
            Events::default(),
            0,
        );
        assert!(p.rolled.is_empty());
        // Different: rolls, and the existing variable on "side" is updated.
        let p = plan(
            &w,
            &[obs(ResourceKind::Secret, "db", "new")],
            &key(),
            Strategy::EnvVars,
            Events::default(),
            0,
        );
        assert_eq!(p.rolled.len(), 1);
        assert_eq!(
            p.patch.unwrap()["spec"]["template"]["spec"]["containers"],
            json!([{"name": "side", "env": [{"name": "STAKATER_DB_SECRET", "value": keyed("new")}]}])
        );
    }

    #[test]
    fn reloader_annotation_is_the_baseline_for_the_resource_it_names() {
        let spec = spec();
        let from = format!(
            r#"{{"type":"CONFIGMAP","name":"cm","namespace":"ns","hash":"{}","containerRefs":["app"],"observedAt":1}}"#,
            h("hc").sha1
        );
        let pod = annotations(&[(LAST_RELOADED_FROM, &from)]);
        let w = Workload {
            namespace: "ns",
            annotations: None,
            pod_annotations: Some(&pod),
            spec: &spec,
        };
        assert!(
            plan(
                &w,
                &[obs(ResourceKind::ConfigMap, "cm", "hc")],
                &key(),
                Strategy::Annotations,
                Events::default(),
                5
            )
            .rolled
            .is_empty()
        );
        // Another resource is not baselined by it: first sight.
        assert!(
            plan(
                &w,
                &[obs(ResourceKind::Secret, "cm", "zz")],
                &key(),
                Strategy::Annotations,
                Events::default(),
                5
            )
            .rolled
            .is_empty()
        );
        let p = plan(
            &w,
            &[obs(ResourceKind::ConfigMap, "cm", "h2")],
            &key(),
            Strategy::Annotations,
            Events::default(),
            5,
        );
        let text = p.patch.unwrap()["spec"]["template"]["metadata"]["annotations"]
            [LAST_RELOADED_FROM]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            text,
            format!(
                r#"{{"type":"CONFIGMAP","name":"cm","namespace":"ns","hash":"{}","containerRefs":["app"],"observedAt":5}}"#,
                keyed("h2")
            )
        );
    }

    #[test]
    fn two_changes_make_one_patch() {
        let spec = spec();
        let text = recorded_json(&[("configmap/c", "1"), ("secret/s", "1")]);
        let a = annotations(&[(LOCKSTEP_HASHES, &text)]);
        let w = Workload {
            namespace: "ns",
            annotations: Some(&a),
            pod_annotations: None,
            spec: &spec,
        };
        let p = plan(
            &w,
            &[
                obs(ResourceKind::Secret, "s", "2"),
                obs(ResourceKind::ConfigMap, "c", "2"),
            ],
            &key(),
            Strategy::EnvVars,
            Events::default(),
            0,
        );
        assert_eq!(p.rolled.len(), 2);
        let env = &p.patch.unwrap()["spec"]["template"]["spec"]["containers"][0]["env"];
        assert_eq!(env.as_array().unwrap().len(), 2);
    }

    #[test]
    fn a_value_under_an_unknown_key_is_re_recorded_without_a_rollout() {
        let spec = spec();
        let other = HashKey::new(&[6; 32]).unwrap();
        let data = [("k".to_owned(), k8s_openapi::ByteString(b"old".to_vec()))].into();
        let foreign = lockstep_api::reload_hash::secret_hashes(&data, &other).keyed;
        let text = serde_json::to_string(&BTreeMap::from([("secret/s", foreign)])).unwrap();
        let a = annotations(&[(LOCKSTEP_HASHES, &text)]);
        let w = Workload {
            namespace: "ns",
            annotations: Some(&a),
            pod_annotations: None,
            spec: &spec,
        };
        // The content changed too, but the old value cannot say so: recorded, nothing rolls.
        let p = plan(
            &w,
            &[obs(ResourceKind::Secret, "s", "new")],
            &key(),
            Strategy::EnvVars,
            Events::default(),
            0,
        );
        assert!(p.rolled.is_empty());
        assert_eq!(
            p.patch,
            Some(
                json!({"metadata": {"annotations": {LOCKSTEP_HASHES: recorded_json(&[("secret/s", "new")])}}})
            )
        );
    }

    #[test]
    fn a_reloader_sha1_is_replaced_by_the_keyed_hash_at_the_next_change() {
        let spec = spec();
        let w = Workload {
            namespace: "ns",
            annotations: None,
            pod_annotations: None,
            spec: &spec,
        };
        let p = plan(
            &w,
            &[obs(ResourceKind::Secret, "db", "new")],
            &key(),
            Strategy::EnvVars,
            Events::default(),
            0,
        );
        let text = serde_json::to_string(&p.patch).unwrap();
        assert!(text.contains(&keyed("new")));
        assert!(
            !text.contains(&h("new").sha1),
            "no SHA-1 of the data is written"
        );
    }

    fn absent(kind: ResourceKind, name: &str) -> Observed {
        Observed {
            kind,
            name: name.into(),
            hashes: None,
            container: "app".into(),
            uds_only: false,
        }
    }

    fn on(create: bool, delete: bool) -> Events {
        Events {
            on_create: create,
            on_delete: delete,
        }
    }

    #[test]
    fn creation_rolls_only_with_reload_on_create() {
        let spec = spec();
        let w0 = Workload {
            namespace: "ns",
            annotations: None,
            pod_annotations: None,
            spec: &spec,
        };
        // Missing at first sight: recorded as absent, nothing rolls.
        let p = plan(
            &w0,
            &[absent(ResourceKind::Secret, "late")],
            &key(),
            Strategy::EnvVars,
            on(true, true),
            0,
        );
        assert!(p.rolled.is_empty());
        let text = p.patch.unwrap()["metadata"]["annotations"][LOCKSTEP_HASHES]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(text, r#"{"secret/late":"absent"}"#);
        let a = annotations(&[(LOCKSTEP_HASHES, &text)]);
        let w = Workload {
            namespace: "ns",
            annotations: Some(&a),
            pod_annotations: None,
            spec: &spec,
        };
        let created = [obs(ResourceKind::Secret, "late", "v")];
        assert!(
            plan(&w, &created, &key(), Strategy::EnvVars, on(false, true), 0)
                .rolled
                .is_empty()
        );
        let p = plan(&w, &created, &key(), Strategy::EnvVars, on(true, false), 0);
        assert_eq!(p.rolled.len(), 1);
    }

    #[test]
    fn deletion_rolls_only_with_reload_on_delete_and_keeps_the_baseline_otherwise() {
        let spec = spec();
        let text = recorded_json(&[("secret/db", "old")]);
        let a = annotations(&[(LOCKSTEP_HASHES, &text)]);
        let w = Workload {
            namespace: "ns",
            annotations: Some(&a),
            pod_annotations: None,
            spec: &spec,
        };
        let gone = [absent(ResourceKind::Secret, "db")];
        // Without the flag: nothing is written, so re-creating the same content rolls nothing.
        assert_eq!(
            plan(&w, &gone, &key(), Strategy::EnvVars, on(false, false), 0),
            Plan::default()
        );
        // With it: the pods roll; Reloader's variable (on "side") is removed.
        let p = plan(&w, &gone, &key(), Strategy::EnvVars, on(false, true), 0);
        assert_eq!(p.rolled.len(), 1);
        let patch = p.patch.unwrap();
        assert_eq!(
            patch["spec"]["template"]["spec"]["containers"],
            json!([{"name": "side", "env": [{"name": "STAKATER_DB_SECRET", "$patch": "delete"}]}])
        );
        assert_eq!(
            patch["metadata"]["annotations"][LOCKSTEP_HASHES],
            json!(r#"{"secret/db":"absent"}"#)
        );
        // The annotations strategy writes Reloader's delete marker hash.
        let p = plan(&w, &gone, &key(), Strategy::Annotations, on(false, true), 9);
        let from = p.patch.unwrap()["spec"]["template"]["metadata"]["annotations"]
            [LAST_RELOADED_FROM]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(from.contains(&reloader::deleted_hash()));
    }

    #[test]
    fn uds_and_reloader_changes_make_one_patch() {
        let spec = spec();
        let text = recorded_json(&[("configmap/c", "1"), ("secret/s", "1")]);
        let a = annotations(&[(LOCKSTEP_HASHES, &text)]);
        let w = Workload {
            namespace: "ns",
            annotations: Some(&a),
            pod_annotations: None,
            spec: &spec,
        };
        let mut by_uds = obs(ResourceKind::ConfigMap, "c", "2");
        by_uds.uds_only = true;
        // Only UDS asked: UDS's annotation, no env var.
        let p = plan(
            &w,
            &[by_uds.clone()],
            &key(),
            Strategy::EnvVars,
            Events::default(),
            0,
        );
        let t = &p.patch.unwrap()["spec"]["template"];
        assert_eq!(
            t["metadata"]["annotations"][super::super::uds::RESTARTED_AT],
            json!("1970-01-01T00:00:00Z")
        );
        assert!(t.get("spec").is_none());
        // Both: one patch with both.
        let p = plan(
            &w,
            &[obs(ResourceKind::Secret, "s", "2"), by_uds],
            &key(),
            Strategy::EnvVars,
            Events::default(),
            0,
        );
        assert_eq!(p.rolled.len(), 2);
        let t = &p.patch.unwrap()["spec"]["template"];
        assert!(t["metadata"]["annotations"][super::super::uds::RESTARTED_AT].is_string());
        assert_eq!(
            t["spec"]["containers"][0]["env"][0]["name"],
            json!("STAKATER_S_SECRET")
        );
    }
}
