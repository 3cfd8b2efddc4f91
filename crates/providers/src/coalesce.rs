//! Coalescing of identical reads: one call to the store for many callers.
//!
//! When many ExternalSecrets read the same remote secret with the same identity at about the
//! same time, only the first one calls the store; the others wait for its answer (single
//! flight), and callers that come shortly after may reuse it. Whether a caller may use a read
//! is decided by one rule, a lower bound on when the read started:
//!
//! - inside [`share_reads_since`] (the controller sets it per reconcile), any read that
//!   *started* at or after `not_before`, in flight or finished, is shared; the controller
//!   chooses `not_before` so that a caller never gets a value read before the last change it
//!   must see (its object's last change, or the start of its refresh window);
//! - outside such a scope, only reads still in flight are joined (the answer is at most one
//!   in-flight read old) and a finished read is never reused.
//!
//! A scope also tells when the oldest read it used started ([`share_reads_timed`]): the
//! controller counts an ExternalSecret's next refresh from then, so the ExternalSecrets served
//! by one read fall due together and share one read again.
//!
//! Finished reads are kept at most [`MAX_AGE`], at most [`MAX_ENTRIES`] of them and at most
//! [`MAX_BYTES`] of values (the oldest dropped first), so coalescing never holds more than a
//! bounded amount of secret data. Values stay in [`SecretValue`] (zeroized on drop, redacted in
//! `Debug`); keys are identifiers only.

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use lockstep_api::value::SecretValue;

use crate::Result;

/// The longest a finished read is kept for reuse.
pub const MAX_AGE: Duration = Duration::from_secs(120);
/// The most finished reads kept per client.
pub const MAX_ENTRIES: usize = 4096;
/// The most value bytes kept in finished reads per client.
pub const MAX_BYTES: usize = 8 << 20;

/// What a scope allows, and what its reads were.
struct Scope {
    /// The earliest start of a read the scope may share.
    not_before: SystemTime,
    /// The start of the oldest read (shared or new) used inside the scope.
    oldest: Cell<Option<SystemTime>>,
}

tokio::task_local! {
    static SCOPE: Scope;
}

/// Runs `f` with reads shared from any read that started at or after `not_before`.
pub async fn share_reads_since<F: std::future::Future>(not_before: SystemTime, f: F) -> F::Output {
    share_reads_timed(not_before, f).await.0
}

/// As [`share_reads_since`], and also returns when the oldest read `f` used started (`None`
/// when it used no coalesced read): the age of the data `f` got.
pub async fn share_reads_timed<F: std::future::Future>(
    not_before: SystemTime,
    f: F,
) -> (F::Output, Option<SystemTime>) {
    let scope = Scope {
        not_before,
        oldest: Cell::new(None),
    };
    SCOPE
        .scope(scope, async move {
            let out = f.await;
            (out, SCOPE.with(|s| s.oldest.get()))
        })
        .await
}

/// The `not_before` of the current scope, if any.
fn current_not_before() -> Option<SystemTime> {
    SCOPE.try_with(|s| s.not_before).ok()
}

/// Notes, in the current scope, a read that started at `started`.
fn note_read(started: SystemTime) {
    let _ = SCOPE.try_with(|s| {
        let oldest = s.oldest.get().map_or(started, |o| o.min(started));
        s.oldest.set(Some(oldest));
    });
}

type Read = Shared<BoxFuture<'static, Result<SecretValue>>>;

struct Flight {
    /// When the read started, by the wall clock (compared with object timestamps).
    started: SystemTime,
    /// When it started, by the monotonic clock (for expiry).
    started_at: Instant,
    read: Read,
    /// The size of its value once finished (0 while in flight or after an error).
    bytes: usize,
}

impl Flight {
    fn finished(&self) -> bool {
        self.read.peek().is_some()
    }
}

/// Reads in flight and recently finished, by key. One per client (identity), so that a read
/// is only ever shared between callers of the same identity.
pub struct Flights<K> {
    flights: Mutex<HashMap<K, Flight>>,
}

impl<K> Default for Flights<K> {
    fn default() -> Self {
        Self {
            flights: Mutex::new(HashMap::new()),
        }
    }
}

impl<K> std::fmt::Debug for Flights<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flights")
            .field("entries", &lock(&self.flights).len())
            .finish()
    }
}

