//! `AlertMonitor`: proactive alerts (CONTRACT §5 `alert.triggered`).
//!
//! It watches `case.created` on the event bus and keeps a sliding window of recent cases per
//! category/subcategory and per product. When a key reaches the threshold within the window,
//! and is not cooling down from an earlier alert, it records an `alert.triggered` event in the
//! outbox (so it is delivered like any event) and publishes it on the bus (rooms, ops). Windows
//! use event timestamps, which come from the injected clock. Nodes sharing a store count into
//! shared [`windows`], so an alert covers the cases of every node, and is raised once.

pub mod windows;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::bus::EventBus;
use crate::cluster::Cluster;
use crate::domain::{Event, EventKind};
use crate::store::{SharedStore, StoreError};
use crate::telemetry::ActorMetrics;
use windows::{Rule, Seen, Windows};

/// Alert thresholds.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSettings {
    pub enabled: bool,
    /// Cases of one key within `window` that raise an alert.
    pub threshold: usize,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// After an alert, the same key stays quiet this long.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
}

/// Messages of the monitor.
#[derive(Debug)]
pub enum AlertMsg {
    /// `case.created` events from the bus, in order (as many as were waiting).
    Observe(Vec<Arc<Event>>),
}

/// Created cases observed at once at most (one round trip to shared windows).
const BATCH: usize = 256;
/// How long the monitor gathers cases for one pass over shared windows.
const GATHER: Duration = Duration::from_millis(5);

/// The monitor actor type.
pub struct AlertMonitor;

/// Start arguments.
pub struct AlertArgs {
    pub settings: AlertSettings,
    pub store: SharedStore,
    /// Where the windows live: this node, or the nodes sharing the store.
    pub cluster: Cluster,
    pub bus: EventBus,
    pub metrics: ActorMetrics,
}

/// Sliding windows and cool-downs per key.
pub struct AlertState {
    args: AlertArgs,
    windows: Box<dyn Windows>,
}

impl AlertMonitor {
    /// Spawns the monitor and a task feeding it `case.created` events from the bus.
    pub async fn start(args: AlertArgs) -> Result<ActorRef<AlertMsg>, ractor::SpawnErr> {
        let mut events = args.bus.subscribe();
        let metrics = args.metrics.clone();
        // Shared windows cost a round trip per pass: gather a few milliseconds' worth.
        let gather = if args.cluster.is_shared() {
            GATHER
        } else {
            Duration::ZERO
        };
        let (monitor, _) = Actor::spawn(None, AlertMonitor, args).await?;
        metrics.spawned(&"alert-monitor");
        let target = monitor.clone();
        tokio::spawn(async move {
            loop {
                // Everything on the bus by then goes in one message, so a burst of intake
                // costs one pass over the windows, not one per case.
                let mut created = Vec::new();
                let mut next = Some(events.recv().await);
                let until = tokio::time::Instant::now() + gather;
                while let Some(received) = next.take() {
                    match received {
                        Ok(batch) => created.extend(
                            batch
                                .iter()
                                .filter(|e| e.event == EventKind::CaseCreated)
                                .cloned(),
                        ),
                        Err(RecvError::Lagged(n)) => {
                            tracing::warn!(missed = n, "alert monitor lagged behind the event bus");
                        }
                        Err(RecvError::Closed) => return,
                    }
                    if created.len() < BATCH {
                        next = tokio::time::timeout_at(until, events.recv()).await.ok();
                    }
                }
                if created.is_empty() {
                    continue;
                }
                metrics.queued();
                if target.cast(AlertMsg::Observe(created)).is_err() {
                    return;
                }
            }
        });
        Ok(monitor)
    }
}

impl Actor for AlertMonitor {
    type Msg = AlertMsg;
    type State = AlertState;
    type Arguments = AlertArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<AlertMsg>,
        args: AlertArgs,
    ) -> Result<AlertState, ActorProcessingErr> {
        let windows = windows::for_cluster(&args.cluster);
        Ok(AlertState { args, windows })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<AlertMsg>,
        state: &mut AlertState,
    ) -> Result<(), ActorProcessingErr> {
        state.args.metrics.stopped(&"alert-monitor");
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<AlertMsg>,
        AlertMsg::Observe(events): AlertMsg,
        state: &mut AlertState,
    ) -> Result<(), ActorProcessingErr> {
        let started = Instant::now();
        state.args.metrics.mailbox.dec();
        if state.args.settings.enabled {
            match state.observe(&events).await {
                Ok(alerts) => {
                    for alert in alerts {
                        // Off the monitor: the next batches are not held up by the retries.
                        tokio::spawn(record(
                            state.args.store.clone(),
                            state.args.bus.clone(),
                            alert,
                        ));
                    }
                }
                // Counting is best effort: a store away for a moment costs these cases' counts.
                Err(e) => tracing::warn!(error = %e, "alert windows unavailable"),
            }
        }
        state.args.metrics.handled(started.elapsed());
        Ok(())
    }
}

/// How often recording an alert is tried: its window's cool-down has started already, so an
/// alert not recorded would be silenced for the whole cool-down.
const RECORD_ATTEMPTS: u32 = 5;

