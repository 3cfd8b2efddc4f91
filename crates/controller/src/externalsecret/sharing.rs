//! Which provider reads an ExternalSecret's sync may share with other ExternalSecrets (see
//! `lockstep_providers::coalesce`), and refresh times aligned per remote key so that the
//! ExternalSecrets that read one key fall due together and share one read.
//!
//! A sync may use any read of the same key, by the same store identity, that *started* at or
//! after a bound:
//!
//! - never before the ExternalSecret's last change (creation, spec, labels, annotations such as
//!   `force-sync`; its status excluded) plus one second, because the apiserver's timestamps
//!   are whole seconds: a value rotated before someone created or force-synced an
//!   ExternalSecret is always seen by that sync;
//! - for a refresh due only because time passed, not before the moment it fell due (its
//!   `refreshTime` plus the refresh interval): a read that started after that is as new as
//!   one the refresh would make itself, however long the refresh then waited in the work
//!   queue (without a `refreshTime`, not before a tenth of the interval ago);
//! - never before [`MAX_AGE`](lockstep_providers::coalesce::MAX_AGE) ago (reads are not kept
//!   longer), and for any other sync not before one refresh interval ago.
//!
//! The sync's `refreshTime` is the start of the oldest read it used, so that a shared read
//! never makes a Secret's data older than its refresh interval without a refresh being due,
//! and the ExternalSecrets served by one read fall due at the same moment and share the read
//! of their next refresh, even when a queue spreads them over more than the jitter window.
//!
//! Object timestamps come from the apiserver's clock and are compared with Lockstep's; the
//! bound assumes the two agree to well within a second (NTP).

use std::hash::{Hash, Hasher};
use std::time::{Duration, SystemTime};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use lockstep_api::external_secret::ExternalSecret;
use lockstep_providers::coalesce::MAX_AGE;

/// The field manager of Lockstep's own finalizer patch, which is not a change a sync must see.
pub const FINALIZER_MANAGER: &str = "lockstep-finalizer";

/// Keeps, of an object's managedFields, only the time of its last change outside the status
/// and Lockstep's own finalizer (one entry without fields), so the cache stays small and the
/// time is still known.
pub fn keep_last_change(fields: &mut Vec<ManagedFieldsEntry>) {
    let last = fields
        .iter()
        .filter(|f| f.subresource.as_deref().unwrap_or_default().is_empty())
        .filter(|f| f.manager.as_deref() != Some(FINALIZER_MANAGER))
        .filter_map(|f| f.time.clone())
        .max_by_key(|t| t.0);
    fields.clear();
    if let Some(time) = last {
        fields.push(ManagedFieldsEntry {
            time: Some(time),
            ..Default::default()
        });
    }
}

/// When the object last changed outside its status: the newest managedFields time, or its
/// creation.
fn last_change(es: &ExternalSecret) -> Option<SystemTime> {
    let fields = es.metadata.managed_fields.iter().flatten();
    fields
        .filter(|f| f.subresource.as_deref().unwrap_or_default().is_empty())
        .filter(|f| f.manager.as_deref() != Some(FINALIZER_MANAGER))
        .filter_map(|f| f.time.as_ref())
        .chain(es.metadata.creation_timestamp.as_ref())
        .map(|t| SystemTime::from(t.0))
        .max()
}

/// The earliest start of a read this sync may share (see the module documentation).
pub fn shared_reads_since(
    es: &ExternalSecret,
    interval: Duration,
    periodic: bool,
    now: SystemTime,
) -> SystemTime {
    let ago = |d: Duration| now.checked_sub(d).unwrap_or(now);
    let refreshed = es
        .status
        .as_ref()
        .and_then(|s| s.refresh_time.as_ref())
        .map(|t| SystemTime::from(t.0));
    let floor = match (periodic, refreshed) {
        (true, Some(t)) => (t + interval).max(ago(MAX_AGE)).min(now),
        (true, None) => ago((interval / 10).min(MAX_AGE)),
        (false, _) if interval.is_zero() => ago(MAX_AGE),
        (false, _) => ago(interval.min(MAX_AGE)),
    };
    match last_change(es) {
        Some(changed) => floor.max(changed + Duration::from_secs(1)),
        None => now,
    }
}