impl<K: Hash + Eq + Clone + Send + 'static> Flights<K> {
    /// The value of `key`: from a read this caller may share (see the module documentation),
    /// or from a new read made by `read` and offered to the callers that come after.
    pub async fn get<F>(&self, key: K, read: F) -> Result<SecretValue>
    where
        F: FnOnce() -> BoxFuture<'static, Result<SecretValue>>,
    {
        let not_before = current_not_before();
        let shared = {
            let mut flights = lock(&self.flights);
            prune(&mut flights);
            let usable = flights.get(&key).is_some_and(|f| match not_before {
                Some(t) => f.started >= t && !matches!(f.read.peek(), Some(Err(_))),
                None => !f.finished(),
            });
            if usable {
                let flight = &flights[&key];
                note_read(flight.started);
                flight.read.clone()
            } else {
                let read = read().shared();
                let started = SystemTime::now();
                note_read(started);
                flights.insert(
                    key.clone(),
                    Flight {
                        started,
                        started_at: Instant::now(),
                        read: read.clone(),
                        bytes: 0,
                    },
                );
                read
            }
        };
        let out = shared.clone().await;
        let mut flights = lock(&self.flights);
        if let Some(f) = flights.get_mut(&key)
            && f.read.ptr_eq(&shared)
        {
            match &out {
                // A failed read is not offered to anyone who comes later.
                Err(_) => {
                    flights.remove(&key);
                }
                Ok(v) => f.bytes = v.len(),
            }
        }
        out
    }

    /// How many reads are kept (in flight or finished).
    pub fn len(&self) -> usize {
        lock(&self.flights).len()
    }

    /// Whether no read is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Drops reads older than [`MAX_AGE`] (a read still unfinished then was abandoned by every
