//! UDS Core's pod-reload contract (pure, no I/O): a Secret or ConfigMap labelled
//! `uds.dev/pod-reload: "true"` rolls the workloads that use it, or, with the annotation
//! `uds.dev/pod-reload-selector: "k=v,..."`, the workloads whose pods carry those labels.
//!
//! Lockstep honours it only when asked to (`--uds-pod-reload`) and only while UDS Core's own
//! operator is absent (no `packages.uds.dev` API): where UDS Core runs, the contract is its.
//! A change that both this contract and Reloader's annotations ask for rolls a workload once.

use std::collections::BTreeMap;

/// The label on a Secret or ConfigMap that opts it in.
pub const POD_RELOAD: &str = "uds.dev/pod-reload";
/// The annotation on it that selects pods by label instead of by reference.
pub const POD_RELOAD_SELECTOR: &str = "uds.dev/pod-reload-selector";
/// The pod-template annotation UDS Core writes to restart a workload.
pub const RESTARTED_AT: &str = "uds.dev/restartedAt";
/// The API group of UDS Core's `Package`, whose presence means UDS Core's operator runs.
pub const UDS_GROUP: &str = "uds.dev";

/// Labels or annotations of an object.
pub type Map = BTreeMap<String, String>;

/// Whether the equality selector `k=v,k2=v2` matches `labels`. An empty or malformed selector
/// matches nothing (a typo must not restart every workload of the namespace).
pub fn selector_matches(selector: &str, labels: Option<&Map>) -> bool {
    let terms: Vec<_> = selector
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    if terms.is_empty() {
        return false;
    }
    terms.iter().all(|term| {
        let Some((key, value)) = term.split_once('=') else {
            return false;
        };
        let (key, value) = (key.trim().trim_end_matches('='), value.trim());
        !key.is_empty() && labels.and_then(|l| l.get(key)).map(String::as_str) == Some(value)
    })
}

/// Whether the resource opts in to the contract at all.
pub fn opted_in(resource_labels: Option<&Map>) -> bool {
    resource_labels
        .and_then(|l| l.get(POD_RELOAD))
        .is_some_and(|v| v == "true")
}

/// Whether the contract rolls a workload on a change of the resource: it opts in, and either
/// its selector matches the workload's pod labels or (without a selector) the workload
/// references it.
pub fn wants(
    resource_labels: Option<&Map>,
    resource_annotations: Option<&Map>,
    references_it: bool,
    pod_labels: Option<&Map>,
) -> bool {
    if !opted_in(resource_labels) {
        return false;
    }
    match resource_annotations.and_then(|a| a.get(POD_RELOAD_SELECTOR)) {
        Some(selector) => selector_matches(selector, pod_labels),
        None => references_it,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, &str)]) -> Map {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_label_opts_in_and_the_reference_decides() {
        let on = m(&[(POD_RELOAD, "true")]);
        assert!(wants(Some(&on), None, true, None));
        assert!(!wants(Some(&on), None, false, None));
        assert!(!wants(Some(&m(&[(POD_RELOAD, "yes")])), None, true, None));
        assert!(!wants(None, None, true, None));
    }

    #[test]
    fn the_selector_picks_pods_by_label_without_a_reference() {
        let on = m(&[(POD_RELOAD, "true")]);
        let sel = m(&[(POD_RELOAD_SELECTOR, "app=web, tier=front")]);
        let pods = m(&[("app", "web"), ("tier", "front"), ("x", "y")]);
        assert!(wants(Some(&on), Some(&sel), false, Some(&pods)));
        let other = m(&[("app", "web")]);
        assert!(!wants(Some(&on), Some(&sel), true, Some(&other)));
        // Malformed or empty selectors match nothing.
        for bad in ["", " , ", "app", "=web"] {
            let sel = m(&[(POD_RELOAD_SELECTOR, bad)]);
            assert!(!wants(Some(&on), Some(&sel), true, Some(&pods)), "{bad:?}");
        }
    }
}
