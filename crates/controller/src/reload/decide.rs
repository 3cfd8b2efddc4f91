//! Whether a change of a Secret or ConfigMap reloads a workload, with Reloader's annotations,
//! precedence and fallback (pure, no I/O).
//!
//! Annotations are read from the workload's metadata; only when none of the typed `reload`
//! list, `auto`, the typed auto key and `search` is there are those four read from the pod
//! template instead. Exclude lists are read from the workload's metadata only. Then, in order:
//! an ignored workload kind, `reloader.stakater.com/ignore: "true"` on the resource, the
//! resource in the exclude list → no; a match in the `reload` list (anchored regexes) → yes,
//! named (no reference needed); `search: "true"` with `match: "true"` on the resource → yes,
//! auto; `auto` or the typed auto true (or both unset with auto-reload-all) → yes, auto.

use std::collections::BTreeMap;

use lockstep_api::reloader::{self, ResourceKind};

use super::names::Names;
use regex::Regex;

/// Annotations of an object.
pub type Annotations = BTreeMap<String, String>;

/// The outcome for one workload and one changed resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Not reloaded.
    No,
    /// Reloaded if a container references the resource.
    Auto,
    /// Reloaded even without a reference (the first container carries it).
    Named,
}

/// What the workload and the resource say, for [`decide`].
pub struct Input<'a> {
    /// The workload kind (`Deployment`, `StatefulSet`, `DaemonSet`, `CronJob`, `Job` ...).
    pub workload_kind: &'a str,
    /// The workload's metadata annotations.
    pub workload: Option<&'a Annotations>,
    /// Its pod template's annotations.
    pub pod_template: Option<&'a Annotations>,
    /// The changed resource's kind.
    pub kind: ResourceKind,
    /// Its name.
    pub name: &'a str,
    /// Its annotations.
    pub resource: Option<&'a Annotations>,
}

/// Options of the decision (Reloader's flags).
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `--auto-reload-all`: workloads without `auto`/typed auto are treated as auto.
    pub auto_reload_all: bool,
    /// `--ignored-workload-types`: workload kinds never reloaded (`Job`, `CronJob`).
    pub ignored_workload_kinds: Vec<String>,
    /// The annotation names (Reloader's rename flags).
    pub names: Names,
}

fn get<'a>(a: Option<&'a Annotations>, key: &str) -> Option<&'a str> {
    a.and_then(|a| a.get(key)).map(String::as_str)
}

/// Whether the workload opts in to reloads of this resource kind at all (any of the keys the
/// decision reads, in either place), so workloads that never reload can be skipped early.
pub fn opted_in(
    workload: Option<&Annotations>,
    pod_template: Option<&Annotations>,
    kind: ResourceKind,
    options: &Options,
) -> bool {
    if options.auto_reload_all {
        return true;
    }
    let names = &options.names;
    [workload, pod_template].into_iter().any(|a| {
        [
            names.auto.as_str(),
            names.auto_of(kind),
            names.reload_of(kind),
            names.search.as_str(),
        ]
        .iter()
        .any(|k| get(a, k).is_some())
    })
}

/// The reload lists that apply to the workload (after the metadata → pod-template fallback),
/// for the named mode: whether any entry could match a resource the workload does not
/// reference.
pub fn reload_list<'a>(
    workload: Option<&'a Annotations>,
    pod_template: Option<&'a Annotations>,
    kind: ResourceKind,
    names: &Names,
) -> Option<&'a str> {
    source(workload, pod_template, kind, names).and_then(|a| get(Some(a), names.reload_of(kind)))
}

/// Where the four opt-in keys are read: the workload's metadata if it has any of them, else the
/// pod template.
fn source<'a>(
    workload: Option<&'a Annotations>,
    pod_template: Option<&'a Annotations>,
    kind: ResourceKind,
    names: &Names,
) -> Option<&'a Annotations> {
    let on_workload = [
        names.reload_of(kind),
        names.auto.as_str(),
        names.auto_of(kind),
        names.search.as_str(),
    ]
    .iter()
    .any(|k| get(workload, k).is_some());
    if on_workload { workload } else { pod_template }
}