/// caller; the SDK gives up on an operation after 60 s), then the oldest finished ones beyond
/// [`MAX_ENTRIES`] or [`MAX_BYTES`].
fn prune<K: Hash + Eq + Clone>(flights: &mut HashMap<K, Flight>) {
    flights.retain(|_, f| f.started_at.elapsed() < MAX_AGE);
    let bytes: usize = flights.values().map(|f| f.bytes).sum();
    if flights.len() <= MAX_ENTRIES && bytes <= MAX_BYTES {
        return;
    }
    let mut finished: Vec<(Instant, K, usize)> = flights
        .iter()
        .filter(|(_, f)| f.finished())
        .map(|(k, f)| (f.started_at, k.clone(), f.bytes))
        .collect();
    finished.sort_by_key(|(t, _, _)| *t);
    let (mut count, mut bytes) = (flights.len(), bytes);
    for (_, key, size) in finished {
        if count <= MAX_ENTRIES && bytes <= MAX_BYTES {
            break;
        }
        flights.remove(&key);
        count -= 1;
        bytes -= size;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::ProviderError;

    /// A read that counts its calls, waits `delay`, and answers `value`.
    fn counted(
        calls: &Arc<AtomicU32>,
        value: &'static str,
        delay: Duration,
    ) -> impl FnOnce() -> BoxFuture<'static, Result<SecretValue>> + use<> {
        let calls = calls.clone();
        move || {
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                Ok(SecretValue::from(value))
            }
            .boxed()
        }
    }

    #[tokio::test]
    async fn concurrent_identical_reads_make_one_call() {
        let flights = Arc::new(Flights::<String>::default());
        let calls = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (flights, calls) = (flights.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                flights
                    .get("k".into(), counted(&calls, "v", Duration::from_millis(50)))
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().expose(), b"v");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one call for 50 readers");

        // Another key is another read.
        flights
            .get("other".into(), counted(&calls, "w", Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn outside_a_scope_a_finished_read_is_not_reused() {
        let flights = Flights::<&'static str>::default();
        let calls = Arc::new(AtomicU32::new(0));
        for _ in 0..3 {
            flights
                .get("k", counted(&calls, "v", Duration::ZERO))
                .await
                .unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_scope_reuses_reads_that_started_after_its_bound_only() {
        let flights = Flights::<&'static str>::default();
        let calls = Arc::new(AtomicU32::new(0));
        let before = SystemTime::now() - Duration::from_secs(1);
        let first = share_reads_since(
            before,
            flights.get("k", counted(&calls, "old", Duration::ZERO)),
        )
        .await
        .unwrap();
        assert_eq!(first.expose(), b"old");
        // Started after `before`: reused, no call.
        let again = share_reads_since(
            before,
            flights.get("k", counted(&calls, "new", Duration::ZERO)),
        )
        .await
        .unwrap();
        assert_eq!(again.expose(), b"old");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // A caller that must see a change made after that read gets a new one.
        let later = SystemTime::now() + Duration::from_millis(1);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let fresh = share_reads_since(
            later,
            flights.get("k", counted(&calls, "new", Duration::ZERO)),
        )
        .await
        .unwrap();
        assert_eq!(fresh.expose(), b"new");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // ... which the earlier bound may use from then on.
        let shared = share_reads_since(
            before,
            flights.get("k", counted(&calls, "newer", Duration::ZERO)),
        )
        .await
        .unwrap();
        assert_eq!(shared.expose(), b"new");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_scope_reports_the_start_of_the_oldest_read_it_used() {
        let flights = Flights::<&'static str>::default();
        let calls = Arc::new(AtomicU32::new(0));
        let before = SystemTime::now() - Duration::from_secs(1);
        let (_, first) = share_reads_timed(
            before,
            flights.get("a", counted(&calls, "v", Duration::ZERO)),
        )
        .await;
        let first = first.expect("a new read is reported");
        assert!(first >= before && first <= SystemTime::now());
        tokio::time::sleep(Duration::from_millis(20)).await;
        // A later caller that shares "a" and reads "b" afresh got data as old as "a"'s read.
        let ((), oldest) = share_reads_timed(before, async {
            let b_started = SystemTime::now();
            flights
                .get("b", counted(&calls, "w", Duration::ZERO))
                .await
                .unwrap();
            flights
                .get("a", counted(&calls, "x", Duration::ZERO))
                .await
                .unwrap();
            assert!(b_started > first);
        })
        .await;
        assert_eq!(oldest, Some(first), "the shared read's start, not now");
        assert_eq!(calls.load(Ordering::SeqCst), 2, "a was shared, b was read");
        // No coalesced read: nothing to report.
        let ((), none) = share_reads_timed(before, async {}).await;
        assert_eq!(none, None);
    }

    #[tokio::test]
    async fn errors_are_shared_by_waiters_but_never_reused() {
        let flights = Arc::new(Flights::<&'static str>::default());
        let calls = Arc::new(AtomicU32::new(0));
        let failing = |calls: &Arc<AtomicU32>| {
            let calls = calls.clone();
            move || {
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    Err(ProviderError::Unavailable("throttled".into()))
                }
                .boxed()
            }
        };
        let since = SystemTime::now() - Duration::from_secs(1);
        let a = share_reads_since(since, flights.get("k", failing(&calls)));
        let b = share_reads_since(since, flights.get("k", failing(&calls)));
        let (a, b) = tokio::join!(a, b);
        assert!(matches!(a, Err(ProviderError::Unavailable(_))));
        assert!(matches!(b, Err(ProviderError::Unavailable(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "waiters share the error");
        let c = share_reads_since(
            since,
            flights.get("k", counted(&calls, "v", Duration::ZERO)),
        )
        .await;
        assert_eq!(c.unwrap().expose(), b"v", "the error is not kept");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_cancelled_first_caller_does_not_fail_the_others() {
        let flights = Arc::new(Flights::<&'static str>::default());
        let calls = Arc::new(AtomicU32::new(0));
        let first = {
            let (flights, calls) = (flights.clone(), calls.clone());
            tokio::spawn(async move {
                flights
                    .get("k", counted(&calls, "v", Duration::from_millis(100)))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let second = {
            let (flights, calls) = (flights.clone(), calls.clone());
            tokio::spawn(
                async move { flights.get("k", counted(&calls, "x", Duration::ZERO)).await },
            )
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        first.abort();
        assert_eq!(second.await.unwrap().unwrap().expose(), b"v");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn finished_reads_are_bounded_in_count_and_bytes() {
        let mut flights = HashMap::new();
        let now = Instant::now();
        for i in 0..(MAX_ENTRIES + 10) {
            let read: Read = futures::future::ready(Ok(SecretValue::from("v")))
                .boxed()
                .shared();
            // Finish it so that peek() sees the value.
            let _ = read.clone().now_or_never();
            flights.insert(
                i,
                Flight {
                    started: SystemTime::now(),
                    started_at: now + Duration::from_millis(i as u64),
                    read,
                    bytes: 1,
                },
            );
        }
        prune(&mut flights);
        assert_eq!(flights.len(), MAX_ENTRIES);
        assert!(!flights.contains_key(&0), "the oldest went first");

        let big = MAX_BYTES / 2 + 1;
        let mut flights = HashMap::new();
        for i in 0..3usize {
            let read: Read = futures::future::ready(Ok(SecretValue::from("v")))
                .boxed()
                .shared();
            let _ = read.clone().now_or_never();
            flights.insert(
                i,
                Flight {
                    started: SystemTime::now(),
                    started_at: now + Duration::from_millis(i as u64),
                    read,
                    bytes: big,
                },
            );
        }
        prune(&mut flights);
        assert_eq!(flights.len(), 1);
        assert!(flights.contains_key(&2));
    }

    #[test]
    fn debug_shows_no_key_or_value() {
        let flights = Flights::<String>::default();
        assert_eq!(format!("{flights:?}"), "Flights { entries: 0 }");
    }
}
