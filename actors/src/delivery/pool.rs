//! The delivery pool: a `DeliveryDispatcher` actor that turns outbox events into durable jobs and
//! hands due jobs to a ractor `factory` of `DeliveryWorker`s.
//!
//! The queue lives in the store; the pool only executes. The dispatcher fans events out to the
//! endpoints subscribed to them (advancing a durable cursor in the same write), then picks due
//! jobs, at most `per_endpoint` in flight per endpoint so one slow endpoint cannot take every
//! worker. A worker makes one attempt, records it and the next due time in the store, and tells
//! the dispatcher it is done. After a restart everything pending is simply due again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ractor::factory::queues::DefaultQueue;
use ractor::factory::routing::QueuerRouting;
use ractor::factory::{
    Factory, FactoryArguments, FactoryMessage, Job, JobOptions, Worker, WorkerBuilder, WorkerId,
};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::endpoint::DeliveryOrdering;
use super::endpoint::{Delay, Endpoint, EndpointStatus, PayloadFormat, RetryPolicy};
use super::job::{Attempt, DeliveryJob, DeliveryState};
use super::retry::next_attempt;
use super::sender::Sender;
use crate::bus::EventBus;
use crate::domain::{Event, EventKind};
use crate::store::SharedStore;
use crate::telemetry::{ActorMetrics, Telemetry};

/// Pool limits and the global retry policy.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub workers: usize,
    pub per_endpoint: usize,
    pub retry_schedule: Vec<Duration>,
    /// How often due jobs are looked for when nothing wakes the dispatcher.
    pub poll_interval: Duration,
    /// Failures in a row that open an endpoint's circuit.
    pub circuit_threshold: u32,
    /// How long an open circuit holds deliveries back before a probe.
    pub circuit_cooldown: Duration,
    /// An endpoint failing without a single success this long is disabled.
    pub disable_after: Duration,
}

/// (endpoint id, msg id)
type JobKey = (String, String);

/// One job for a worker.
#[derive(Debug)]
pub struct Work {
    job: DeliveryJob,
    endpoint: Endpoint,
}

/// Messages of the dispatcher.
#[derive(Debug)]
pub enum DispatchMsg {
    /// Look for new events and due jobs.
    Tick,
    /// A worker finished an attempt: whether it was acknowledged, and whether the job is settled
    /// (delivered or failed for good) rather than waiting for a retry.
    Finished(JobKey, bool, bool),
    /// Queue a `webhook.test` delivery to one endpoint; answers the job.
    Test(
        Box<Endpoint>,
        ractor::RpcReplyPort<Result<DeliveryJob, String>>,
    ),
}

type PoolFactory = ActorRef<FactoryMessage<JobKey, Work>>;

/// The dispatcher actor type.
pub struct DeliveryDispatcher;

/// What the dispatcher and workers share.
#[derive(Clone)]
pub struct PoolContext {
    pub store: SharedStore,
    pub bus: EventBus,
    pub sender: Sender,
    pub settings: PoolSettings,
    pub dispatcher_metrics: ActorMetrics,
    pub worker_metrics: ActorMetrics,
    pub telemetry: Arc<Telemetry>,
}

/// A per-endpoint circuit: open after `circuit_threshold` failures in a row; after the cool-down
/// one probe goes out (half-open) and its outcome closes or reopens it.
#[derive(Debug, Default)]
struct Circuit {
    failures: u32,
    open_until: Option<Instant>,
}

/// An endpoint's `rate_limit` as a GCRA limiter (deliveries per second, burst of one second).
struct Throttle {
    per_second: u32,
    limiter: governor::DefaultDirectRateLimiter,
}

/// Dispatcher state.
pub struct DispatchState {
    ctx: PoolContext,
    factory: PoolFactory,
    in_flight: HashSet<JobKey>,
    per_endpoint: HashMap<String, usize>,
    circuits: HashMap<String, Circuit>,
    throttles: HashMap<String, Throttle>,
    /// FIFO endpoints: the message that owns the endpoint until it is settled (`Some(None)`:
    /// nobody; absent: not yet read back from the store since start).
    fifo_head: HashMap<String, Option<String>>,
}

