//! What the reload controller's watches cover: Reloader's namespace and label filters applied
//! at the watch, so that what they exclude is never cached (Reloader filters after its cache).
//!
//! - `--namespaces-to-ignore` and `--resource-label-selector` become field and label selectors
//!   of the watch itself: the apiserver never sends what they exclude.
//! - `--namespace-selector` is a label selector on Namespaces, which a watch of Secrets cannot
//!   express: the selected namespaces are watched, and Secret/ConfigMap events from other
//!   namespaces are dropped before they reach the cache. When the selection changes, the watch
//!   starts over, so objects of a newly selected namespace are listed.

use std::collections::HashSet;
use std::sync::Arc;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt, future};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::ReloadConfig;

/// The namespaces the selector selects, `None` until they are first known.
pub type Selection = watch::Receiver<Option<Arc<HashSet<String>>>>;

/// The namespaces a watch covers: `None` for all of them.
pub type Covered = Option<Arc<HashSet<String>>>;

/// A metadata watch event, with the namespaces its watch covers.
pub type CoveredEvent<K> = (watcher::Event<PartialObjectMeta<K>>, Covered);

/// Objects per list page of the Secret and ConfigMap metadata watches.
const RESOURCE_PAGE_SIZE: u32 = 500;
/// Objects per list page of the workload watches: a workload is whole (pod template, and
/// managedFields until the cache drops them), ~10 KB decoded.
const WORKLOAD_PAGE_SIZE: u32 = 100;

/// The watch configuration of Secrets and ConfigMaps: label selector and ignored namespaces.
pub fn resource_watch(config: &ReloadConfig) -> watcher::Config {
    let mut wc = paginated(config).page_size(RESOURCE_PAGE_SIZE);
    if let Some(labels) = config.resource_label_selector.as_deref() {
        wc = wc.labels(labels);
    }
    wc
}

/// The watch configuration of workloads: ignored namespaces.
pub fn workload_watch(config: &ReloadConfig) -> watcher::Config {
    paginated(config).page_size(WORKLOAD_PAGE_SIZE)
}

/// Lists are paginated, so the list that fills a cache is decoded one page at a time: the
/// apiserver ignores `limit` for lists at `resourceVersion=0` ("any" semantics, served whole
/// from its cache), and at start that whole list, decoded at once, was the reload
/// controller's memory peak (10,000 Secrets and 1,000 Deployments in `bench/reload_bench.py`).
fn paginated(config: &ReloadConfig) -> watcher::Config {
    let mut wc = watcher::Config::default();
    let fields = config
        .namespaces_to_ignore
        .iter()
        .map(|ns| format!("metadata.namespace!={ns}"))
        .collect::<Vec<_>>()
        .join(",");
    if !fields.is_empty() {
        wc = wc.fields(&fields);
    }
    wc
}

/// Follows the namespaces that `selector` selects, until `shutdown`.
pub fn follow_selection(
    client: Client,
    selector: String,
    shutdown: crate::shutdown::Signal,
) -> (Selection, impl Future<Output = ()> + Send) {
    let (tx, rx) = watch::channel(None);
    let task = async move {
        let api = Api::<PartialObjectMeta<Namespace>>::all(client);
        let mut known: Option<HashSet<String>> = None;
        let mut pending: HashSet<String> = HashSet::new();
        let events = watcher(
            api,
            watcher::Config::default().any_semantic().labels(&selector),
        )
        .default_backoff()
        .take_until(shutdown);
        futures::pin_mut!(events);
        while let Some(event) = events.next().await {
            let Ok(event) = event else { continue };
            let mut next = known.clone().unwrap_or_default();
            match event {
                watcher::Event::Init => {
                    pending.clear();
                    continue;
                }
                watcher::Event::InitApply(ns) => {
                    pending.insert(ns.name_any());
                    continue;
                }
                watcher::Event::InitDone => next = std::mem::take(&mut pending),
                watcher::Event::Apply(ns) => {
                    next.insert(ns.name_any());
                }
                watcher::Event::Delete(ns) => {
                    next.remove(&ns.name_any());
                }
            }
            if known.as_ref() != Some(&next) {
                tracing::info!(
                    namespaces = next.len(),
                    "reload namespace selection changed"
                );
                known = Some(next.clone());
                let _ = tx.send(Some(Arc::new(next)));
            }
        }
    };
    (rx, task)
}

