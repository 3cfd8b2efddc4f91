//! The per-namespace rollout rate limit: at most so many rollouts in a namespace in any minute,
//! so that something rewriting a Secret in a loop cannot make thousands of ReplicaSets
//! (Reloader issue #1183), while other namespaces roll as usual.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window the limit counts rollouts over.
const WINDOW: Duration = Duration::from_secs(60);

/// When each namespace's recent rollouts happened.
pub struct RolloutLimit {
    per_minute: usize,
    recent: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl RolloutLimit {
    /// At most `per_minute` rollouts in a namespace in any 60 s.
    pub fn new(per_minute: u32) -> Self {
        RolloutLimit {
            per_minute: per_minute as usize,
            recent: Mutex::default(),
        }
    }

    /// Takes a rollout slot in `namespace` at `now`: `None` when one is free (and now taken),
    /// else how long until one frees up.
    pub fn take(&self, namespace: &str, now: Instant) -> Option<Duration> {
        let mut all = self.recent.lock().expect("rollout limit lock");
        let recent = all.entry(namespace.to_owned()).or_default();
        while recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
        {
            recent.pop_front();
        }
        if recent.len() < self.per_minute {
            recent.push_back(now);
            return None;
        }
        let oldest = *recent.front().expect("a full window is not empty");
        Some(
            WINDOW.saturating_sub(now.saturating_duration_since(oldest))
                + Duration::from_millis(50),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_namespace_has_its_own_window() {
        let limit = RolloutLimit::new(2);
        let t0 = Instant::now();
        assert_eq!(limit.take("a", t0), None);
        assert_eq!(limit.take("a", t0 + Duration::from_secs(10)), None);
        // a is full until its first rollout is a minute old; b is not limited by a.
        let wait = limit
            .take("a", t0 + Duration::from_secs(20))
            .expect("a is full");
        assert_eq!(wait, Duration::from_secs(40) + Duration::from_millis(50));
        assert_eq!(limit.take("b", t0 + Duration::from_secs(20)), None);
        assert_eq!(limit.take("b", t0 + Duration::from_secs(21)), None);
        assert!(limit.take("b", t0 + Duration::from_secs(22)).is_some());
        // A refused attempt takes no slot: a frees up at t0 + 60 s.
        assert_eq!(limit.take("a", t0 + Duration::from_secs(60)), None);
        assert!(limit.take("a", t0 + Duration::from_secs(61)).is_some());
        assert_eq!(limit.take("a", t0 + Duration::from_secs(70)), None);
    }
}
