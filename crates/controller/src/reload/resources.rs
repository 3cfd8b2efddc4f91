//! The reload controller's cache of Secrets and ConfigMaps: for each one watched, only what a
//! reload decision reads of it — its resourceVersion, and the few labels and annotations of
//! Reloader's and UDS's contracts. A reflector store would keep every object's whole metadata
//! (uid, timestamps, owner references, every label and annotation, and its key copied again):
//! about 1.5 KB per object, 21.8 MiB of the heap with 15,000 of them in `bench/reload_bench.py`.
//! Nothing else is kept: not managedFields, nor `kubectl apply`'s last-applied copy (which, for
//! a Secret, holds its data).

use std::collections::HashMap;
use std::sync::RwLock;

use kube::api::ObjectMeta;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use tokio::sync::watch;

use super::names::Names;
use super::scope::Covered;
use super::uds::{self, Map};

/// The labels of a Secret/ConfigMap that any decision reads.
const KEPT_LABELS: [&str; 1] = [uds::POD_RELOAD];

/// What the reload decision reads of one Secret or ConfigMap.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Its resourceVersion: its data is read (and hashed) again only when this moves.
    pub resource_version: String,
    /// Its labels among [`KEPT_LABELS`].
    pub labels: Map,
    /// Its annotations that any decision reads: Reloader's ignore and match (under the names
    /// configured), and UDS's pod-reload selector.
    pub annotations: Map,
}

/// One cached object: most carry none of the kept labels and annotations, so those are boxed.
#[derive(PartialEq, Eq)]
struct Entry {
    resource_version: Box<str>,
    kept: Option<Box<(Map, Map)>>,
}