impl DeliveryDispatcher {
    /// Starts the factory, the dispatcher, a bus listener that wakes it on new events, and a
    /// periodic tick for retries.
    pub async fn start(ctx: PoolContext) -> Result<ActorRef<DispatchMsg>, ractor::SpawnErr> {
        let (dispatcher, _) = Actor::spawn(None, DeliveryDispatcher, ctx.clone()).await?;
        ctx.dispatcher_metrics.spawned(&"delivery-dispatcher");
        let mut events = ctx.bus.subscribe();
        let wake = dispatcher.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(_) | Err(RecvError::Lagged(_)) => {
                        if wake.cast(DispatchMsg::Tick).is_err() {
                            return;
                        }
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
        Ok(dispatcher)
    }
}

struct Builder {
    ctx: PoolContext,
    dispatcher: ActorRef<DispatchMsg>,
}

impl WorkerBuilder<DeliveryWorker, ()> for Builder {
    fn build(&mut self, _wid: WorkerId) -> (DeliveryWorker, ()) {
        (
            DeliveryWorker {
                ctx: self.ctx.clone(),
                dispatcher: self.dispatcher.clone(),
            },
            (),
        )
    }
}

impl Actor for DeliveryDispatcher {
    type Msg = DispatchMsg;
    type State = DispatchState;
    type Arguments = PoolContext;