/// Whether `name` matches one entry of a comma list of regexes, each trimmed and anchored at
/// both ends. Invalid entries are skipped (and returned, for a log line).
pub fn matches_list(list: &str, name: &str) -> (bool, Vec<String>) {
    let mut invalid = Vec::new();
    for entry in list.split(',').map(str::trim) {
        match Regex::new(&format!("^(?:{entry})$")) {
            Ok(re) if re.is_match(name) => return (true, invalid),
            Ok(_) => {}
            Err(_) => invalid.push(entry.to_owned()),
        }
    }
    (false, invalid)
}

/// Reloader's decision for one workload and one changed resource.
pub fn decide(input: &Input<'_>, options: &Options) -> Decision {
    if options
        .ignored_workload_kinds
        .iter()
        .any(|k| k == input.workload_kind)
    {
        return Decision::No;
    }
    let names = &options.names;
    if get(input.resource, &names.ignore) == Some("true") {
        return Decision::No;
    }
    if let Some(excluded) = get(input.workload, names.exclude_of(input.kind))
        && excluded.split(',').any(|e| e.trim() == input.name)
    {
        return Decision::No;
    }
    let annotations = source(input.workload, input.pod_template, input.kind, names);
    let value = |k: &str| get(annotations, k).unwrap_or_default();
    if matches_list(value(names.reload_of(input.kind)), input.name).0 {
        return Decision::Named;
    }
    if value(&names.search) == "true" && get(input.resource, &names.matches) == Some("true") {
        return Decision::Auto;
    }
    let auto = value(&names.auto);
    let typed = value(names.auto_of(input.kind));
    if reloader::parse_bool(auto)
        || reloader::parse_bool(typed)
        || (auto.is_empty() && typed.is_empty() && options.auto_reload_all)
    {
        return Decision::Auto;
    }
    Decision::No
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(pairs: &[(&str, &str)]) -> Annotations {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn run(
        workload: &Annotations,
        pod: &Annotations,
        kind: ResourceKind,
        name: &str,
        resource: &Annotations,
        options: &Options,
    ) -> Decision {
        decide(
            &Input {
                workload_kind: "Deployment",
                workload: Some(workload),
                pod_template: Some(pod),
                kind,
                name,
                resource: Some(resource),
            },
            options,
        )
    }

    const S: ResourceKind = ResourceKind::Secret;
    const C: ResourceKind = ResourceKind::ConfigMap;

    #[test]
    fn auto_and_typed_auto() {
        let none = a(&[]);
        let o = Options::default();
        assert_eq!(
            run(&a(&[(reloader::AUTO, "true")]), &none, S, "x", &none, &o),
            Decision::Auto
        );
        assert_eq!(
            run(&a(&[(reloader::AUTO, "1")]), &none, C, "x", &none, &o),
            Decision::Auto
        );
        assert_eq!(
            run(&a(&[(reloader::AUTO, "false")]), &none, S, "x", &none, &o),
            Decision::No
        );
        assert_eq!(
            run(
                &a(&[(reloader::SECRET_AUTO, "true")]),
                &none,
                S,
                "x",
                &none,
                &o
            ),
            Decision::Auto
        );
        // configmap auto ignores Secrets, secret auto ignores ConfigMaps.
        assert_eq!(
            run(
                &a(&[(reloader::CONFIGMAP_AUTO, "true")]),
                &none,
                S,
                "x",
                &none,
                &o
            ),
            Decision::No
        );
        assert_eq!(
            run(
                &a(&[(reloader::SECRET_AUTO, "true")]),
                &none,
                C,
                "x",
                &none,
                &o
            ),
            Decision::No
        );
        assert_eq!(run(&none, &none, S, "x", &none, &o), Decision::No);
    }

    #[test]
    fn auto_reload_all_respects_explicit_false() {
        let none = a(&[]);
        let o = Options {
            auto_reload_all: true,
            ..Options::default()
        };
        assert_eq!(run(&none, &none, S, "x", &none, &o), Decision::Auto);
        assert_eq!(
            run(&a(&[(reloader::AUTO, "false")]), &none, S, "x", &none, &o),
            Decision::No
        );
    }

    #[test]
    fn named_lists_are_anchored_regexes() {
        let none = a(&[]);
        let o = Options::default();
        let w = a(&[(reloader::SECRET_RELOAD, "db-.*, api ,[bad")]);
        assert_eq!(run(&w, &none, S, "db-main", &none, &o), Decision::Named);
        assert_eq!(run(&w, &none, S, "api", &none, &o), Decision::Named);
        assert_eq!(run(&w, &none, S, "my-db-main", &none, &o), Decision::No);
        assert_eq!(run(&w, &none, S, "apis", &none, &o), Decision::No);
        // A Secret list says nothing about ConfigMaps.
        assert_eq!(run(&w, &none, C, "api", &none, &o), Decision::No);
        let (_, invalid) = matches_list("db-.*, api ,[bad", "zzz");
        assert_eq!(invalid, vec!["[bad".to_owned()]);
        // Alternation stays anchored as a whole.
        assert!(!matches_list("a|b", "ab").0);
        assert!(matches_list("a|b", "b").0);
    }

    #[test]
    fn search_needs_match_on_the_resource() {
        let none = a(&[]);
        let o = Options::default();
        let w = a(&[(reloader::SEARCH, "true")]);
        let matched = a(&[(reloader::MATCH, "true")]);
        assert_eq!(run(&w, &none, S, "x", &matched, &o), Decision::Auto);
        assert_eq!(run(&w, &none, S, "x", &none, &o), Decision::No);
        assert_eq!(run(&none, &none, S, "x", &matched, &o), Decision::No);
        // search must be exactly "true".
        let w1 = a(&[(reloader::SEARCH, "1")]);
        assert_eq!(run(&w1, &none, S, "x", &matched, &o), Decision::No);
    }

    #[test]
    fn ignore_and_exclude_win() {
        let none = a(&[]);
        let o = Options::default();
        let w = a(&[
            (reloader::AUTO, "true"),
            (reloader::SECRET_RELOAD, "x"),
            (reloader::SECRETS_EXCLUDE, "other, x"),
        ]);
        assert_eq!(run(&w, &none, S, "x", &none, &o), Decision::No);
        assert_eq!(run(&w, &none, S, "y", &none, &o), Decision::Auto);
        // The Secret exclude list does not exclude a ConfigMap of the same name.
        assert_eq!(run(&w, &none, C, "x", &none, &o), Decision::Auto);
        let ignored = a(&[(reloader::IGNORE, "true")]);
        assert_eq!(
            run(&a(&[(reloader::AUTO, "true")]), &none, S, "y", &ignored, &o),
            Decision::No
        );
        // Exclude on the pod template is not read.
        let pod = a(&[(reloader::AUTO, "true"), (reloader::SECRETS_EXCLUDE, "x")]);
        assert_eq!(run(&none, &pod, S, "x", &none, &o), Decision::Auto);
    }

    #[test]
    fn falls_back_to_the_pod_template_only_when_metadata_has_none() {
        let none = a(&[]);
        let o = Options::default();
        let pod = a(&[(reloader::AUTO, "true")]);
        assert_eq!(run(&none, &pod, S, "x", &none, &o), Decision::Auto);
        // Metadata has a key: the pod template is not read at all.
        let w = a(&[(reloader::CONFIGMAP_RELOAD, "cm")]);
        assert_eq!(run(&w, &pod, C, "x", &none, &o), Decision::No);
        assert_eq!(run(&w, &pod, C, "cm", &none, &o), Decision::Named);
        // The keys are the four of the changed kind: a ConfigMap list on the workload does not
        // stop the fallback for a Secret.
        let w = a(&[(reloader::CONFIGMAP_RELOAD, "cm")]);
        assert_eq!(run(&w, &pod, S, "x", &none, &o), Decision::Auto);
        let w = a(&[(reloader::SECRET_AUTO, "false")]);
        assert_eq!(run(&w, &pod, S, "x", &none, &o), Decision::No);
    }

    #[test]
    fn ignored_workload_kinds() {
        let none = a(&[]);
        let o = Options {
            ignored_workload_kinds: vec!["Deployment".into()],
            ..Options::default()
        };
        assert_eq!(
            run(&a(&[(reloader::AUTO, "true")]), &none, S, "x", &none, &o),
            Decision::No
        );
    }

    #[test]
    fn renamed_annotations_replace_reloaders_names() {
        let names = Names {
            auto: "example.com/auto".into(),
            secret_auto: "example.com/secret-auto".into(),
            configmap_auto: "example.com/configmap-auto".into(),
            search: "example.com/search".into(),
            matches: "example.com/match".into(),
            secret_reload: "example.com/secrets".into(),
            configmap_reload: "example.com/configmaps".into(),
            ignore: "example.com/ignore".into(),
            secret_exclude: "example.com/secrets-exclude".into(),
            ..Names::default()
        };
        let o = Options {
            names,
            ..Options::default()
        };
        let none = a(&[]);
        let yes = |k: &str| a(&[(k, "true")]);
        // The new names work, on the workload and (as fallback) on the pod template ...
        assert_eq!(
            run(&yes("example.com/auto"), &none, S, "x", &none, &o),
            Decision::Auto
        );
        assert_eq!(
            run(&none, &yes("example.com/auto"), S, "x", &none, &o),
            Decision::Auto
        );
        assert_eq!(
            run(&yes("example.com/secret-auto"), &none, S, "x", &none, &o),
            Decision::Auto
        );
        assert_eq!(
            run(&yes("example.com/configmap-auto"), &none, S, "x", &none, &o),
            Decision::No
        );
        assert_eq!(
            run(
                &a(&[("example.com/secrets", "x")]),
                &none,
                S,
                "x",
                &none,
                &o
            ),
            Decision::Named
        );
        assert_eq!(
            run(
                &yes("example.com/search"),
                &none,
                S,
                "x",
                &yes("example.com/match"),
                &o
            ),
            Decision::Auto
        );
        assert_eq!(
            run(
                &yes("example.com/auto"),
                &none,
                S,
                "x",
                &yes("example.com/ignore"),
                &o
            ),
            Decision::No
        );
        assert!(opted_in(Some(&yes("example.com/auto")), None, S, &o));
        let list = a(&[("example.com/configmaps", "cfg-.*")]);
        assert_eq!(reload_list(Some(&list), None, C, &o.names), Some("cfg-.*"));
        // ... and Reloader's default names are no longer read, as with Reloader's flags.
        assert_eq!(
            run(&yes(reloader::AUTO), &none, S, "x", &none, &o),
            Decision::No
        );
        assert!(!opted_in(Some(&yes(reloader::AUTO)), None, S, &o));
        assert_eq!(
            run(
                &yes("example.com/auto"),
                &none,
                S,
                "x",
                &yes(reloader::IGNORE),
                &o
            ),
            Decision::Auto
        );
        let excluded = |k: &str| a(&[("example.com/auto", "true"), (k, "x")]);
        let exclude = excluded("example.com/secrets-exclude");
        assert_eq!(run(&exclude, &none, S, "x", &none, &o), Decision::No);
        let default_exclude = excluded(reloader::SECRETS_EXCLUDE);
        assert_eq!(
            run(&default_exclude, &none, S, "x", &none, &o),
            Decision::Auto
        );
    }
}