/// The jitter added to a refresh interval: up to a tenth of it, the same for every
/// ExternalSecret that reads the same first key through the same store, so that those fall
/// due together and share a read, while different keys spread over the window.
pub fn jitter(es: &ExternalSecret, interval: Duration) -> Duration {
    let span = interval.as_millis().min(u128::from(u64::MAX)) as u64 / 10;
    if span == 0 {
        return Duration::ZERO;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let spec = &es.spec;
    let store = spec.secret_store_ref.as_ref();
    store.and_then(|s| s.name.as_deref()).hash(&mut h);
    store
        .map(|s| format!("{:?}", s.kind.unwrap_or_default()))
        .hash(&mut h);
    let first_data = spec.data.iter().flatten().next();
    let first_from = spec.data_from.iter().flatten().next();
    match (first_data, first_from) {
        (_, Some(from)) => {
            from.extract.as_ref().map(|e| e.key.as_str()).hash(&mut h);
            from.find
                .as_ref()
                .map(|f| {
                    (
                        f.path.as_deref(),
                        f.name.as_ref().and_then(|n| n.regexp.as_deref()),
                    )
                })
                .hash(&mut h);
        }
        (Some(data), None) => data.remote_ref.key.hash(&mut h),
        (None, None) => {}
    }
    Duration::from_millis(h.finish() % (span + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use serde_json::json;

    fn es(v: serde_json::Value) -> ExternalSecret {
        serde_json::from_value(v).expect("ExternalSecret")
    }

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    fn entry(secs: i64, subresource: Option<&str>) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some("m".into()),
            time: Some(at(secs)),
            subresource: subresource.map(str::to_owned),
            ..Default::default()
        }
    }

    fn object(created: i64, fields: Vec<ManagedFieldsEntry>) -> ExternalSecret {
        let mut es = es(json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": { "name": "a", "namespace": "n" },
            "spec": { "secretStoreRef": { "name": "s" },
                      "data": [{ "secretKey": "k", "remoteRef": { "key": "db" } }] }
        }));
        es.metadata.creation_timestamp = Some(at(created));
        es.metadata.managed_fields = Some(fields);
        es
    }

    #[test]
    fn only_the_last_change_outside_the_status_is_kept() {
        let mut finalizer = entry(400, None);
        finalizer.manager = Some(FINALIZER_MANAGER.into());
        let mut fields = vec![
            entry(100, None),
            entry(300, Some("status")),
            entry(200, None),
            finalizer,
        ];
        keep_last_change(&mut fields);
        assert_eq!(fields.len(), 1);
        assert_eq!(fields[0].time, Some(at(200)));
        assert!(fields[0].fields_v1.is_none() && fields[0].manager.is_none());
    }

    #[test]
    fn a_sync_never_shares_a_read_from_before_its_objects_last_change() {
        let now = SystemTime::from(Timestamp::from_second(1_000).unwrap());
        let secs = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64()
        };
        let interval = Duration::from_secs(3600);
        // Force-synced at 990 (an annotation, after the status write at 995).
        let es = object(500, vec![entry(990, None), entry(995, Some("status"))]);
        assert_eq!(secs(shared_reads_since(&es, interval, false, now)), 991.0);
        // Changed long ago: bounded by the age limit, or by the jitter window for a refresh.
        let es = object(100, vec![entry(100, None)]);
        assert_eq!(
            secs(shared_reads_since(&es, interval, false, now)),
            1_000.0 - MAX_AGE.as_secs_f64()
        );
        assert_eq!(
            secs(shared_reads_since(&es, Duration::from_secs(60), true, now)),
            994.0,
            "a periodic refresh without a refreshTime: a tenth of the interval"
        );
        // A periodic refresh: any read that started after it fell due, however late it runs.
        let mut due = es.clone();
        due.status = Some(lockstep_api::external_secret::ExternalSecretStatus {
            refresh_time: Some(at(900)),
            ..Default::default()
        });
        let minute = Duration::from_secs(60);
        assert_eq!(secs(shared_reads_since(&due, minute, true, now)), 960.0);
        let mut long_overdue = due.clone();
        long_overdue.status.as_mut().unwrap().refresh_time = Some(at(500));
        assert_eq!(
            secs(shared_reads_since(&long_overdue, minute, true, now)),
            1_000.0 - MAX_AGE.as_secs_f64(),
            "not older than reads are kept"
        );
        assert_eq!(
            secs(shared_reads_since(
                &due,
                Duration::from_secs(200),
                true,
                now
            )),
            1_000.0,
            "never after now"
        );
        let mut changed = due.clone();
        changed.metadata.managed_fields = Some(vec![entry(980, None)]);
        assert_eq!(secs(shared_reads_since(&changed, minute, true, now)), 981.0);
        // Never a read older than the refresh interval.
        assert_eq!(
            secs(shared_reads_since(&es, Duration::from_secs(30), false, now)),
            970.0
        );
        assert_eq!(
            secs(shared_reads_since(&es, Duration::ZERO, false, now)),
            1_000.0 - MAX_AGE.as_secs_f64()
        );
        // Nothing known: only reads from now on.
        let mut es = object(100, vec![]);
        es.metadata.creation_timestamp = None;
        assert_eq!(shared_reads_since(&es, interval, false, now), now);
    }

    #[test]
    fn jitter_is_the_same_per_key_and_within_a_tenth() {
        let interval = Duration::from_secs(3600);
        let a = object(1, vec![]);
        let mut b = object(2, vec![]);
        b.metadata.name = Some("b".into());
        assert_eq!(jitter(&a, interval), jitter(&b, interval));
        let spread: std::collections::BTreeSet<_> = (0..50)
            .map(|i| {
                let mut es = object(1, vec![]);
                es.spec.data.as_mut().unwrap()[0].remote_ref.key = format!("key-{i}");
                let j = jitter(&es, interval);
                assert!(j <= interval / 10);
                j
            })
            .collect();
        assert!(spread.len() > 40, "different keys spread over the window");
        assert_eq!(jitter(&a, Duration::ZERO), Duration::ZERO);
    }
}
