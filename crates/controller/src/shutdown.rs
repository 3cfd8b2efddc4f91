//! Bounded graceful shutdown. kube-runtime's graceful shutdown waits for in-flight reconciles,
//! and waits forever when a controller's cache never became ready (its runner holds the queue
//! until then); every controller here is also cut off a fixed grace period after shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::sync::watch;

/// How long in-flight work may continue after shutdown was asked for before it is cancelled.
pub const GRACE: Duration = Duration::from_secs(10);

/// A shutdown signal that several controllers can wait on.
pub type Signal = Shared<BoxFuture<'static, ()>>;

/// Makes `shutdown` shareable between controllers.
pub fn signal(shutdown: impl Future<Output = ()> + Send + 'static) -> Signal {
    shutdown.boxed().shared()
}

/// Writes made of several requests that must not be cut between them (a Job deleted and
/// created again with a new template). Each runs in its own task, so the cancellation of the
/// reconcile that started it at the grace period does not cancel it, and the process waits for
/// them (bounded) before it exits.
#[derive(Clone, Debug)]
pub struct Writes {
    in_flight: Arc<watch::Sender<usize>>,
}

impl Default for Writes {
    fn default() -> Self {
        Self {
            in_flight: Arc::new(watch::Sender::new(0)),
        }
    }
}

/// Counts a write out of [`Writes`] when its task ends, however it ends.
struct InFlight(Arc<watch::Sender<usize>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

impl Writes {
    /// Runs `write` to completion in its own task and returns its result; dropping the returned
    /// future does not stop the write.
    pub async fn run<T: Send + 'static>(
        &self,
        write: impl Future<Output = T> + Send + 'static,
    ) -> T {
        self.in_flight.send_modify(|n| *n += 1);
        let guard = InFlight(self.in_flight.clone());
        let task = tokio::spawn(async move {
            let _guard = guard;
            write.await
        });
        match task.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Only a runtime that shuts down cancels the task: nothing is left to return to.
            Err(_) => futures::future::pending().await,
        }
    }

    /// Completes once no such write is in flight.
    pub async fn finished(&self) {
        let _ = self.in_flight.subscribe().wait_for(|n| *n == 0).await;
    }
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

    #[tokio::test(start_paused = true)]
    async fn a_write_outlives_the_cancelled_reconcile_and_is_waited_for() {
        let writes = Writes::default();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let write = writes.run(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let _ = done_tx.send(());
        });
        // The reconcile is cancelled a second in, halfway through the write.
        assert!(
            tokio::time::timeout(Duration::from_secs(1), write)
                .await
                .is_err()
        );
        let started = tokio::time::Instant::now();
        writes.finished().await;
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        assert!(done_rx.await.is_ok(), "the write ran to its end");
        assert_eq!(writes.run(async { 7 }).await, 7);
        writes.finished().await;
    }
}
