//! Waiting for a condition with a timeout, polling with a short backoff instead of fixed sleeps.

use std::future::Future;
use std::time::Duration;

use tokio::time::{Instant, sleep};

/// The default time a test waits for the cluster or a server to reach a state.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Polls `probe` until it returns `Some`, starting at 20 ms between tries and backing off to
/// 500 ms; panics with `what` when `timeout` passes first.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(20);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        sleep(delay.min(deadline.saturating_duration_since(Instant::now()))).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}