/// A metadata-only watch of `K` (an `Api` of `PartialObjectMeta`: the apiserver sends no
/// data), limited to the selected namespaces when there is a selection. Each event comes with
/// the namespaces its watch covers, so a cache knows which namespaces its last complete list
/// holds.
pub fn metadata_events<K>(
    api: Api<PartialObjectMeta<K>>,
    config: watcher::Config,
    selection: Option<Selection>,
) -> BoxStream<'static, Result<CoveredEvent<K>, watcher::Error>>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let Some(selection) = selection else {
        return watcher(api, config)
            .default_backoff()
            .map_ok(|event| (event, None))
            .boxed();
    };
    futures::stream::unfold(selection, move |mut selection| {
        let api = api.clone();
        let config = config.clone();
        async move {
            // Nothing is listed before the selection is known: an empty first list would make
            // every referenced resource look absent.
            let selected = selection
                .wait_for(Option::is_some)
                .await
                .ok()?
                .clone()
                .expect("waited for a selection");
            let mut changes = selection.clone();
            let changed = async move {
                if changes.changed().await.is_err() {
                    future::pending::<()>().await;
                }
            };
            let covered = selected.clone();
            let events = watcher(api, config)
                .default_backoff()
                .try_filter(move |event| future::ready(in_selection(event, &selected)))
                .map_ok(move |event| (event, Some(covered.clone())))
                .take_until(changed);
            Some((events, selection))
        }
    })
    .flatten()
    .boxed()
}

fn in_selection<K: Resource>(event: &watcher::Event<K>, selected: &HashSet<String>) -> bool {
    match event {
        watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o) => o
            .meta()
            .namespace
            .as_ref()
            .is_some_and(|ns| selected.contains(ns)),
        watcher::Event::Init | watcher::Event::InitDone => true,
    }
}

/// Whether workloads of `namespace` may be rolled under the current selection.
pub fn selected(selection: Option<&Selection>, namespace: &str) -> bool {
    selection.is_none_or(|s| {
        s.borrow()
            .as_ref()
            .is_some_and(|set| set.contains(namespace))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_paginated_consistent_reads_with_the_filters() {
        let config = ReloadConfig {
            namespaces_to_ignore: vec!["kube-system".into(), "flux".into()],
            resource_label_selector: Some("team=a".into()),
            ..ReloadConfig::default()
        };
        // "Any" semantics (resourceVersion=0) would make the apiserver ignore the page size.
        for (wc, page) in [
            (resource_watch(&config), RESOURCE_PAGE_SIZE),
            (workload_watch(&config), WORKLOAD_PAGE_SIZE),
        ] {
            assert_eq!(wc.list_semantic, watcher::ListSemantic::MostRecent);
            assert_eq!(wc.page_size, Some(page));
            assert_eq!(
                wc.field_selector.as_deref(),
                Some("metadata.namespace!=kube-system,metadata.namespace!=flux")
            );
        }
        assert_eq!(
            resource_watch(&config).label_selector.as_deref(),
            Some("team=a")
        );
        assert_eq!(workload_watch(&config).label_selector, None);
    }

    #[test]
    fn events_of_unselected_namespaces_never_reach_the_cache() {
        use k8s_openapi::api::core::v1::Secret;
        let secret = |ns: &str| PartialObjectMeta::<Secret> {
            types: None,
            metadata: kube::api::ObjectMeta {
                namespace: Some(ns.into()),
                name: Some("db".into()),
                ..Default::default()
            },
            _phantom: std::marker::PhantomData,
        };
        let selected: HashSet<String> = ["a".to_owned()].into();
        for (event, kept) in [
            (watcher::Event::Apply(secret("a")), true),
            (watcher::Event::InitApply(secret("a")), true),
            (watcher::Event::Delete(secret("a")), true),
            (watcher::Event::Apply(secret("b")), false),
            (watcher::Event::InitApply(secret("b")), false),
            (watcher::Event::Delete(secret("b")), false),
            (watcher::Event::Init, true),
            (watcher::Event::InitDone, true),
        ] {
            assert_eq!(in_selection(&event, &selected), kept, "{event:?}");
        }
    }
}
