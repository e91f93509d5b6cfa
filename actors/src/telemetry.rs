//! One metrics registry for the whole process (Prometheus text via `prometheus-client`), plus
//! the stream of actor lifecycle events. `/metrics`, `/ops/actors`, `/ops/stream`, health and
//! `casehub tail` all read from here.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::{Mutex, RwLock};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// Label of every per-actor-kind metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

/// Label of event counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabel {
    pub event: String,
}

/// Label of case transitions.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub to: String,
}

/// Label of delivery attempts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

/// Label of store latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets from 50 µs to ~1.6 s.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// A lifecycle event of one actor.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LifecycleEvent {
    pub kind: &'static str,
    /// `spawn`, `stop`, `restart`, `passivate` or `fail`.
    pub event: &'static str,
    pub id: String,
    pub at: DateTime<Utc>,
}

/// Lifecycle events kept for slow stream readers before they lag.
const LIFECYCLE_CAPACITY: usize = 1024;

struct ActorFamilies {
    live: Family<KindLabel, Gauge>,
    spawns: Family<KindLabel, Counter>,
    messages: Family<KindLabel, Counter>,
    handling: HistogramFamily<KindLabel>,
    mailbox: Family<KindLabel, Gauge>,
    restarts: Family<KindLabel, Counter>,
    passivations: Family<KindLabel, Counter>,
    failures: Family<KindLabel, Counter>,
}

/// The process's metrics. Share one in an `Arc`.
pub struct Telemetry {
    registry: RwLock<Registry>,
    actors: ActorFamilies,
    kinds: Mutex<BTreeMap<&'static str, ActorMetrics>>,
    store_latency: HistogramFamily<OpLabel>,
    events: Family<EventLabel, Counter>,
    transitions: Family<StatusLabel, Counter>,
    delivery_attempts: Family<OutcomeLabel, Counter>,
    delivery_latency: Histogram,
    lifecycle: broadcast::Sender<LifecycleEvent>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    /// A registry with the actor and store metrics registered under `casehub_`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("casehub");
        let actors = ActorFamilies {
            live: Family::default(),
            spawns: Family::default(),
            messages: Family::default(),
            handling: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            mailbox: Family::default(),
            restarts: Family::default(),
            passivations: Family::default(),
            failures: Family::default(),
        };
        let a = &actors;
        registry.register("actors_live", "Live actors by kind", a.live.clone());
        registry.register("actor_spawns", "Actors spawned by kind", a.spawns.clone());
        registry.register(
            "actor_messages",
            "Messages handled by kind",
            a.messages.clone(),
        );
        registry.register(
            "actor_handling_seconds",
            "Time to handle one message, by kind",
            a.handling.clone(),
        );
        registry.register(
            "actor_mailbox_depth",
            "Messages sent to actors of a kind and not yet handled",
            a.mailbox.clone(),
        );
        registry.register(
            "actor_restarts",
            "Actors restarted after a failure",
            a.restarts.clone(),
        );
        registry.register(
            "actor_passivations",
            "Idle actors stopped to free memory",
            a.passivations.clone(),
        );
        registry.register(
            "actor_failures",
            "Actors that failed (panicked)",
            a.failures.clone(),
        );
        let store_latency: HistogramFamily<OpLabel> =
            Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "store_op_seconds",
            "Store operation latency by operation",
            store_latency.clone(),
        );
        let events: Family<EventLabel, Counter> = Family::default();
        registry.register(
            "events",
            "Events recorded in the outbox, by name",
            events.clone(),
        );
        let transitions: Family<StatusLabel, Counter> = Family::default();
        registry.register(
            "case_transitions",
            "Case status transitions, by the status entered",
            transitions.clone(),
        );
        let delivery_attempts: Family<OutcomeLabel, Counter> = Family::default();
        registry.register(
            "delivery_attempts",
            "Webhook delivery attempts by outcome (delivered, rejected, error, gone)",
            delivery_attempts.clone(),
        );
        let delivery_latency = latency_histogram();
        registry.register(
            "delivery_attempt_seconds",
            "Duration of one webhook delivery attempt",
            delivery_latency.clone(),
        );
        let (lifecycle, _) = broadcast::channel(LIFECYCLE_CAPACITY);
        Telemetry {
            delivery_attempts,
            delivery_latency,
            registry: RwLock::new(registry),
            actors,
            kinds: Mutex::new(BTreeMap::new()),
            store_latency,
            events,
            transitions,
            lifecycle,
        }
    }

    /// Registers another metric (the edge's HTTP metrics, the delivery pool's, …).
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.registry.write().register(name, help, metric);
    }

    /// The metric handles of one actor kind (created on first use).
    pub fn actor(&self, kind: &'static str) -> ActorMetrics {
        let mut kinds = self.kinds.lock();
        kinds
            .entry(kind)
            .or_insert_with(|| {
                let label = KindLabel { kind: kind.into() };
                let a = &self.actors;
                ActorMetrics {
                    kind,
                    live: a.live.get_or_create_owned(&label),
                    spawns: a.spawns.get_or_create_owned(&label),
                    messages: a.messages.get_or_create_owned(&label),
                    handling: a.handling.get_or_create_owned(&label),
                    mailbox: a.mailbox.get_or_create_owned(&label),
                    restarts: a.restarts.get_or_create_owned(&label),
                    passivations: a.passivations.get_or_create_owned(&label),
                    failures: a.failures.get_or_create_owned(&label),
                    handling_micros: Counter::default(),
                    lifecycle: self.lifecycle.clone(),
                }
            })
            .clone()
    }

    /// Records one store operation's latency.
    pub fn store_op(&self, op: &str, took: Duration) {
        self.store_latency
            .get_or_create(&OpLabel { op: op.into() })
            .observe(took.as_secs_f64());
    }

    /// Counts events that were durably recorded.
    pub fn events_recorded(&self, events: &[crate::domain::Event]) {
        for e in events {
            self.events
                .get_or_create(&EventLabel {
                    event: e.event.as_str().into(),
                })
                .inc();
        }
    }

    /// Counts one delivery attempt and its duration.
    pub fn delivery_attempt(&self, outcome: &str, took: Duration) {
        self.delivery_attempts
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
        self.delivery_latency.observe(took.as_secs_f64());
    }

    /// Counts a case entering `status`.
    pub fn transition(&self, status: crate::domain::CaseStatus) {
        self.transitions
            .get_or_create(&StatusLabel {
                to: status.as_str().into(),
            })
            .inc();
    }

    /// Every actor kind's counters now, as `/ops/actors` and the stream show them.
    pub fn snapshot(&self) -> Value {
        let kinds = self.kinds.lock();
        let mut out = serde_json::Map::new();
        for (kind, m) in kinds.iter() {
            out.insert((*kind).to_string(), m.snapshot());
        }
        Value::Object(out)
    }

    /// Lifecycle events from now on.
    pub fn lifecycle(&self) -> broadcast::Receiver<LifecycleEvent> {
        self.lifecycle.subscribe()
    }

    /// The Prometheus text exposition of everything registered.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.read();
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            tracing::error!("encoding metrics failed");
        }
        out
    }
}

