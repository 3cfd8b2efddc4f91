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

    /// Takes a rollout slot in `namespace` at `now`: the slot when one is free (and now taken),
    /// else how long until one frees up.
    pub fn take(&self, namespace: &str, now: Instant) -> Result<Instant, Duration> {
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
            return Ok(now);
        }
        let oldest = *recent.front().expect("a full window is not empty");
        Err(WINDOW.saturating_sub(now.saturating_duration_since(oldest))
            + Duration::from_millis(50))
    }

    /// Gives back a slot [`RolloutLimit::take`] gave, for a rollout that did not happen.
    pub fn give_back(&self, namespace: &str, slot: Instant) {
        let mut all = self.recent.lock().expect("rollout limit lock");
        if let Some(recent) = all.get_mut(namespace)
            && let Some(i) = recent.iter().position(|t| *t == slot)
        {
            recent.remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_namespace_has_its_own_window() {
        let limit = RolloutLimit::new(2);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(limit.take("a", t0).is_ok());
        assert!(limit.take("a", at(10)).is_ok());
        // a is full until its first rollout is a minute old; b is not limited by a.
        let wait = limit.take("a", at(20)).expect_err("a is full");
        assert_eq!(wait, Duration::from_secs(40) + Duration::from_millis(50));
        assert!(limit.take("b", at(20)).is_ok());
        assert!(limit.take("b", at(21)).is_ok());
        assert!(limit.take("b", at(22)).is_err());
        // A refused attempt takes no slot: a frees up at t0 + 60 s.
        assert!(limit.take("a", at(60)).is_ok());
        assert!(limit.take("a", at(61)).is_err());
        assert!(limit.take("a", at(70)).is_ok());
    }

    #[test]
    fn a_slot_given_back_is_free_again() {
        let limit = RolloutLimit::new(1);
        let t0 = Instant::now();
        let slot = limit.take("a", t0).expect("free");
        assert!(limit.take("a", t0 + Duration::from_secs(1)).is_err());
        limit.give_back("a", slot);
        assert!(limit.take("a", t0 + Duration::from_secs(2)).is_ok());
    }
}