impl Entry {
    fn of(meta: &ObjectMeta, kept_annotations: &[String]) -> Self {
        let keep = |all: Option<&Map>, kept: &dyn Fn(&str) -> bool| -> Map {
            all.into_iter()
                .flatten()
                .filter(|(k, _)| kept(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let labels = keep(meta.labels.as_ref(), &|k| KEPT_LABELS.contains(&k));
        let annotations = keep(meta.annotations.as_ref(), &|k| {
            kept_annotations.iter().any(|a| a == k)
        });
        Entry {
            resource_version: meta.resource_version.as_deref().unwrap_or_default().into(),
            kept: (!labels.is_empty() || !annotations.is_empty())
                .then(|| Box::new((labels, annotations))),
        }
    }

    fn meta(&self) -> Meta {
        let (labels, annotations) = self.kept.as_deref().cloned().unwrap_or_default();
        Meta {
            resource_version: self.resource_version.to_string(),
            labels,
            annotations,
        }
    }
}

/// Objects by namespace, then by name.
type Objects = HashMap<Box<str>, HashMap<Box<str>, Entry>>;

/// The cache of one resource kind, filled from a watch by [`Resources::apply`].
pub struct Resources {
    objects: RwLock<Objects>,
    /// The objects of a (re)list being received; they replace `objects` when it is complete.
    relist: RwLock<Option<Objects>>,
    ready: watch::Sender<bool>,
    /// Whether a (re)list is being received.
    listing: watch::Sender<bool>,
    /// The annotations kept of each object.
    kept_annotations: Vec<String>,
    /// The namespaces the last complete list covered.
    covered: RwLock<Covered>,
}

impl Resources {
    /// An empty cache that keeps the annotations decisions read under `names`.
    pub fn new(names: &Names) -> Self {
        Resources {
            objects: RwLock::default(),
            relist: RwLock::default(),
            ready: watch::channel(false).0,
            listing: watch::channel(false).0,
            covered: RwLock::new(None),
            kept_annotations: vec![
                names.ignore.clone(),
                names.matches.clone(),
                uds::POD_RELOAD_SELECTOR.to_owned(),
            ],
        }
    }
}

fn insert(objects: &mut Objects, ns: &str, name: &str, entry: Entry) {
    match objects.get_mut(ns) {
        Some(names) => {
            names.insert(name.into(), entry);
        }
        None => {
            objects.insert(ns.into(), HashMap::from([(name.into(), entry)]));
        }
    }
}

impl Resources {
    /// What the cache holds of `ns`/`name`, if it exists.
    pub fn get(&self, ns: &str, name: &str) -> Option<Meta> {
        let objects = self.objects.read().expect("resource cache lock");
        objects.get(ns)?.get(name).map(Entry::meta)
    }

    /// The names of the objects of `ns` whose kept labels and annotations `pick` selects
    /// (objects that carry none of them are never picked).
    pub fn names_where(&self, ns: &str, pick: impl Fn(&Map, &Map) -> bool) -> Vec<String> {
        let objects = self.objects.read().expect("resource cache lock");
        objects
            .get(ns)
            .into_iter()
            .flatten()
            .filter(|(_, e)| e.kept.as_deref().is_some_and(|(l, a)| pick(l, a)))
            .map(|(name, _)| name.to_string())
            .collect()
    }

    /// The names of all objects of `ns`.
    pub fn names(&self, ns: &str) -> Vec<String> {
        let objects = self.objects.read().expect("resource cache lock");
        objects
            .get(ns)
            .into_iter()
            .flat_map(HashMap::keys)
            .map(|name| name.to_string())
            .collect()
    }

    /// Completes once the first list has been received in full.
    pub async fn wait_until_ready(&self) {
        let _ = self.ready.subscribe().wait_for(|ready| *ready).await;
    }

    /// Whether a (re)list is being received: until it is complete the cache may be missing
    /// objects (of a namespace just selected, say) or hold old versions, so nothing should be
    /// decided from it.
    pub fn listing(&self) -> bool {
        *self.listing.borrow()
    }

    /// Whether the cache's last complete list covered `namespace` (all namespaces when there
    /// is no namespace selection): if not, the cache may lack its objects.
    pub fn covers(&self, namespace: &str) -> bool {
        self.covered
            .read()
            .expect("resource cache lock")
            .as_ref()
            .is_none_or(|set| set.contains(namespace))
    }

    /// Completes when no (re)list is being received.
    pub async fn wait_until_listed(&self) {
        let _ = self.listing.subscribe().wait_for(|listing| !*listing).await;
    }

    /// Applies one watch event; returns the objects it touched (added, changed or deleted), as a
    /// reflector's `touched_objects` does. A relist touches nothing until it is complete; then
    /// it touches what differs from the cache it replaces, deletions included, so a change made
    /// while the watch was down is acted on. The first list touches nothing.
    pub fn apply<K>(
        &self,
        (event, covered): (watcher::Event<PartialObjectMeta<K>>, Covered),
    ) -> Vec<Touched> {
        let key = |meta: &ObjectMeta| {
            (
                meta.namespace.clone().unwrap_or_default(),
                meta.name.clone().unwrap_or_default(),
            )
        };
        match event {
            watcher::Event::Init => {
                *self.relist.write().expect("resource cache lock") = Some(Objects::new());
                self.listing.send_replace(true);
                Vec::new()
            }
            watcher::Event::InitApply(o) => {
                let (ns, name) = key(&o.metadata);
                let mut relist = self.relist.write().expect("resource cache lock");
                insert(
                    relist.get_or_insert_default(),
                    &ns,
                    &name,
                    Entry::of(&o.metadata, &self.kept_annotations),
                );
                Vec::new()
            }
            watcher::Event::InitDone => {
                let mut relist = self.relist.write().expect("resource cache lock");
                let listed = relist.take().unwrap_or_default();
                let mut objects = self.objects.write().expect("resource cache lock");
                // Nothing is decided from the cache before its first list is complete, so that
                // list touches nothing (15,000 objects would make as many notifications).
                let touched = if *self.ready.borrow() {
                    differences(&objects, &listed)
                } else {
                    Vec::new()
                };
                *objects = listed;
                *self.covered.write().expect("resource cache lock") = covered;
                drop(objects);
                drop(relist);
                self.ready.send_replace(true);
                self.listing.send_replace(false);
                touched
            }
            watcher::Event::Apply(o) => {
                let entry = Entry::of(&o.metadata, &self.kept_annotations);
                let meta = entry.meta();
                let (namespace, name) = key(&o.metadata);
                let mut objects = self.objects.write().expect("resource cache lock");
                insert(&mut objects, &namespace, &name, entry);
                vec![Touched {
                    namespace,
                    name,
                    meta,
                    deleted: false,
                }]
            }
            watcher::Event::Delete(o) => {
                let (namespace, name) = key(&o.metadata);
                let mut objects = self.objects.write().expect("resource cache lock");
                if let Some(names) = objects.get_mut(namespace.as_str()) {
                    names.remove(name.as_str());
                    if names.is_empty() {
                        objects.remove(namespace.as_str());
                    }
                }
                vec![Touched {
                    namespace,
                    name,
                    meta: Entry::of(&o.metadata, &self.kept_annotations).meta(),
                    deleted: true,
                }]
            }
        }
    }
}

/// An object a watch event added, changed or deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Touched {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// What the cache keeps of it (its last version, when deleted).
    pub meta: Meta,
    /// Whether it is gone.
    pub deleted: bool,
}

/// What a relist changed: objects new or at another version in `listed`, and objects of
/// `cached` that `listed` no longer has.
fn differences(cached: &Objects, listed: &Objects) -> Vec<Touched> {
    let mut out = Vec::new();
    for (ns, names) in listed {
        for (name, entry) in names {
            if cached.get(ns).and_then(|c| c.get(name)) != Some(entry) {
                out.push(Touched {
                    namespace: ns.to_string(),
                    name: name.to_string(),
                    meta: entry.meta(),
                    deleted: false,
                });
            }
        }
    }
    for (ns, names) in cached {
        for (name, entry) in names {
            if listed.get(ns).and_then(|l| l.get(name)).is_none() {
                out.push(Touched {
                    namespace: ns.to_string(),
                    name: name.to_string(),
                    meta: entry.meta(),
                    deleted: true,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use k8s_openapi::api::core::v1::Secret;
    use lockstep_api::reloader;

    use super::*;

    /// Applies `event` of a watch of all namespaces.
    fn watched<K>(cache: &Resources, event: watcher::Event<PartialObjectMeta<K>>) -> Vec<Touched> {
        cache.apply((event, None))
    }

    fn secret(
        ns: &str,
        name: &str,
        rv: &str,
        labels: &[(&str, &str)],
    ) -> PartialObjectMeta<Secret> {
        let map = |pairs: &[(&str, &str)]| {
            Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<Map>(),
            )
        };
        PartialObjectMeta {
            types: None,
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                resource_version: Some(rv.into()),
                uid: Some("0b5c8a4e-2f1e-4b8e-9d1a-7c2b3e4f5a6b".into()),
                labels: map(labels),
                annotations: map(&[
                    (reloader::MATCH, "true"),
                    ("meta.helm.sh/release-name", "db"),
                    (
                        "kubectl.kubernetes.io/last-applied-configuration",
                        r#"{"data":{"password":"Y2FuYXJ5"}}"#,
                    ),
                ]),
                managed_fields: Some(vec![Default::default()]),
                ..ObjectMeta::default()
            },
            _phantom: Default::default(),
        }
    }

    #[test]
    fn keeps_the_resource_version_and_only_the_labels_and_annotations_decisions_read() {
        let cache = Resources::new(&Names::default());
        watched(
            &cache,
            watcher::Event::Apply(secret(
                "a",
                "db",
                "7",
                &[(uds::POD_RELOAD, "true"), ("app", "db")],
            )),
        );
        let meta = cache.get("a", "db").expect("cached");
        assert_eq!(meta.resource_version, "7");
        assert_eq!(
            meta.labels,
            Map::from([(uds::POD_RELOAD.to_owned(), "true".to_owned())])
        );
        assert_eq!(
            meta.annotations,
            Map::from([(reloader::MATCH.to_owned(), "true".to_owned())])
        );
        assert_eq!(cache.get("b", "db"), None);
    }

    fn names(touched: &[Touched]) -> Vec<(String, bool)> {
        let mut out: Vec<_> = touched
            .iter()
            .map(|t| (t.name.clone(), t.deleted))
            .collect();
        out.sort();
        out
    }

    #[tokio::test]
    async fn a_relist_touches_only_what_changed_and_only_once_complete() {
        let cache = Resources::new(&Names::default());
        watched(&cache, watcher::Event::<PartialObjectMeta<Secret>>::Init);
        for (name, rv) in [("same", "1"), ("moved", "2"), ("gone", "3")] {
            watched(
                &cache,
                watcher::Event::InitApply(secret("a", name, rv, &[])),
            );
        }
        watched(
            &cache,
            watcher::Event::<PartialObjectMeta<Secret>>::InitDone,
        );
        assert!(!cache.listing());
        // A relist after the watch was down: `moved` changed, `gone` was deleted, `new` created.
        assert!(watched(&cache, watcher::Event::<PartialObjectMeta<Secret>>::Init).is_empty());
        for (name, rv) in [("same", "1"), ("moved", "5"), ("new", "6")] {
            let touched = watched(
                &cache,
                watcher::Event::InitApply(secret("a", name, rv, &[])),
            );
            assert!(
                touched.is_empty(),
                "nothing is touched before the list is complete"
            );
        }
        // Until the list is complete, the cache is what it was, and says it is listing.
        assert!(cache.listing());
        let waiting = tokio::time::timeout(Duration::from_millis(50), cache.wait_until_listed());
        assert!(waiting.await.is_err(), "still listing");
        assert_eq!(cache.get("a", "moved").unwrap().resource_version, "2");
        assert!(cache.get("a", "gone").is_some());
        assert!(cache.get("a", "new").is_none());
        let touched = watched(
            &cache,
            watcher::Event::<PartialObjectMeta<Secret>>::InitDone,
        );
        assert_eq!(
            names(&touched),
            vec![
                ("gone".into(), true),
                ("moved".into(), false),
                ("new".into(), false)
            ]
        );
        cache.wait_until_ready().await;
        cache.wait_until_listed().await;
        assert!(!cache.listing());
        assert!(cache.get("a", "gone").is_none());
        assert_eq!(cache.get("a", "moved").unwrap().resource_version, "5");
        let mut all = cache.names("a");
        all.sort();
        assert_eq!(all, vec!["moved", "new", "same"]);
    }

    #[tokio::test]
    async fn the_first_list_touches_nothing_and_makes_the_cache_ready() {
        let cache = Resources::new(&Names::default());
        watched(&cache, watcher::Event::<PartialObjectMeta<Secret>>::Init);
        watched(
            &cache,
            watcher::Event::InitApply(secret("a", "db", "1", &[])),
        );
        watched(
            &cache,
            watcher::Event::InitApply(secret("b", "db", "1", &[])),
        );
        let touched = watched(
            &cache,
            watcher::Event::<PartialObjectMeta<Secret>>::InitDone,
        );
        assert!(touched.is_empty());
        cache.wait_until_ready().await;
        assert_eq!(cache.names("b"), vec!["db".to_owned()]);
    }

    #[test]
    fn a_delete_removes_the_object_and_reports_it() {
        let cache = Resources::new(&Names::default());
        watched(&cache, watcher::Event::Apply(secret("a", "db", "1", &[])));
        watched(&cache, watcher::Event::Apply(secret("a", "api", "2", &[])));
        let touched = watched(&cache, watcher::Event::Delete(secret("a", "db", "3", &[])));
        assert_eq!(names(&touched), vec![("db".into(), true)]);
        assert_eq!(cache.names("a"), vec!["api".to_owned()]);
        watched(&cache, watcher::Event::Delete(secret("a", "api", "4", &[])));
        assert!(cache.objects.read().unwrap().is_empty());
        assert!(cache.names_where("a", |_, _| true).is_empty());
    }

    #[test]
    fn keeps_the_renamed_ignore_and_match_annotations() {
        let names = Names {
            ignore: "example.com/ignore".into(),
            matches: "example.com/match".into(),
            ..Names::default()
        };
        let cache = Resources::new(&names);
        let mut s = secret("a", "db", "1", &[]);
        s.metadata.annotations.get_or_insert_default().extend([
            ("example.com/ignore".to_owned(), "true".to_owned()),
            ("example.com/match".to_owned(), "true".to_owned()),
        ]);
        watched(&cache, watcher::Event::Apply(s));
        let kept: Vec<_> = cache
            .get("a", "db")
            .unwrap()
            .annotations
            .into_keys()
            .collect();
        assert_eq!(kept, vec!["example.com/ignore", "example.com/match"]);
    }

    #[test]
    fn covers_the_namespaces_of_its_last_complete_list() {
        let cache = Resources::new(&Names::default());
        let only_a: Covered = Some(Arc::new(["a".to_owned()].into()));
        let a_and_b: Covered = Some(Arc::new(["a".to_owned(), "b".to_owned()].into()));
        assert!(cache.covers("b"), "no selection: every namespace");
        cache.apply((
            watcher::Event::<PartialObjectMeta<Secret>>::Init,
            only_a.clone(),
        ));
        cache.apply((
            watcher::Event::<PartialObjectMeta<Secret>>::InitDone,
            only_a,
        ));
        assert!(cache.covers("a") && !cache.covers("b"));
        // b is selected: not covered until the list that includes it is complete.
        cache.apply((
            watcher::Event::<PartialObjectMeta<Secret>>::Init,
            a_and_b.clone(),
        ));
        cache.apply((
            watcher::Event::InitApply(secret("b", "db", "1", &[])),
            a_and_b.clone(),
        ));
        assert!(!cache.covers("b"));
        cache.apply((
            watcher::Event::<PartialObjectMeta<Secret>>::InitDone,
            a_and_b,
        ));
        assert!(cache.covers("b"));
    }
}