/// The metrics of one actor kind. Cheap to clone; every clone updates the same series.
#[derive(Clone)]
pub struct ActorMetrics {
    kind: &'static str,
    pub live: Gauge,
    pub spawns: Counter,
    pub messages: Counter,
    pub handling: Histogram,
    pub mailbox: Gauge,
    pub restarts: Counter,
    pub passivations: Counter,
    pub failures: Counter,
    /// Total handling time, for the JSON snapshot (the histogram does not expose its sum).
    handling_micros: Counter,
    lifecycle: broadcast::Sender<LifecycleEvent>,
}

impl std::fmt::Debug for ActorMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActorMetrics")
            .field("kind", &self.kind)
            .finish()
    }
}

impl ActorMetrics {
    fn emit(&self, event: &'static str, id: &dyn std::fmt::Display) {
        let _ = self.lifecycle.send(LifecycleEvent {
            kind: self.kind,
            event,
            id: id.to_string(),
            at: Utc::now(),
        });
    }

    /// An actor of this kind started.
    pub fn spawned(&self, id: &dyn std::fmt::Display) {
        self.live.inc();
        self.spawns.inc();
        self.emit("spawn", id);
    }

    /// An actor of this kind stopped (for any reason).
    pub fn stopped(&self, id: &dyn std::fmt::Display) {
        self.live.dec();
        self.emit("stop", id);
    }

    /// An actor of this kind failed.
    pub fn failed(&self, id: &dyn std::fmt::Display) {
        self.failures.inc();
        self.emit("fail", id);
    }

    /// A failed actor was restarted.
    pub fn restarted(&self, id: &dyn std::fmt::Display) {
        self.restarts.inc();
        self.emit("restart", id);
    }

    /// An idle actor was passivated.
    pub fn passivated(&self, id: &dyn std::fmt::Display) {
        self.passivations.inc();
        self.emit("passivate", id);
    }

    /// A message was queued for an actor of this kind.
    pub fn queued(&self) {
        self.mailbox.inc();
    }

    /// A message was taken up and handled in `took` (mailbox depth is kept by the sender side).
    pub fn handled(&self, took: Duration) {
        self.messages.inc();
        self.handling.observe(took.as_secs_f64());
        self.handling_micros.inc_by(took.as_micros() as u64);
    }

    /// The counters now.
    pub fn snapshot(&self) -> Value {
        json!({
            "live": self.live.get(),
            "spawns": self.spawns.get(),
            "messages": self.messages.get(),
            "handling_seconds_sum": self.handling_micros.get() as f64 / 1e6,
            "handling_count": self.messages.get(),
            "mailbox": self.mailbox.get(),
            "restarts": self.restarts.get(),
            "passivations": self.passivations.get(),
            "failures": self.failures.get(),
        })
    }
}
