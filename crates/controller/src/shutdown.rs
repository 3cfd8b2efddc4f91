//! Bounded graceful shutdown. kube-runtime's graceful shutdown waits for in-flight reconciles,
//! and waits forever when a controller's cache never became ready (its runner holds the queue
//! until then); every controller here is also cut off a fixed grace period after shutdown.

use std::future::Future;
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

/// How long in-flight work may continue after shutdown was asked for before it is cancelled.
pub const GRACE: Duration = Duration::from_secs(10);

/// A shutdown signal that several controllers can wait on.
pub type Signal = Shared<BoxFuture<'static, ()>>;

/// Makes `shutdown` shareable between controllers.
pub fn signal(shutdown: impl Future<Output = ()> + Send + 'static) -> Signal {
    shutdown.boxed().shared()
}

/// Completes `grace` after `shutdown` did: the point where a controller stops regardless.
pub async fn deadline(shutdown: Signal, what: &'static str, grace: Duration) {
    shutdown.await;
    tokio::time::sleep(grace).await;
    tracing::warn!(
        controller = what,
        "in-flight work did not finish within the shutdown grace period; cancelling it"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test(start_paused = true)]
    async fn a_stream_that_never_ends_is_cut_off_after_the_grace_period() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let shutdown = signal(async move {
            let _ = rx.await;
        });
        let forever = futures::stream::pending::<()>().take_until(deadline(
            shutdown,
            "test",
            Duration::from_secs(3),
        ));
        let started = tokio::time::Instant::now();
        tx.send(()).expect("send");
        assert_eq!(forever.count().await, 0);
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }
}
