//! Live counters of the case actors, read by health and the ops endpoints.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// Counters shared by every case supervisor and actor.
#[derive(Debug, Default)]
pub struct CaseStats {
    live: AtomicU64,
    spawned: AtomicU64,
    stopped: AtomicU64,
    restarts: AtomicU64,
    failures: AtomicU64,
    passivations: AtomicU64,
    messages: AtomicU64,
    handling_micros: AtomicU64,
}

/// A point-in-time copy of [`CaseStats`].
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct CaseStatsSnapshot {
    pub live: u64,
    pub spawned: u64,
    pub stopped: u64,
    pub restarts: u64,
    pub failures: u64,
    pub passivations: u64,
    pub messages: u64,
    pub handling_micros_total: u64,
}

impl CaseStats {
    pub(crate) fn spawned(&self) {
        self.live.fetch_add(1, Ordering::Relaxed);
        self.spawned.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stopped(&self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
        self.stopped.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn restarted(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn passivated(&self) {
        self.passivations.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn message(&self) {
        self.messages.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn handled(&self, took: Duration) {
        self.handling_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> CaseStatsSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CaseStatsSnapshot {
            live: get(&self.live),
            spawned: get(&self.spawned),
            stopped: get(&self.stopped),
            restarts: get(&self.restarts),
            failures: get(&self.failures),
            passivations: get(&self.passivations),
            messages: get(&self.messages),
            handling_micros_total: get(&self.handling_micros),
        }
    }
}