    async fn pre_start(
        &self,
        myself: ActorRef<DispatchMsg>,
        ctx: PoolContext,
    ) -> Result<DispatchState, ActorProcessingErr> {
        let factory_def = Factory::<
            JobKey,
            Work,
            (),
            DeliveryWorker,
            QueuerRouting<JobKey, Work>,
            DefaultQueue<JobKey, Work>,
        >::default();
        let args = FactoryArguments::builder()
            .worker_builder(Box::new(Builder {
                ctx: ctx.clone(),
                dispatcher: myself.clone(),
            }))
            .queue(Default::default())
            .router(Default::default())
            .num_initial_workers(ctx.settings.workers.max(1))
            .build();
        let (factory, _) = Actor::spawn_linked(None, factory_def, args, myself.get_cell()).await?;
        myself.send_interval(ctx.settings.poll_interval, || DispatchMsg::Tick);
        Ok(DispatchState {
            ctx,
            factory,
            in_flight: HashSet::new(),
            per_endpoint: HashMap::new(),
            circuits: HashMap::new(),
            throttles: HashMap::new(),
            fifo_head: HashMap::new(),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<DispatchMsg>,
        state: &mut DispatchState,
    ) -> Result<(), ActorProcessingErr> {
        state.ctx.dispatcher_metrics.stopped(&"delivery-dispatcher");
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<DispatchMsg>,
        msg: DispatchMsg,
        state: &mut DispatchState,
    ) -> Result<(), ActorProcessingErr> {
        let started = Instant::now();
        // New events arrive with a tick (bus wake-up or timer); a finished attempt only frees
        // capacity, so it needs scheduling but no fan-out.
        let fan_out = matches!(msg, DispatchMsg::Tick);
        match msg {
            DispatchMsg::Finished(key, delivered, settled) => {
                state.in_flight.remove(&key);
                if let Some(n) = state.per_endpoint.get_mut(&key.0) {
                    *n = n.saturating_sub(1);
                }
                state.record_outcome(&key.0, delivered);
                // A FIFO endpoint stays with this message until it is settled.
                if settled && state.fifo_head.get(&key.0) == Some(&Some(key.1.clone())) {
                    state.fifo_head.insert(key.0.clone(), None);
                }
            }
            DispatchMsg::Test(endpoint, reply) => {
                // The dispatcher is the only writer of the fan-out cursor, so the test job is
                // enqueued here, with the cursor unchanged.
                let _ = reply.send(
                    state
                        .enqueue_test(&endpoint)
                        .await
                        .map_err(|e| e.to_string()),
                );
            }
            DispatchMsg::Tick => {}
        }
        // Store trouble is retried on the next tick; nothing is lost, the queue is durable.
        if let Err(e) = state.cycle(fan_out).await {
            tracing::warn!(error = %e, "delivery dispatch cycle failed; retrying on the next tick");
        }
        state.ctx.dispatcher_metrics.handled(started.elapsed());
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<DispatchMsg>,
        event: ractor::SupervisionEvent,
        _state: &mut DispatchState,
    ) -> Result<(), ActorProcessingErr> {
        // The factory supervises its own workers; log anything that reaches us.
        tracing::warn!(event = %event, "delivery factory supervision event");
        Ok(())
    }
}

impl DispatchState {
    async fn cycle(&mut self, fan_out: bool) -> Result<(), crate::store::StoreError> {
        let endpoints: HashMap<String, Endpoint> = self
            .ctx
            .store
            .list_endpoints()
            .await?
            .into_iter()
            .map(|e| (e.id.clone(), e))
            .collect();
        if fan_out {
            self.fan_out(&endpoints).await?;
        }
        self.schedule(&endpoints).await
    }

    async fn enqueue_test(
        &mut self,
        endpoint: &Endpoint,
    ) -> Result<DeliveryJob, crate::store::StoreError> {
        let now = Utc::now();
        let event = Event::new(
            EventKind::WebhookTest,
            "webhooks",
            now,
            json!({"endpoint_id": endpoint.id, "message": "casehub test delivery"}),
        );
        let job = DeliveryJob::new(&event, &endpoint.id);
        let cursor = self.ctx.store.dispatch_cursor().await?.unwrap_or_default();
        self.ctx
            .store
            .enqueue_deliveries(vec![job.clone()], &cursor)
            .await?;
        Ok(job)
    }

    /// Turns new outbox events into jobs for the endpoints subscribed to them.
    async fn fan_out(
        &mut self,
        endpoints: &HashMap<String, Endpoint>,
    ) -> Result<(), crate::store::StoreError> {
        loop {
            let cursor = self.ctx.store.dispatch_cursor().await?;
            let events = self.ctx.store.outbox(cursor.as_deref(), 256).await?;
            let Some(last) = events.last().map(|e| e.msg_id.clone()) else {
                return Ok(());
            };
            let jobs: Vec<DeliveryJob> = events
                .iter()
                .flat_map(|event| {
                    endpoints
                        .values()
                        .filter(move |ep| subscribed(ep, event))
                        .map(move |ep| DeliveryJob::new(event, &ep.id))
                })
                .collect();
            self.ctx.store.enqueue_deliveries(jobs, &last).await?;
        }
    }

    fn record_outcome(&mut self, endpoint: &str, delivered: bool) {
        let settings = &self.ctx.settings;
        let circuit = self.circuits.entry(endpoint.to_string()).or_default();
        if delivered {
            *circuit = Circuit::default();
            return;
        }
        circuit.failures += 1;
        if circuit.failures >= settings.circuit_threshold {
            circuit.open_until = Some(Instant::now() + settings.circuit_cooldown);
        }
    }

    /// FIFO: a job goes only when it is the endpoint's head, or when there is no head and it is the
    /// endpoint's oldest due job (due jobs arrive earliest-due first, and never-tried jobs are due
    /// at their event time, so the first one seen is the oldest). The head is found in the log
    /// once after a restart: the oldest pending job that was already tried.
    async fn fifo_allows(
        &mut self,
        endpoint: &Endpoint,
        job: &DeliveryJob,
    ) -> Result<bool, crate::store::StoreError> {
        if !self.fifo_head.contains_key(&endpoint.id) {
            let log = self
                .ctx
                .store
                .endpoint_deliveries(&endpoint.id, None, 10_000)
                .await?;
            let head = log
                .iter()
                .rev()
                .find(|j| j.state == DeliveryState::Pending && j.attempt_count() > 0)
                .map(|j| j.msg_id.clone());
            self.fifo_head.insert(endpoint.id.clone(), head);
        }
        let in_flight = self.per_endpoint.get(&endpoint.id).copied().unwrap_or(0);
        match self.fifo_head.get(&endpoint.id).cloned().flatten() {
            Some(head) => Ok(head == job.msg_id && in_flight == 0),
            None if in_flight == 0 => {
                self.fifo_head
                    .insert(endpoint.id.clone(), Some(job.msg_id.clone()));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Takes one delivery from the endpoint's `rate_limit`, if it has one; false when over it
    /// (the job stays due and goes on a later tick).
    fn throttle_allows(&mut self, endpoint: &Endpoint) -> bool {
        let Some(per_second) = endpoint.rate_limit.and_then(std::num::NonZeroU32::new) else {
            self.throttles.remove(&endpoint.id);
            return true;
        };
        let throttle = self
            .throttles
            .entry(endpoint.id.clone())
            .or_insert_with(|| Throttle {
                per_second: per_second.get(),
                limiter: governor::RateLimiter::direct(governor::Quota::per_second(per_second)),
            });
        if throttle.per_second != per_second.get() {
            *throttle = Throttle {
                per_second: per_second.get(),
                limiter: governor::RateLimiter::direct(governor::Quota::per_second(per_second)),
            };
        }
        throttle.limiter.check().is_ok()
    }

    /// How many more jobs the circuit lets through for `endpoint` now (given `busy` in flight).
    fn circuit_allows(&self, endpoint: &str, busy: usize) -> usize {
        match self.circuits.get(endpoint).and_then(|c| c.open_until) {
            None => usize::MAX,
            Some(until) if Instant::now() < until => 0,
            // Half-open: a single probe at a time.
            Some(_) => usize::from(busy == 0),
        }
    }

    /// Hands due jobs of active endpoints to the workers, within the per-endpoint bound.
    async fn schedule(
        &mut self,
        endpoints: &HashMap<String, Endpoint>,
    ) -> Result<(), crate::store::StoreError> {
        let due = self.ctx.store.due_deliveries(Utc::now(), 512).await?;
        for job in due {
            let key = (job.endpoint_id.clone(), job.msg_id.clone());
            if self.in_flight.contains(&key) {
                continue;
            }
            // Paused and disabled endpoints keep their queue untouched.
            let Some(endpoint) = endpoints.get(&job.endpoint_id) else {
                continue;
            };
            if endpoint.status != EndpointStatus::Active {
                continue;
            }
            if endpoint.ordering == DeliveryOrdering::Fifo
                && !self.fifo_allows(endpoint, &job).await?
            {
                continue;
            }
            let in_flight_now = self
                .per_endpoint
                .get(&job.endpoint_id)
                .copied()
                .unwrap_or(0);
            if self.circuit_allows(&job.endpoint_id, in_flight_now) == 0 {
                continue;
            }
            let busy = self
                .per_endpoint
                .entry(job.endpoint_id.clone())
                .or_default();
            if *busy >= self.ctx.settings.per_endpoint {
                continue;
            }
            if !self.throttle_allows(endpoint) {
                continue;
            }
            let busy = self
                .per_endpoint
                .entry(job.endpoint_id.clone())
                .or_default();
            *busy += 1;
            self.in_flight.insert(key.clone());
            self.ctx.worker_metrics.queued();
            let work = Work {
                job,
                endpoint: endpoint.clone(),
            };
            let dispatched = self.factory.cast(FactoryMessage::Dispatch(Job {
                key: key.clone(),
                msg: work,
                options: JobOptions::default(),
                accepted: None,
            }));
            if dispatched.is_err() {
                self.in_flight.remove(&key);
                if let Some(n) = self.per_endpoint.get_mut(&key.0) {
                    *n = n.saturating_sub(1);
                }
            }
        }
        Ok(())
    }
}

/// Whether `endpoint` gets `event`: subscribed, not disabled, and never its own disabling.
fn subscribed(endpoint: &Endpoint, event: &Event) -> bool {
    endpoint.status != EndpointStatus::Disabled
        && endpoint.subscribes(event.event.as_str())
        && !(event.event == EventKind::EndpointDisabled
            && event.data["endpoint_id"] == json!(endpoint.id))
}

/// One delivery worker (in the factory).
pub struct DeliveryWorker {
    ctx: PoolContext,
    dispatcher: ActorRef<DispatchMsg>,
}

impl Worker for DeliveryWorker {
    type Key = JobKey;
    type Message = Work;
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        wid: WorkerId,
        _factory: &ActorRef<FactoryMessage<JobKey, Work>>,
        _args: (),
    ) -> Result<(), ActorProcessingErr> {
        self.ctx
            .worker_metrics
            .spawned(&format_args!("delivery-worker-{wid}"));
        Ok(())
    }

    async fn post_stop(
        &self,
        wid: WorkerId,
        _factory: &ActorRef<FactoryMessage<JobKey, Work>>,
        _state: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        self.ctx
            .worker_metrics
            .stopped(&format_args!("delivery-worker-{wid}"));
        Ok(())
    }

    async fn handle(
        &self,
        _wid: WorkerId,
        _factory: &ActorRef<FactoryMessage<JobKey, Work>>,
        Job { key, msg, .. }: Job<JobKey, Work>,
        _state: &mut (),
    ) -> Result<JobKey, ActorProcessingErr> {
        let started = Instant::now();
        self.ctx.worker_metrics.mailbox.dec();
        let (delivered, settled) = match self.attempt(msg).await {
            Ok(state) => (
                state == DeliveryState::Delivered,
                state != DeliveryState::Pending,
            ),
            Err(e) => {
                tracing::warn!(endpoint = %key.0, msg_id = %key.1, error = %e, "recording a delivery attempt failed");
                (false, false)
            }
        };
        let _ = self
            .dispatcher
            .cast(DispatchMsg::Finished(key.clone(), delivered, settled));
        self.ctx.worker_metrics.handled(started.elapsed());
        Ok(key)
    }
}

impl DeliveryWorker {
    /// One attempt, recorded; answers the job's state afterwards.
    async fn attempt(
        &self,
        Work { mut job, endpoint }: Work,
    ) -> Result<DeliveryState, crate::store::StoreError> {
        let now = Utc::now();
        let body = render(&endpoint, &job);
        let outcome = self
            .ctx
            .sender
            .send(&endpoint, &job.msg_id, &job.event, &body, now)
            .await;
        let gone = outcome.status == Some(410);
        let label = match (outcome.delivered(), gone, outcome.status) {
            (true, _, _) => "delivered",
            (_, true, _) => "gone",
            (_, _, Some(_)) => "rejected",
            (_, _, None) => "error",
        };
        self.ctx.telemetry.delivery_attempt(label, outcome.duration);
        let next = if outcome.delivered() || gone {
            None
        } else {
            let global = RetryPolicy::Schedule {
                delays: self
                    .ctx
                    .settings
                    .retry_schedule
                    .iter()
                    .copied()
                    .map(Delay)
                    .collect(),
            };
            let policy = endpoint.retry_policy.as_ref().unwrap_or(&global);
            next_attempt(
                policy,
                job.attempt_count() + 1,
                &outcome,
                job.created_at,
                Utc::now(),
            )
        };
        job.record(
            Attempt {
                attempt: 0,
                status_code: outcome.status,
                error: outcome.error.clone(),
                duration_ms: outcome.duration.as_millis() as u64,
                response_snippet: outcome.snippet.clone(),
                at: now,
                next_attempt_at: next,
            },
            next,
        );
        self.ctx.store.update_delivery(&job).await?;
        if gone {
            self.disable(&endpoint.id, "the endpoint answered 410 Gone")
                .await?;
        } else {
            self.track_failure_streak(&endpoint.id, outcome.delivered(), now)
                .await?;
        }
        Ok(job.state)
    }

    /// Starts or clears the endpoint's failure streak, and disables it once the streak is older
    /// than `disable_after`. Writes only when the streak starts or ends.
    async fn track_failure_streak(
        &self,
        id: &str,
        delivered: bool,
        now: chrono::DateTime<Utc>,
    ) -> Result<(), crate::store::StoreError> {
        let Some(mut endpoint) = self.ctx.store.load_endpoint(id).await? else {
            return Ok(());
        };
        match (delivered, endpoint.failing_since) {
            (true, Some(_)) => {
                endpoint.failing_since = None;
                self.ctx.store.put_endpoint(&endpoint).await
            }
            (false, None) => {
                endpoint.failing_since = Some(now);
                self.ctx.store.put_endpoint(&endpoint).await
            }
            (false, Some(since)) => {
                let limit = chrono::Duration::from_std(self.ctx.settings.disable_after)
                    .unwrap_or(chrono::Duration::MAX);
                if now - since >= limit {
                    let reason = format!(
                        "every delivery failed since {} ({} without a success)",
                        crate::domain::rfc3339(since),
                        humantime_serde::re::humantime::format_duration(
                            self.ctx.settings.disable_after
                        )
                    );
                    self.disable(id, &reason).await?;
                }
                Ok(())
            }
            (true, None) => Ok(()),
        }
    }

    /// Disables an endpoint and records `endpoint.disabled` for the others subscribed to it.
    async fn disable(&self, id: &str, reason: &str) -> Result<(), crate::store::StoreError> {
        let Some(mut endpoint) = self.ctx.store.load_endpoint(id).await? else {
            return Ok(());
        };
        if endpoint.status == EndpointStatus::Disabled {
            return Ok(());
        }
        let now = Utc::now();
        endpoint.status = EndpointStatus::Disabled;
        endpoint.disabled_reason = Some(reason.to_string());
        endpoint.updated_at = now;
        self.ctx.store.put_endpoint(&endpoint).await?;
        let event = Event::new(
            EventKind::EndpointDisabled,
            "webhooks",
            now,
            json!({"endpoint_id": endpoint.id, "url": endpoint.url, "reason": reason}),
        );
        self.ctx.store.append_events(vec![event.clone()]).await?;
        self.ctx.bus.publish([event]);
        Ok(())
    }
}

/// The request body for `endpoint`'s format.
fn render(endpoint: &Endpoint, job: &DeliveryJob) -> Vec<u8> {
    let value = match endpoint.format {
        PayloadFormat::Json => job.payload.clone(),
        PayloadFormat::Slack => slack_message(&job.event, &job.payload),
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

/// A Slack incoming-webhook message: `text` plus one attachment colored by event.
pub fn slack_message(event: &str, envelope: &serde_json::Value) -> serde_json::Value {
    let data = &envelope["data"];
    let color = match event {
        "case.resolved" | "feedback.received" => "good",
        "case.escalated" | "endpoint.disabled" => "danger",
        "alert.triggered" | "review.requested" => "warning",
        _ => "#439FE0",
    };
    let fields: Vec<serde_json::Value> = data
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(_, v)| v.is_string() || v.is_number() || v.is_boolean())
                .take(10)
                .map(|(k, v)| {
                    let text = v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    json!({"title": k, "value": text, "short": text.len() < 40})
                })
                .collect()
        })
        .unwrap_or_default();
    let subject = data["case_id"]
        .as_str()
        .or(data["endpoint_id"].as_str())
        .or(data["alert_id"].as_str())
        .unwrap_or("");
    json!({
        "text": format!("casehub: {event} {subject}").trim_end().to_string(),
        "attachments": [{
            "color": color,
            "title": event,
            "fields": fields,
            "ts": envelope["timestamp"].as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp()),
        }],
    })
}
