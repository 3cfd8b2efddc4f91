//! Readiness, as `/readyz` reports it: true once every cache the running controllers watch has
//! received its first complete list, false before that and again from the moment shutdown
//! begins. Each controller registers its caches when its future is created (before the process
//! answers `/readyz`) and marks each one when its watch says the first list is complete.

use std::sync::{Arc, Mutex};

use kube::runtime::watcher;

/// The readiness of the whole process: a set of components, each ready or not yet.
#[derive(Clone, Default)]
pub struct Readiness {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// Every registered component: its name and whether it is ready.
    components: Vec<(String, bool)>,
    /// Shutdown has begun: never ready again.
    stopping: bool,
}

impl State {
    fn ready(&self) -> bool {
        !self.stopping && self.components.iter().all(|(_, ready)| *ready)
    }
}

impl Readiness {
    /// Registers a component that keeps the process not ready until its [`Mark`] is set.
    /// Register a component's parts before marking the component itself, so that readiness
    /// never shows between the two.
    pub fn register(&self, name: impl Into<String>) -> Mark {
        let mut state = self.state.lock().expect("readiness lock");
        state.components.push((name.into(), false));
        Mark {
            state: self.state.clone(),
            index: state.components.len() - 1,
        }
    }

    /// Whether every registered component is ready and shutdown has not begun.
    pub fn is_ready(&self) -> bool {
        self.state.lock().expect("readiness lock").ready()
    }

    /// The names of the components not ready yet, in registration order.
    pub fn pending(&self) -> Vec<String> {
        let state = self.state.lock().expect("readiness lock");
        state
            .components
            .iter()
            .filter(|(_, ready)| !ready)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Shutdown has begun: not ready from now on, whatever the components say.
    pub fn stop(&self) {
        self.state.lock().expect("readiness lock").stopping = true;
    }

    /// Whether shutdown has begun.
    pub fn stopping(&self) -> bool {
        self.state.lock().expect("readiness lock").stopping
    }
}

/// Marks one registered component ready (once; later calls change nothing).
pub struct Mark {
    state: Arc<Mutex<State>>,
    index: usize,
}

impl Mark {
    /// The component is ready (its cache has received its first complete list).
    pub fn ready(&self) {
        let mut state = self.state.lock().expect("readiness lock");
        let (name, ready) = &mut state.components[self.index];
        if *ready {
            return;
        }
        *ready = true;
        tracing::debug!(component = %name, "cache filled");
        if state.ready() {
            tracing::info!("ready: every cache has received its first complete list");
        }
    }

    /// A watch-event inspector (for `inspect_ok`) that marks the component ready when the
    /// watch's first list is complete (`InitDone`, emitted after a reflector stored the list).
    pub fn on_first_list<K>(self) -> impl FnMut(&watcher::Event<K>) {
        move |event| {
            if matches!(event, watcher::Event::InitDone) {
                self.ready();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_once_every_component_is_and_never_again_after_stop() {
        let readiness = Readiness::default();
        assert!(readiness.is_ready(), "nothing to wait for");
        let es = readiness.register("ExternalSecret");
        let secrets = readiness.register("Secret");
        assert!(!readiness.is_ready());
        es.ready();
        es.ready();
        assert!(!readiness.is_ready());
        assert_eq!(readiness.pending(), vec!["Secret"]);
        secrets.ready();
        assert!(readiness.is_ready());
        assert!(readiness.pending().is_empty());
        readiness.stop();
        assert!(readiness.stopping());
        assert!(
            !readiness.is_ready(),
            "not ready from the start of shutdown"
        );
    }

    #[test]
    fn a_part_registered_before_its_whole_is_marked_keeps_it_not_ready() {
        let readiness = Readiness::default();
        let reload = readiness.register("reload");
        let deployments = readiness.register("reload Deployment");
        reload.ready();
        assert!(!readiness.is_ready());
        let mut inspect = deployments.on_first_list::<()>();
        inspect(&watcher::Event::Init);
        inspect(&watcher::Event::InitApply(()));
        assert!(!readiness.is_ready(), "the list is not complete yet");
        inspect(&watcher::Event::InitDone);
        assert!(readiness.is_ready());
    }
}
