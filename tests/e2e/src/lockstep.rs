//! Running Lockstep's controllers inside a test, scoped to the test's namespace, so parallel
//! tests never act on each other's objects. Stopping it (drop) stops its controllers.

use std::sync::Arc;

use kube::Client;
use lockstep_controller::{Config, Context};
use tokio::sync::watch;

/// A Lockstep instance running on the test's runtime.
pub struct Lockstep {
    /// The shared context (metrics, config) of the running controllers.
    pub ctx: Arc<Context>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Lockstep {
    /// Starts the ExternalSecret and store controllers for `namespace` only.
    pub fn start(client: Client, namespace: &str) -> Self {
        Self::start_with(
            client,
            Config {
                namespace: Some(namespace.to_owned()),
                cluster_stores: false,
                ..Config::default()
            },
        )
    }

    /// Starts the controllers with `config` (the reload controller too when
    /// `config.reload.enabled`).
    pub fn start_with(client: Client, config: Config) -> Self {
        let ctx = Arc::new(Context::new(client, config));
        let (stop, rx) = watch::channel(false);
        let stopped = move || {
            let mut rx = rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let mut tasks = vec![
            tokio::spawn(lockstep_controller::externalsecret::run(
                ctx.clone(),
                stopped(),
            )),
            tokio::spawn(lockstep_controller::secretstore::run(
                ctx.clone(),
                stopped(),
            )),
        ];
        if ctx.config.reload.enabled {
            tasks.push(tokio::spawn(lockstep_controller::reload::run(
                ctx.clone(),
                stopped(),
            )));
        }
        Self { ctx, stop, tasks }
    }

    /// Starts only the reload controller with `config` (its `namespace` may then be `None`
    /// without the ExternalSecret controllers acting on other tests' objects).
    pub fn start_reload_only(client: Client, config: Config) -> Self {
        let ctx = Arc::new(Context::new(client, config));
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(lockstep_controller::reload::run(ctx.clone(), async move {
            let mut rx = rx;
            let _ = rx.wait_for(|s| *s).await;
        }));
        Self {
            ctx,
            stop,
            tasks: vec![task],
        }
    }

    /// Stops the controllers and waits for them to finish; they must do so within their
    /// shutdown grace period (a hang here is a failure, never a stuck test run).
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        let bound = lockstep_controller::shutdown::GRACE + std::time::Duration::from_secs(10);
        for t in self.tasks.drain(..) {
            if tokio::time::timeout(bound, t).await.is_err() {
                panic!("Lockstep's controllers did not stop within {bound:?} of shutdown");
            }
        }
    }

    /// The value of a metric line (`name{labels} value`) whose text starts with `prefix`,
    /// summed over matching lines.
    pub fn metric_sum(&self, prefix: &str) -> f64 {
        self.ctx
            .metrics
            .encode()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Lockstep {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}
