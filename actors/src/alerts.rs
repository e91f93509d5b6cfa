//! `AlertMonitor`: proactive alerts (CONTRACT §5 `alert.triggered`).
//!
//! It watches `case.created` on the event bus and keeps a sliding window of recent cases per
//! category/subcategory and per product. When a key reaches the threshold within the window,
//! and is not cooling down from an earlier alert, it records an `alert.triggered` event in the
//! outbox (so it is delivered like any event) and publishes it on the bus (rooms, ops). Windows
//! use event timestamps, which come from the injected clock.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::bus::EventBus;
use crate::domain::{Event, EventKind};
use crate::store::SharedStore;
use crate::telemetry::ActorMetrics;

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
    /// A committed event from the bus.
    Observe(Arc<Event>),
}

/// The monitor actor type.
pub struct AlertMonitor;

/// Start arguments.
pub struct AlertArgs {
    pub settings: AlertSettings,
    pub store: SharedStore,
    pub bus: EventBus,
    pub metrics: ActorMetrics,
}

/// Sliding windows and cool-downs per key.
pub struct AlertState {
    args: AlertArgs,
    windows: HashMap<String, VecDeque<(DateTime<Utc>, String)>>,
    quiet_until: HashMap<String, DateTime<Utc>>,
}

impl AlertMonitor {
    /// Spawns the monitor and a task feeding it `case.created` events from the bus.
    pub async fn start(args: AlertArgs) -> Result<ActorRef<AlertMsg>, ractor::SpawnErr> {
        let mut events = args.bus.subscribe();
        let metrics = args.metrics.clone();
        let (monitor, _) = Actor::spawn(None, AlertMonitor, args).await?;
        metrics.spawned(&"alert-monitor");
        let target = monitor.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(batch) => {
                        for event in batch.iter().filter(|e| e.event == EventKind::CaseCreated) {
                            metrics.queued();
                            if target.cast(AlertMsg::Observe(event.clone())).is_err() {
                                return;
                            }
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "alert monitor lagged behind the event bus");
                    }
                    Err(RecvError::Closed) => return,
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
        Ok(AlertState {
            args,
            windows: HashMap::new(),
            quiet_until: HashMap::new(),
        })
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
        AlertMsg::Observe(event): AlertMsg,
        state: &mut AlertState,
    ) -> Result<(), ActorProcessingErr> {
        let started = Instant::now();
        state.args.metrics.mailbox.dec();
        if state.args.settings.enabled {
            for alert in state.observe(&event) {
                match state.args.store.append_events(vec![alert.clone()]).await {
                    Ok(()) => state.args.bus.publish([alert]),
                    Err(e) => tracing::error!(error = %e, "recording alert.triggered failed"),
                }
            }
        }
        state.args.metrics.handled(started.elapsed());
        Ok(())
    }
}

impl AlertState {
    /// Adds a created case to its windows; returns the alerts it raises.
    fn observe(&mut self, event: &Event) -> Vec<Event> {
        let data = &event.data;
        let case_id = data["case_id"].as_str().unwrap_or_default().to_string();
        let mut keys = Vec::new();
        if let (Some(c), Some(s)) = (data["category"].as_str(), data["subcategory"].as_str()) {
            keys.push((format!("category:{c}/{s}"), format!("{c}/{s}")));
        }
        if let Some(p) = data["product"].as_str().filter(|p| !p.is_empty()) {
            keys.push((format!("product:{p}"), format!("product {p}")));
        }
        let now = event.timestamp;
        let settings = &self.args.settings;
        let window = chrono::Duration::from_std(settings.window).unwrap_or(chrono::Duration::MAX);
        let mut alerts = Vec::new();
        for (key, label) in keys {
            let recent = self.windows.entry(key.clone()).or_default();
            recent.push_back((now, case_id.clone()));
            while recent.front().is_some_and(|(at, _)| now - *at >= window) {
                recent.pop_front();
            }
            let quiet = self.quiet_until.get(&key).is_some_and(|until| now < *until);
            if recent.len() < settings.threshold || quiet {
                continue;
            }
            let cooldown =
                chrono::Duration::from_std(settings.cooldown).unwrap_or(chrono::Duration::MAX);
            self.quiet_until.insert(key.clone(), now + cooldown);
            let minutes = settings.window.as_secs().div_ceil(60);
            let case_ids: Vec<&String> = recent.iter().map(|(_, id)| id).collect();
            alerts.push(Event::new(
                EventKind::AlertTriggered,
                "alerts",
                now,
                json!({
                    "alert_id": format!("alt_{}", ulid::Ulid::new()),
                    "severity": if recent.len() >= 2 * settings.threshold { "critical" } else { "warning" },
                    "description": format!(
                        "{} cases of {label} within {minutes} minutes",
                        recent.len()
                    ),
                    "key": key,
                    "count": recent.len(),
                    "window_minutes": minutes,
                    "case_ids": case_ids,
                }),
            ));
        }
        // Keys whose window emptied long ago would otherwise accumulate.
        self.windows.retain(|_, w| !w.is_empty());
        alerts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(at: DateTime<Utc>, sub: &str, product: Option<&str>) -> Event {
        Event::new(
            EventKind::CaseCreated,
            "w",
            at,
            json!({"case_id": uuid::Uuid::new_v4(), "category": "configuration",
                   "subcategory": sub, "product": product}),
        )
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
                bus: EventBus::new(),
                metrics: telemetry.actor("alert_monitor"),
            },
            windows: HashMap::new(),
            quiet_until: HashMap::new(),
        }
    }

    #[tokio::test]
    async fn threshold_window_and_cooldown() {
        let mut s = state(5);
        let t0 = Utc::now();
        let min = chrono::Duration::minutes(1);
        let mut raised = 0;
        for i in 0..4 {
            raised += s.observe(&created(t0 + min * i, "ssl", None)).len();
        }
        assert_eq!(raised, 0);
        let alerts = s.observe(&created(t0 + min * 4, "ssl", None));
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].data["count"], json!(5));
        assert_eq!(alerts[0].data["severity"], json!("warning"));
        // Inside the cool-down: nothing more.
        assert!(s.observe(&created(t0 + min * 5, "ssl", None)).is_empty());
        // Another key is independent.
        assert!(s.observe(&created(t0 + min * 5, "dns", None)).is_empty());
        // Spread out beyond the window: old cases fall out, no alert.
        let mut s = state(3);
        for i in 0..6 {
            assert!(
                s.observe(&created(t0 + min * (i * 6), "ssl", None))
                    .is_empty()
            );
        }
        // Product keys alert too.
        let mut s = state(2);
        s.observe(&created(t0, "a", Some("portal")));
        let alerts = s.observe(&created(t0, "b", Some("portal")));
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].data["key"], json!("product:portal"));
    }
}