/// Records `alert` in the outbox and publishes it, retrying a store that is briefly away.
async fn record(store: SharedStore, bus: EventBus, alert: Event) {
    let mut wait = Duration::from_millis(50);
    for attempt in 1..=RECORD_ATTEMPTS {
        match store.append_events(vec![alert.clone()]).await {
            Ok(()) => {
                bus.publish([alert]);
                return;
            }
            Err(e) if attempt == RECORD_ATTEMPTS => {
                tracing::error!(error = %e, "recording alert.triggered failed; alert lost")
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt, "recording alert.triggered failed; retrying");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
    }
}

impl AlertState {
    /// Adds created cases to their windows; returns the alerts they raise.
    async fn observe(&mut self, events: &[Arc<Event>]) -> Result<Vec<Event>, StoreError> {
        let mut seen = Vec::new();
        let mut labels = Vec::new();
        for event in events {
            let data = &event.data;
            let case_id = data["case_id"].as_str().unwrap_or_default().to_string();
            let category = data["category"].as_str();
            let subcategory = data["subcategory"].as_str();
            if let (Some(c), Some(s)) = (category, subcategory) {
                labels.push((format!("{c}/{s}"), event.timestamp));
                seen.push(Seen {
                    key: format!("category:{c}/{s}"),
                    case_id: case_id.clone(),
                    at: event.timestamp,
                });
            }
            if let Some(p) = data["product"].as_str().filter(|p| !p.is_empty()) {
                labels.push((format!("product {p}"), event.timestamp));
                seen.push(Seen {
                    key: format!("product:{p}"),
                    case_id,
                    at: event.timestamp,
                });
            }
        }
        let settings = &self.args.settings;
        let rule = Rule {
            threshold: settings.threshold,
            window: settings.window,
            cooldown: settings.cooldown,
        };
        let raised = self.windows.observe(&seen, rule).await?;
        let minutes = settings.window.as_secs().div_ceil(60);
        Ok(raised
            .into_iter()
            .map(|(i, case_ids)| {
                let (label, at) = &labels[i];
                Event::new(
                    EventKind::AlertTriggered,
                    "alerts",
                    *at,
                    json!({
                        "alert_id": format!("alt_{}", ulid::Ulid::new()),
                        "severity": if case_ids.len() >= 2 * settings.threshold { "critical" } else { "warning" },
                        "description": format!(
                            "{} cases of {label} within {minutes} minutes",
                            case_ids.len()
                        ),
                        "key": seen[i].key,
                        "count": case_ids.len(),
                        "window_minutes": minutes,
                        "case_ids": case_ids,
                    }),
                )
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn created(at: DateTime<Utc>, sub: &str, product: Option<&str>) -> Arc<Event> {
        Arc::new(Event::new(
            EventKind::CaseCreated,
            "w",
            at,
            json!({"case_id": uuid::Uuid::new_v4(), "category": "configuration",
                   "subcategory": sub, "product": product}),
        ))
    }

    fn state(threshold: usize) -> AlertState {
        let dir = tempfile::TempDir::new().unwrap();
        let telemetry = crate::telemetry::Telemetry::new();
        AlertState {
            args: AlertArgs {
                settings: AlertSettings {
                    enabled: true,
                    threshold,
                    window: Duration::from_secs(600),
                    cooldown: Duration::from_secs(600),
                },
                store: crate::store::EmbeddedStore::open(dir.path(), false).unwrap(),
                cluster: Cluster::single(),
                bus: EventBus::new(),
                metrics: telemetry.actor("alert_monitor"),
            },
            windows: Box::new(windows::Local::default()),
        }
    }

    async fn observe(s: &mut AlertState, event: Arc<Event>) -> Vec<Event> {
        s.observe(&[event]).await.unwrap()
    }

    #[tokio::test]
    async fn threshold_window_and_cooldown() {
        let mut s = state(5);
        let t0 = Utc::now();
        let min = chrono::Duration::minutes(1);
        let mut raised = 0;
        for i in 0..4 {
            raised += observe(&mut s, created(t0 + min * i, "ssl", None))
                .await
                .len();
        }
        assert_eq!(raised, 0);
        let alerts = observe(&mut s, created(t0 + min * 4, "ssl", None)).await;
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].data["count"], json!(5));
        assert_eq!(alerts[0].data["severity"], json!("warning"));
        assert_eq!(alerts[0].data["case_ids"].as_array().unwrap().len(), 5);
        assert_eq!(
            alerts[0].data["description"],
            json!("5 cases of configuration/ssl within 10 minutes")
        );
        // Inside the cool-down: nothing more.
        assert!(
            observe(&mut s, created(t0 + min * 5, "ssl", None))
                .await
                .is_empty()
        );
        // Another key is independent.
        assert!(
            observe(&mut s, created(t0 + min * 5, "dns", None))
                .await
                .is_empty()
        );
        // Spread out beyond the window: old cases fall out, no alert.
        let mut s = state(3);
        for i in 0..6 {
            assert!(
                observe(&mut s, created(t0 + min * (i * 6), "ssl", None))
                    .await
                    .is_empty()
            );
        }
        // Product keys alert too; a batch raises what its cases raise.
        let mut s = state(2);
        let alerts = s
            .observe(&[
                created(t0, "a", Some("portal")),
                created(t0, "b", Some("portal")),
            ])
            .await
            .unwrap();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].data["key"], json!("product:portal"));
    }
}
