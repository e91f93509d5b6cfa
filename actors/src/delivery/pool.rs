//! The delivery pool: a `DeliveryDispatcher` actor that turns outbox events into durable jobs and
//! hands due jobs to a ractor `factory` of `DeliveryWorker`s.
//!
//! The queue lives in the store; the pool only executes. The dispatcher fans events out to the
//! endpoints subscribed to them (advancing a durable cursor in the same write), then picks due
//! jobs, at most `per_endpoint` being sent per endpoint so one slow endpoint cannot take every
//! worker. A worker makes an attempt and hands the outcome to the [`super::recorder`], which
//! stores attempts in batches and then tells the dispatcher which jobs are recorded; a job stays
//! in flight until then. On a single node an endpoint with a backlog has its due jobs read ahead
//! into a [`ReadyQueue`], and a worker goes on with the endpoint's next jobs from there while they
//! are acknowledged (a run of at most `RUN_MAX`, in the same slot), so a backlog does not cost
//! a dispatcher pass and a factory hand-off per job. When the run ends the worker tells the
//! dispatcher how each attempt was answered, which frees the endpoint's slot. After a restart
//! everything pending is simply due again.
//!
//! Endpoints are stored with sealed secrets ([`super::sealing`]); the dispatcher opens them into
//! the copies it hands to workers, and whatever a worker writes back is reloaded from the store
//! and sealed. The fix executor ([`super::fix`]) is one more target, built from settings, that
//! only `fix.requested` events reach.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
use tokio::sync::mpsc;

use super::endpoint::DeliveryOrdering;
use super::endpoint::{Delay, Endpoint, EndpointStatus, PayloadFormat, RetryPolicy};
use super::fix::{FIX_ENDPOINT_ID, FixResult, FixRoute};
use super::job::{Attempt, DeliveryJob, DeliveryState};
use super::recorder::{self, Outcome};
use super::retry::next_attempt;
use super::sealing::SecretSealer;
use super::sender::{Sender, Target};
use crate::bus::EventBus;
use crate::cluster::{Acquired, Allowance, Cluster};
use crate::domain::{Event, EventKind};
use crate::store::{DueJobs, DueQuery, SharedStore};
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
    /// When nodes share the store: how long a job handed to this node's workers stays claimed
    /// (invisible to other nodes); longer than an attempt, so nothing goes out twice at once.
    pub claim_for: Duration,
}

/// (endpoint id, msg id)
pub(super) type JobKey = (String, String);

/// Due jobs read per scheduling pass, earliest first (see [`DispatchState::schedule`]).
const DUE_WINDOW: usize = 64;
/// Due-index entries a scheduling pass passes over (in flight, or their endpoint has no room)
/// before it stops looking further.
const MAX_SKIPPED: usize = 4096;
/// Log page read for an endpoint the due window did not reach, and how many pages at most.
const RECENT_WINDOW: usize = 64;
const RECENT_PAGES: usize = 16;
/// Due jobs read ahead per parallel endpoint when no other node shares the store (see
/// [`ReadyQueue`]). 256 rather than 64 (with [`RUN_MAX`] 64 rather than 16): a drain reads the
/// store a third as often (about 100 jobs a read) and hands work to the factory a quarter as
/// often (about 50 jobs a run), for about 5 % less CPU per delivery (BENCHMARKS.md, session 10).
const READ_AHEAD: usize = 256;
/// Most due jobs read ahead over all endpoints (about 10 MB of 2 KB envelopes), so many
/// endpoints with a backlog at once do not hold their backlogs in memory.
const READ_AHEAD_TOTAL: usize = 4096;
/// A run asks the dispatcher to top its endpoint's queue up once this many are left.
const REFILL_AT: usize = READ_AHEAD / 2;
/// Most jobs one run sends before its worker goes back to the factory (so other endpoints' jobs
/// queued there get a worker in turn; a run also ends as soon as any job waits for a worker).
const RUN_MAX: usize = 64;
/// How long a node leaves a FIFO endpoint leased by another node before trying again.
const FIFO_RETRY: Duration = Duration::from_secs(1);

/// What a scheduling pass takes for a FIFO endpoint.
enum FifoNext {
    /// Its head, due now.
    Head(DeliveryJob),
    /// It has no head: its oldest due job.
    Oldest,
    /// Nothing now (busy, head not yet due or in flight, or another node sends to it).
    Nothing,
}

/// One job for a worker, and where the rest of its run comes from.
#[derive(Debug)]
pub struct Work {
    job: DeliveryJob,
    endpoint: Arc<Endpoint>,
    /// The endpoint's read-ahead queue, when it has one: after an acknowledged attempt the worker
    /// takes the endpoint's next job from it (a run, in the same slot), up to [`RUN_MAX`] jobs.
    more: Option<Arc<ReadyQueue>>,
}

/// The due jobs of one parallel endpoint read ahead of their turn, when no other node shares the
/// store. The dispatcher fills it; a job handed out starts a run, and the run takes the next ones
/// from here, so a backlog drains without a dispatcher pass and a factory hand-off per job.
/// Only a cache of what is pending in the store: its jobs count as in flight (nothing reads
/// them twice), and a job dropped from here is simply read again. The dispatcher empties it once
/// the endpoint is no longer active or has changed (a run then ends after its current job).
#[derive(Debug)]
pub struct ReadyQueue {
    /// The endpoint as opened when the queue was made.
    endpoint: Arc<Endpoint>,
    jobs: parking_lot::Mutex<VecDeque<DeliveryJob>>,
    /// A refill is asked for and the dispatcher has not looked at this endpoint since.
    refill_asked: AtomicBool,
}

impl ReadyQueue {
    fn new(endpoint: Arc<Endpoint>) -> ReadyQueue {
        ReadyQueue {
            endpoint,
            jobs: parking_lot::Mutex::new(VecDeque::new()),
            refill_asked: AtomicBool::new(false),
        }
    }

    /// The next job for a run; asks `dispatcher` for more once few are left.
    fn take(&self, dispatcher: &ActorRef<DispatchMsg>) -> Option<DeliveryJob> {
        let (job, left) = {
            let mut jobs = self.jobs.lock();
            (jobs.pop_front(), jobs.len())
        };
        if left <= REFILL_AT && !self.refill_asked.swap(true, Ordering::AcqRel) {
            let _ = dispatcher.cast(DispatchMsg::Refill);
        }
        job
    }
}

/// Messages of the dispatcher.
#[derive(Debug)]
pub enum DispatchMsg {
    /// Look for new events and due jobs.
    Tick,
    /// A worker's run for an endpoint ended: per attempt (in order) the msg id, whether it was
    /// acknowledged, and whether the job is settled (delivered or failed for good) rather than
    /// waiting for a retry. Frees the endpoint's slot; the jobs stay in flight until recorded.
    Answered(String, Vec<(String, bool, bool)>),
    /// A run found few jobs left in its endpoint's read-ahead queue: top the queues up.
    Refill,
    /// Attempts were stored (`true`) or could not be (`false`: the jobs go again); either way
    /// the jobs leave the in-flight set.
    Recorded(Vec<(JobKey, bool)>),
    /// Queue a `webhook.test` delivery to one endpoint; answers the job.
    Test(
        Box<Endpoint>,
        ractor::RpcReplyPort<Result<DeliveryJob, String>>,
    ),
}

type PoolFactory = ActorRef<FactoryMessage<JobKey, Work>>;

/// Coalesces what wakes the dispatcher. A cycle reads the store, so a cycle per recorded event or
/// per answered attempt would pile up in its (unbounded) mailbox under load, with the answers
/// that free capacity queued behind thousands of stale ticks. So at most one tick from the bus
/// waits at a time, and a burst of answered attempts costs one scheduling pass (the last of the
/// burst runs it).
#[derive(Debug, Default)]
pub struct Wakeups {
    /// A bus tick is queued and not yet taken up.
    tick_queued: AtomicBool,
    /// `Answered` messages sent and not yet handled.
    answering: AtomicUsize,
    /// Jobs handed to the factory that no worker has taken up yet: while any wait, a run ends
    /// after its current job so they get its worker (one endpoint's backlog does not hold the
    /// workers while other jobs wait).
    waiting: AtomicUsize,
}

/// After the bus wakes the dispatcher, how long further events gather before they may wake it
/// again. The first event after a quiet spell goes at once; under steady intake a pass fans out
/// a few milliseconds' events (the dispatcher runs on its own thread, and a pass per event or
/// two cost intake 10 % more CPU per request, with three times the passes).
const EVENT_GATHER: Duration = Duration::from_millis(2);

/// The dispatcher actor type.
pub struct DeliveryDispatcher;

/// What the dispatcher and workers share.
#[derive(Clone)]
pub struct PoolContext {
    pub store: SharedStore,
    /// The nodes sharing the store: each job is claimed by the one that sends it, and a FIFO
    /// endpoint is sent to by one node at a time (the holder of its lease).
    pub cluster: Cluster,
    pub bus: EventBus,
    pub sender: Sender,
    pub settings: PoolSettings,
    /// Opens stored endpoint secrets for signing, seals what workers write back.
    pub sealer: SecretSealer,
    /// The automated-fix executor, when `delivery.fix_executor_url` is set.
    pub fix: Option<FixRoute>,
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
    /// When nodes share the endpoint's allowance: none left for this node before then (so a
    /// scan does not ask Redis again for every due job of a limited endpoint).
    shared_wait: Option<Instant>,
}

impl Throttle {
    fn new(per_second: std::num::NonZeroU32) -> Throttle {
        Throttle {
            per_second: per_second.get(),
            limiter: governor::RateLimiter::direct(governor::Quota::per_second(per_second)),
            shared_wait: None,
        }
    }
}

/// The endpoints as stored and opened (secrets unsealed), by id: a scheduling pass reuses the
/// opened copy of an endpoint that has not changed instead of unsealing its secrets again.
type Endpoints = HashMap<String, Arc<Endpoint>>;

/// Jobs in flight by endpoint, so a (endpoint id, msg id) pair of borrowed strings can be looked
/// up (the store's due scan asks for every entry it passes).
#[derive(Debug, Default)]
struct InFlight(HashMap<String, HashSet<String>>);

impl InFlight {
    fn contains(&self, endpoint: &str, msg: &str) -> bool {
        self.0.get(endpoint).is_some_and(|m| m.contains(msg))
    }

    fn insert(&mut self, (endpoint, msg): &JobKey) {
        self.0
            .entry(endpoint.clone())
            .or_default()
            .insert(msg.clone());
    }

    fn remove(&mut self, (endpoint, msg): &JobKey) {
        self.remove_parts(endpoint, msg);
    }

    fn remove_parts(&mut self, endpoint: &str, msg: &str) {
        if let Some(msgs) = self.0.get_mut(endpoint) {
            msgs.remove(msg);
            if msgs.is_empty() {
                self.0.remove(endpoint);
            }
        }
    }
}

/// Dispatcher state.
pub struct DispatchState {
    ctx: PoolContext,
    wakeups: Arc<Wakeups>,
    factory: PoolFactory,
    /// Jobs handed to a worker and not yet recorded: never handed out again meanwhile.
    in_flight: InFlight,
    /// Jobs handed to a worker and not yet answered, per endpoint.
    per_endpoint: HashMap<String, usize>,
    circuits: HashMap<String, Circuit>,
    throttles: HashMap<String, Throttle>,
    /// FIFO endpoints: the message that owns the endpoint until it is settled (`Some(None)`:
    /// nobody; absent: not yet read back from the store since start).
    fifo_head: HashMap<String, Option<String>>,
    /// Endpoints whose secret did not open, already reported (warned once, not every tick).
    unopened: HashSet<String>,
    /// The last pass's endpoints: as stored, and opened.
    opened: HashMap<String, (Endpoint, Arc<Endpoint>)>,
    /// FIFO endpoints another node sends to, with when to try for their lease again.
    fifo_elsewhere: HashMap<String, Instant>,
    /// Due jobs of parallel endpoints read ahead of their turn, shared with the runs sending
    /// them (see [`ReadyQueue`]).
    ready: HashMap<String, Arc<ReadyQueue>>,
}

impl DeliveryDispatcher {
    /// Starts the factory, the dispatcher, a bus listener that wakes it on new events, and a
    /// periodic tick for retries.
    pub async fn start(ctx: PoolContext) -> Result<ActorRef<DispatchMsg>, ractor::SpawnErr> {
        let wakeups = Arc::new(Wakeups::default());
        let (dispatcher, _) =
            Actor::spawn(None, DeliveryDispatcher, (ctx.clone(), wakeups.clone())).await?;
        ctx.dispatcher_metrics.spawned(&"delivery-dispatcher");
        let mut events = ctx.bus.subscribe();
        let wake = dispatcher.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(_) | Err(RecvError::Lagged(_)) => {
                        if wakeups.tick_queued.swap(true, Ordering::AcqRel) {
                            continue;
                        }
                        if wake.cast(DispatchMsg::Tick).is_err() {
                            return;
                        }
                        // Events arriving meanwhile wait for the next pass together.
                        tokio::time::sleep(EVENT_GATHER).await;
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
    wakeups: Arc<Wakeups>,
    recorder: mpsc::Sender<Outcome>,
}

impl WorkerBuilder<DeliveryWorker, ()> for Builder {
    fn build(&mut self, _wid: WorkerId) -> (DeliveryWorker, ()) {
        (
            DeliveryWorker {
                ctx: self.ctx.clone(),
                dispatcher: self.dispatcher.clone(),
                wakeups: self.wakeups.clone(),
                recorder: self.recorder.clone(),
            },
            (),
        )
    }
}

impl Actor for DeliveryDispatcher {
    type Msg = DispatchMsg;
    type State = DispatchState;
    type Arguments = (PoolContext, Arc<Wakeups>);

    async fn pre_start(
        &self,
        myself: ActorRef<DispatchMsg>,
        (ctx, wakeups): (PoolContext, Arc<Wakeups>),
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
                wakeups: wakeups.clone(),
                recorder: recorder::spawn(ctx.clone(), myself.clone()),
            }))
            .queue(Default::default())
            .router(Default::default())
            .num_initial_workers(ctx.settings.workers.max(1))
            .build();
        let (factory, _) = Actor::spawn_linked(None, factory_def, args, myself.get_cell()).await?;
        myself.send_interval(ctx.settings.poll_interval, || DispatchMsg::Tick);
        Ok(DispatchState {
            ctx,
            wakeups,
            factory,
            in_flight: InFlight::default(),
            per_endpoint: HashMap::new(),
            circuits: HashMap::new(),
            throttles: HashMap::new(),
            fifo_head: HashMap::new(),
            unopened: HashSet::new(),
            opened: HashMap::new(),
            fifo_elsewhere: HashMap::new(),
            ready: HashMap::new(),
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
        // New events arrive with a tick (bus wake-up or timer); an answered or recorded attempt
        // only frees capacity, so it needs scheduling but no fan-out.
        let fan_out = matches!(msg, DispatchMsg::Tick);
        let mut run_cycle = true;
        match msg {
            DispatchMsg::Answered(endpoint, attempts) => {
                // More answers are queued: the last of them schedules for all.
                let before = state.wakeups.answering.fetch_sub(1, Ordering::AcqRel);
                run_cycle = before <= 1;
                if let Some(n) = state.per_endpoint.get_mut(&endpoint) {
                    *n = n.saturating_sub(1);
                }
                for (msg, delivered, settled) in attempts {
                    state.record_outcome(&endpoint, delivered);
                    // A FIFO endpoint stays with this message until it is settled. Knowing that
                    // in memory is enough: the job itself stays in flight until it is recorded,
                    // and after a crash the head is read back from the store.
                    if settled && state.fifo_head.get(&endpoint) == Some(&Some(msg)) {
                        state.fifo_head.insert(endpoint.clone(), None);
                    }
                }
            }
            DispatchMsg::Refill => {}
            DispatchMsg::Recorded(keys) => {
                for (key, recorded) in keys {
                    state.in_flight.remove(&key);
                    // Not stored: the job goes again, so a FIFO endpoint reads its head back.
                    if !recorded {
                        state.fifo_head.remove(&key.0);
                    }
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
            DispatchMsg::Tick => state.wakeups.tick_queued.store(false, Ordering::Release),
        }
        // Store trouble is retried on the next tick; nothing is lost, the queue is durable.
        if run_cycle && let Err(e) = state.cycle(fan_out).await {
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
        // The factory supervises its own workers; its own start is routine, anything else is
        // worth a warning.
        match &event {
            ractor::SupervisionEvent::ActorStarted(_) => {
                tracing::debug!(event = %event, "delivery factory started");
            }
            _ => tracing::warn!(event = %event, "delivery factory supervision event"),
        }
        Ok(())
    }
}

impl DispatchState {
    async fn cycle(&mut self, fan_out: bool) -> Result<(), crate::store::StoreError> {
        let mut endpoints = Endpoints::new();
        let mut opened = HashMap::with_capacity(self.opened.len());
        for stored in self.ctx.store.list_endpoints().await? {
            if let Some((same, open)) = self.opened.remove(&stored.id).filter(|(s, _)| *s == stored)
            {
                endpoints.insert(stored.id.clone(), open.clone());
                opened.insert(stored.id.clone(), (same, open));
                continue;
            }
            match self.ctx.sealer.opened(&stored) {
                Ok(open) => {
                    self.unopened.remove(&open.id);
                    let open = Arc::new(open);
                    endpoints.insert(open.id.clone(), open.clone());
                    opened.insert(stored.id.clone(), (stored, open));
                }
                // Its jobs wait in the queue; they go once the right key is configured.
                Err(e) => {
                    if self.unopened.insert(stored.id.clone()) {
                        tracing::error!(endpoint = %stored.id, error = %e, "cannot open an endpoint secret; its deliveries wait");
                    }
                }
            }
        }
        self.opened = opened;
        if let Some(fix) = &self.ctx.fix {
            endpoints.insert(fix.endpoint.id.clone(), fix.endpoint.clone());
        }
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
    async fn fan_out(&mut self, endpoints: &Endpoints) -> Result<(), crate::store::StoreError> {
        loop {
            // The cursor is an outbox position; anything else (a store from before positions)
            // starts over, which re-enqueues nothing that exists.
            let cursor = self.ctx.store.dispatch_cursor().await?;
            let after = cursor.and_then(|c| c.parse::<u64>().ok()).unwrap_or(0);
            let fix_configured = self.ctx.fix.is_some();
            if endpoints.is_empty() && !fix_configured {
                // Nothing could subscribe: step past the new events without reading them.
                let end = self.ctx.store.outbox_end().await?;
                if end > after {
                    self.ctx
                        .store
                        .enqueue_fanned_out(Vec::new(), &end.to_string())
                        .await?;
                }
                return Ok(());
            }
            let entries = self.ctx.store.outbox(after, 256).await?;
            let Some(last) = entries.last().map(|e| e.position.to_string()) else {
                return Ok(());
            };
            let jobs: Vec<DeliveryJob> = entries
                .iter()
                .map(|entry| &entry.event)
                .flat_map(|event| {
                    let fix = (event.event == EventKind::FixRequested && fix_configured)
                        .then(|| DeliveryJob::new(event, FIX_ENDPOINT_ID));
                    endpoints
                        .values()
                        .filter(move |ep| subscribed(ep, event))
                        .map(move |ep| DeliveryJob::new(event, &ep.id))
                        .chain(fix)
                })
                .collect();
            self.ctx.store.enqueue_fanned_out(jobs, &last).await?;
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
    /// at their event time, so the first one seen is the oldest).
    async fn fifo_allows(
        &mut self,
        endpoint: &Endpoint,
        job: &DeliveryJob,
    ) -> Result<bool, crate::store::StoreError> {
        if !self.fifo_lease(&endpoint.id).await {
            return Ok(false);
        }
        let head = self.fifo_head_of(&endpoint.id).await?;
        let in_flight = self.per_endpoint.get(&endpoint.id).copied().unwrap_or(0);
        match head {
            Some(head) => Ok(head == job.msg_id && in_flight == 0),
            None if in_flight == 0 => {
                self.fifo_head
                    .insert(endpoint.id.clone(), Some(job.msg_id.clone()));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The message that owns FIFO endpoint `id` until it is settled, if any. Read from the store
    /// after a restart or once this node takes the endpoint's lease: the oldest pending job,
    /// whatever its due time (a first attempt another node claimed, or abandoned in flight, is
    /// due again only once its claim runs out, and nothing may overtake it meanwhile).
    async fn fifo_head_of(&mut self, id: &str) -> Result<Option<String>, crate::store::StoreError> {
        if let Some(head) = self.fifo_head.get(id) {
            return Ok(head.clone());
        }
        let head = self.ctx.store.oldest_pending_of(id).await?;
        self.fifo_head.insert(id.to_string(), head.clone());
        Ok(head)
    }

    /// What a pass should do for FIFO endpoint `id`, which has room. A head that was retried is
    /// due after every message queued behind it, so it is loaded by itself rather than looked
    /// for among the due jobs (a long backlog would hide it from any window).
    async fn fifo_next(
        &mut self,
        id: &str,
        now: chrono::DateTime<Utc>,
    ) -> Result<FifoNext, crate::store::StoreError> {
        if self.per_endpoint.get(id).copied().unwrap_or(0) > 0 || !self.fifo_lease(id).await {
            return Ok(FifoNext::Nothing);
        }
        let Some(head) = self.fifo_head_of(id).await? else {
            return Ok(FifoNext::Oldest);
        };
        if self.in_flight.contains(id, &head) {
            return Ok(FifoNext::Nothing);
        }
        match self.ctx.store.load_delivery(id, &head).await? {
            Some(job) if job.state == DeliveryState::Pending => Ok(if job.due_at <= now {
                FifoNext::Head(job)
            } else {
                FifoNext::Nothing
            }),
            // Settled meanwhile (or gone): the endpoint has no head until the oldest goes.
            _ => {
                self.fifo_head.insert(id.to_string(), None);
                Ok(FifoNext::Oldest)
            }
        }
    }

    /// Whether this node may send to FIFO endpoint `id`: when nodes share the store, only the
    /// holder of its lease does (one sender keeps one order). A lease newly taken means another
    /// node may have sent meanwhile, so the head is read back from the store. Another node's
    /// lease is tried for again after [`FIFO_RETRY`].
    async fn fifo_lease(&mut self, id: &str) -> bool {
        let cluster = &self.ctx.cluster;
        let name = format!("fifo:{id}");
        if cluster.holds(&name) {
            return true;
        }
        if self
            .fifo_elsewhere
            .get(id)
            .is_some_and(|retry| Instant::now() < *retry)
        {
            return false;
        }
        match cluster.acquire(&name).await {
            Ok(Acquired::Taken) => {
                self.fifo_elsewhere.remove(id);
                self.fifo_head.remove(id);
                true
            }
            Ok(Acquired::HeldBy(_)) | Err(_) => {
                self.fifo_elsewhere
                    .insert(id.to_string(), Instant::now() + FIFO_RETRY);
                false
            }
        }
    }

    /// Takes one delivery from the endpoint's `rate_limit`, if it has one; false when over it
    /// (the job stays due and goes on a later tick).
    async fn throttle_allows(&mut self, endpoint: &Endpoint) -> bool {
        let Some(per_second) = endpoint.rate_limit.and_then(std::num::NonZeroU32::new) else {
            self.throttles.remove(&endpoint.id);
            return true;
        };
        let throttle = self
            .throttles
            .entry(endpoint.id.clone())
            .or_insert_with(|| Throttle::new(per_second));
        if throttle.per_second != per_second.get() {
            *throttle = Throttle::new(per_second);
        }
        // Nodes sharing the store draw on one allowance per endpoint (its receiver sees the
        // limit, not the limit times the nodes); this node's own throttle decides when Redis
        // does not answer.
        if throttle
            .shared_wait
            .is_some_and(|until| Instant::now() < until)
        {
            return false;
        }
        let per_request = Duration::from_secs(1) / per_second.get();
        match self
            .ctx
            .cluster
            .take_allowance(
                &format!("endpoint:{}", endpoint.id),
                per_request,
                per_second.get(),
            )
            .await
        {
            Ok(Some(Allowance::Allowed { .. })) => return true,
            Ok(Some(Allowance::Limited { wait })) => {
                throttle.shared_wait = Some(Instant::now() + wait);
                return false;
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "shared endpoint rate limit unavailable"),
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
    ///
    /// The store is asked for the due jobs of the endpoints that can take more now (active, below
    /// their bound, circuit not open), as many as each has room for, without the jobs already in
    /// flight: each pass decodes about what it can hand out. A store with one earliest-first
    /// index passes over the entries of the other endpoints, and a black hole collects due jobs
    /// faster than it times them out, so such a scan stops after [`MAX_SKIPPED`] entries; when
    /// its answer is not complete, every active parallel endpoint with room that got no job is
    /// also served from its own log ([`Self::recent_due`]: its recent events; retries older than
    /// that go when the scan reaches them).
    async fn schedule(&mut self, endpoints: &Endpoints) -> Result<(), crate::store::StoreError> {
        let now = Utc::now();
        self.drop_stale_ready(endpoints);
        let read_ahead = if self.ctx.cluster.is_shared() {
            0
        } else {
            READ_AHEAD
        };
        // How many more jobs each endpoint may take: a parallel endpoint's free slots are filled
        // from what was read ahead first, then from the store, which also tops its read-ahead
        // queue up (even with no slot free: its runs take from there). A FIFO endpoint takes one
        // at a time: its head, or with none its oldest due job.
        let mut jobs = Vec::new();
        let mut wanted: Vec<(&str, usize)> = Vec::new();
        let mut free_of: HashMap<&str, usize> = HashMap::new();
        let (mut limit, mut ahead) = (0, 0);
        let mut ready_total: usize = self.ready.values().map(|q| q.jobs.lock().len()).sum();
        for e in endpoints.values() {
            if e.status != EndpointStatus::Active {
                continue;
            }
            if e.ordering == DeliveryOrdering::Fifo {
                if !self.has_room(&e.id) {
                    continue;
                }
                match self.fifo_next(&e.id, now).await? {
                    FifoNext::Head(job) => jobs.push(job),
                    FifoNext::Oldest => {
                        wanted.push((e.id.as_str(), 1));
                        limit += 1;
                    }
                    FifoNext::Nothing => {}
                }
                continue;
            }
            let busy = self.per_endpoint.get(&e.id).copied().unwrap_or(0);
            let allowed = self.circuit_allows(&e.id, busy);
            if allowed == 0 {
                // Its circuit is open: what it read ahead waits in the store instead.
                ready_total -= self.drop_ready(&e.id);
                continue;
            }
            let mut free = self
                .ctx
                .settings
                .per_endpoint
                .saturating_sub(busy)
                .min(allowed);
            let mut queued = 0;
            if let Some(queue) = self.ready.get(&e.id) {
                let mut ready = queue.jobs.lock();
                // They stay in flight until the store is read (so it does not hand them out
                // again), then go to `dispatch_due` like any due job.
                while free > 0
                    && let Some(job) = ready.pop_front()
                {
                    jobs.push(job);
                    free -= 1;
                    ready_total -= 1;
                }
                queued = ready.len();
                queue.refill_asked.store(false, Ordering::Release);
            }
            // A rate-limited endpoint takes fewer than its free slots most passes, and what it
            // does not take would be dropped again: nothing is read ahead for it.
            let top_up = if e.rate_limit.is_some() {
                0
            } else {
                read_ahead
                    .saturating_sub(queued)
                    .min(READ_AHEAD_TOTAL.saturating_sub(ready_total + ahead))
            };
            if free > 0 || (top_up > 0 && queued <= REFILL_AT) {
                wanted.push((e.id.as_str(), free + top_up));
                free_of.insert(e.id.as_str(), free);
                limit += free;
                ahead += top_up;
            }
        }
        let limit = limit.min(DUE_WINDOW) + ahead;
        let due = if wanted.is_empty() {
            DueJobs {
                jobs: Vec::new(),
                complete: true,
            }
        } else {
            let in_flight = &self.in_flight;
            let query = DueQuery {
                wanted: &wanted,
                now,
                limit,
                max_skipped: MAX_SKIPPED,
            };
            self.ctx
                .store
                .due_deliveries_of(query, &|endpoint, msg| in_flight.contains(endpoint, msg))
                .await?
        };
        drop(wanted);
        for job in &jobs {
            self.in_flight.remove_parts(&job.endpoint_id, &job.msg_id);
        }
        // What a parallel endpoint has no free slot for now waits in its read-ahead queue.
        for job in due.jobs {
            match free_of.get_mut(job.endpoint_id.as_str()) {
                Some(0) => {
                    let Some(endpoint) = endpoints.get(&job.endpoint_id) else {
                        continue;
                    };
                    self.in_flight
                        .insert(&(job.endpoint_id.clone(), job.msg_id.clone()));
                    self.ready
                        .entry(job.endpoint_id.clone())
                        .or_insert_with(|| Arc::new(ReadyQueue::new(endpoint.clone())))
                        .jobs
                        .lock()
                        .push_back(job);
                }
                Some(free) => {
                    *free -= 1;
                    jobs.push(job);
                }
                None => jobs.push(job),
            }
        }
        drop(free_of);
        let seen = self.dispatch_due(jobs, endpoints).await?;
        if due.complete {
            return Ok(());
        }
        let starved: Vec<String> = endpoints
            .values()
            .filter(|e| {
                e.status == EndpointStatus::Active
                    && e.ordering == DeliveryOrdering::Parallel
                    && !seen.contains(&e.id)
                    && self.has_room(&e.id)
            })
            .map(|e| e.id.clone())
            .collect();
        for id in starved {
            let recent = self.recent_due(&id, now).await?;
            self.dispatch_due(recent, endpoints).await?;
        }
        Ok(())
    }

    /// Drops what was read ahead for endpoints that are gone, no longer active or changed.
    fn drop_stale_ready(&mut self, endpoints: &Endpoints) {
        let stale: Vec<String> = self
            .ready
            .iter()
            .filter(|(id, queue)| {
                endpoints.get(*id).is_none_or(|e| {
                    e.status != EndpointStatus::Active || !Arc::ptr_eq(e, &queue.endpoint)
                })
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            self.drop_ready(&id);
        }
    }

    /// Drops endpoint `id`'s read-ahead queue; answers how many jobs it held (they stay pending
    /// in the store and are read again once they may go; a run sending from the queue ends after
    /// its current job).
    fn drop_ready(&mut self, id: &str) -> usize {
        let Some(queue) = self.ready.remove(id) else {
            return 0;
        };
        let mut jobs = queue.jobs.lock();
        for job in jobs.iter() {
            self.in_flight.remove_parts(&job.endpoint_id, &job.msg_id);
        }
        let held = jobs.len();
        jobs.clear();
        held
    }

    /// An endpoint's due pending jobs from its log, oldest first: pages are read newest first
    /// while they still hold pending jobs, at most [`RECENT_PAGES`] of them.
    async fn recent_due(
        &self,
        endpoint: &str,
        now: chrono::DateTime<Utc>,
    ) -> Result<Vec<DeliveryJob>, crate::store::StoreError> {
        let mut due = Vec::new();
        let mut before: Option<String> = None;
        for _ in 0..RECENT_PAGES {
            let page = self
                .ctx
                .store
                .endpoint_deliveries(endpoint, before.as_deref(), RECENT_WINDOW)
                .await?;
            let (Some(last), full) = (page.last(), page.len() == RECENT_WINDOW) else {
                break;
            };
            before = Some(last.msg_id.clone());
            let mut pending = false;
            for job in page {
                if job.state == DeliveryState::Pending {
                    pending = true;
                    if job.due_at <= now {
                        due.push(job);
                    }
                }
            }
            if !pending || !full {
                break;
            }
        }
        due.reverse();
        Ok(due)
    }

    /// Whether `endpoint` could take another job now (bound and circuit).
    fn has_room(&self, endpoint: &str) -> bool {
        let busy = self.per_endpoint.get(endpoint).copied().unwrap_or(0);
        busy < self.ctx.settings.per_endpoint && self.circuit_allows(endpoint, busy) > 0
    }

    /// Hands the jobs of `due` that may go now to the workers; answers the endpoints seen.
    async fn dispatch_due(
        &mut self,
        due: Vec<DeliveryJob>,
        endpoints: &Endpoints,
    ) -> Result<HashSet<String>, crate::store::StoreError> {
        let mut seen = HashSet::new();
        let mut chosen = Vec::new();
        for job in due {
            if !seen.contains(&job.endpoint_id) {
                seen.insert(job.endpoint_id.clone());
            }
            if self.in_flight.contains(&job.endpoint_id, &job.msg_id) {
                continue;
            }
            let key = (job.endpoint_id.clone(), job.msg_id.clone());
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
            if !self.throttle_allows(endpoint).await {
                continue;
            }
            let busy = self
                .per_endpoint
                .entry(job.endpoint_id.clone())
                .or_default();
            *busy += 1;
            self.in_flight.insert(&key);
            let more = self
                .ready
                .get(&job.endpoint_id)
                .filter(|queue| Arc::ptr_eq(&queue.endpoint, endpoint))
                .cloned();
            chosen.push((
                key,
                Work {
                    job,
                    endpoint: endpoint.clone(),
                    more,
                },
            ));
        }
        let claimed = self.claim(&chosen).await;
        for ((key, work), claimed) in chosen.into_iter().zip(claimed) {
            if !claimed {
                // Another node has it: give the slot back; a FIFO head is read again.
                self.in_flight.remove(&key);
                if let Some(n) = self.per_endpoint.get_mut(&key.0) {
                    *n = n.saturating_sub(1);
                }
                if self.fifo_head.get(&key.0) == Some(&Some(key.1.clone())) {
                    self.fifo_head.remove(&key.0);
                }
                continue;
            }
            self.ctx.worker_metrics.queued();
            self.wakeups.waiting.fetch_add(1, Ordering::AcqRel);
            let dispatched = self.factory.cast(FactoryMessage::Dispatch(Job {
                key: key.clone(),
                msg: work,
                options: JobOptions::default(),
                accepted: None,
            }));
            if dispatched.is_err() {
                self.wakeups.waiting.fetch_sub(1, Ordering::AcqRel);
                self.in_flight.remove(&key);
                if let Some(n) = self.per_endpoint.get_mut(&key.0) {
                    *n = n.saturating_sub(1);
                }
            }
        }
        Ok(seen)
    }

    /// Claims `chosen` for this node when nodes share the store (all of them otherwise);
    /// answers per job. A store that cannot be reached claims nothing: the jobs go next tick.
    async fn claim(&self, chosen: &[(JobKey, Work)]) -> Vec<bool> {
        if !self.ctx.cluster.is_shared() || chosen.is_empty() {
            return vec![true; chosen.len()];
        }
        let keys: Vec<(&str, &str)> = chosen
            .iter()
            .map(|((endpoint, msg), _)| (endpoint.as_str(), msg.as_str()))
            .collect();
        let now = Utc::now();
        let until = now
            + chrono::Duration::from_std(self.ctx.settings.claim_for)
                .unwrap_or(chrono::Duration::minutes(1));
        match self.ctx.store.claim_deliveries(&keys, now, until).await {
            Ok(claimed) if claimed.len() == chosen.len() => claimed,
            Ok(_) => vec![false; chosen.len()],
            Err(e) => {
                tracing::warn!(error = %e, "claiming deliveries failed; retrying next tick");
                vec![false; chosen.len()]
            }
        }
    }
}

/// Whether `endpoint` gets `event`: subscribed, not disabled, never its own disabling, and never
/// a fix request (those go to the fix executor only).
fn subscribed(endpoint: &Endpoint, event: &Event) -> bool {
    endpoint.status != EndpointStatus::Disabled
        && event.event != EventKind::FixRequested
        && endpoint.subscribes(event.event.as_str())
        && !(event.event == EventKind::EndpointDisabled
            && event.data["endpoint_id"] == json!(endpoint.id))
}

/// One delivery worker (in the factory).
pub struct DeliveryWorker {
    ctx: PoolContext,
    dispatcher: ActorRef<DispatchMsg>,
    wakeups: Arc<Wakeups>,
    recorder: mpsc::Sender<Outcome>,
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
        self.wakeups.waiting.fetch_sub(1, Ordering::AcqRel);
        self.run(msg).await;
        self.ctx.worker_metrics.handled(started.elapsed());
        Ok(key)
    }
}

/// How one attempt went, for the dispatcher.
struct Answer {
    msg_id: String,
    delivered: bool,
    settled: bool,
    /// Whether the outcome was stored by the worker itself (a 410 or a fix request) rather
    /// than handed to the recorder.
    recorded_here: Option<bool>,
}

impl DeliveryWorker {
    /// Sends the job, then while its endpoint acknowledges and no other job waits for a worker,
    /// the endpoint's next read-ahead jobs (at most [`RUN_MAX`] in all), one at a time in the
    /// endpoint's slot; then tells the dispatcher how each went, which frees the slot.
    async fn run(
        &self,
        Work {
            job,
            endpoint,
            more,
        }: Work,
    ) {
        let mut run = Run {
            worker: self,
            endpoint: &endpoint.id,
            answers: Vec::new(),
            current: Some(job.msg_id.clone()),
        };
        let target = self.sender_for(&endpoint).0.target(&endpoint.url);
        let mut next = Some(job);
        while let Some(job) = next.take() {
            let answer = self.attempt(job, &endpoint, &target).await;
            run.current = None;
            let go_on = answer.delivered && answer.recorded_here.is_none();
            run.answers.push(answer);
            if go_on
                && run.answers.len() < RUN_MAX
                && self.wakeups.waiting.load(Ordering::Acquire) == 0
            {
                next = more.as_ref().and_then(|queue| queue.take(&self.dispatcher));
                run.current = next.as_ref().map(|job| job.msg_id.clone());
            }
        }
        // Dropping `run` answers for it.
    }

    /// One attempt. An ordinary outcome goes to the recorder (the worker is free once it is
    /// queued there); a 410 or a fix request is recorded here first, as what follows it needs
    /// the outcome stored (the endpoint is disabled before its slot frees, the case reads it).
    async fn attempt(&self, mut job: DeliveryJob, endpoint: &Endpoint, target: &Target) -> Answer {
        #[cfg(any(test, feature = "test-support"))]
        crate::testing::planted_panic(&endpoint.id);
        let now = Utc::now();
        let body = render(endpoint, &job);
        let (sender, fix) = self.sender_for(endpoint);
        let outcome = sender
            .send_to(target, endpoint, &job.msg_id, &job.event, body, now)
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
        let delivered = job.state == DeliveryState::Delivered;
        let settled = job.state != DeliveryState::Pending;
        let msg_id = job.msg_id.clone();
        if fix.is_none() && !gone {
            let queued = self.recorder.send(Outcome {
                job,
                delivered,
                at: now,
            });
            // The recorder only stops with the pool; then record here.
            let recorded_here = match queued.await {
                Ok(()) => None,
                Err(mpsc::error::SendError(Outcome { job, .. })) => {
                    Some(self.record_now(&job).await)
                }
            };
            return Answer {
                msg_id,
                delivered,
                settled,
                recorded_here,
            };
        }
        let mut recorded = self.record_now(&job).await;
        if recorded && let Some(fix) = fix {
            // The executor is configuration, not a stored endpoint: no streak, no disabling.
            // A settled request wakes its case, which reads the outcome just recorded.
            if settled {
                match FixResult::case_of(&job) {
                    Some(case_id) => fix.outcomes.settled(case_id),
                    None => tracing::warn!(msg_id = %job.msg_id, "a fix request names no case"),
                }
            }
        } else if recorded
            && let Err(e) =
                recorder::disable(&self.ctx, &endpoint.id, "the endpoint answered 410 Gone").await
        {
            tracing::warn!(endpoint = %endpoint.id, error = %e, "disabling a gone endpoint failed");
            recorded = false;
        }
        // As before batching: an outcome that could not be recorded counts as a failure.
        Answer {
            msg_id,
            delivered: delivered && recorded,
            settled: settled && recorded,
            recorded_here: Some(recorded),
        }
    }

    /// The sender for `endpoint`: the fix executor's for its fix requests, else the pool's.
    fn sender_for(&self, endpoint: &Endpoint) -> (&Sender, Option<&FixRoute>) {
        let fix = self
            .ctx
            .fix
            .as_ref()
            .filter(|_| endpoint.id == FIX_ENDPOINT_ID);
        (fix.map_or(&self.ctx.sender, |f| &f.sender), fix)
    }

    /// Stores one attempt now; false (logged) when the store failed.
    async fn record_now(&self, job: &DeliveryJob) -> bool {
        match self.ctx.store.update_delivery(job).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(endpoint = %job.endpoint_id, msg_id = %job.msg_id, error = %e, "recording a delivery attempt failed");
                false
            }
        }
    }

    /// Tells the dispatcher a run was answered (see [`Wakeups`]).
    fn answered(&self, endpoint: &str, attempts: Vec<(String, bool, bool)>) {
        self.wakeups.answering.fetch_add(1, Ordering::AcqRel);
        if self
            .dispatcher
            .cast(DispatchMsg::Answered(endpoint.to_string(), attempts))
            .is_err()
        {
            self.wakeups.answering.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// A run of one worker: how its attempts went so far. Dropping it tells the dispatcher, so a run
/// answers however it ends: normally, by a panic in an attempt (the factory then replaces the
/// worker) or cancelled mid-attempt (the worker stopped). Without that, a panic would hold the
/// endpoint's slot and its job in flight until a restart. The job it interrupted was not
/// recorded: it counts as a failed attempt and goes again under the same `webhook-id` (on a
/// shared store once its claim runs out, as when a node dies mid-attempt).
struct Run<'w> {
    worker: &'w DeliveryWorker,
    endpoint: &'w str,
    answers: Vec<Answer>,
    /// The job being attempted.
    current: Option<String>,
}

impl Drop for Run<'_> {
    fn drop(&mut self) {
        let mut answers = std::mem::take(&mut self.answers);
        if let Some(msg_id) = self.current.take() {
            if std::thread::panicking() {
                tracing::error!(endpoint = %self.endpoint, %msg_id, "a delivery attempt panicked; the job goes again");
            } else {
                tracing::debug!(endpoint = %self.endpoint, %msg_id, "a delivery attempt was cancelled; the job goes again");
            }
            answers.push(Answer {
                msg_id,
                delivered: false,
                settled: false,
                recorded_here: Some(false),
            });
        }
        // Only an outcome that ends the run is stored by the worker itself (or not at all).
        let recorded_here = answers.last().and_then(|a| {
            Some((
                (self.endpoint.to_string(), a.msg_id.clone()),
                a.recorded_here?,
            ))
        });
        self.worker.answered(
            self.endpoint,
            answers
                .into_iter()
                .map(|a| (a.msg_id, a.delivered, a.settled))
                .collect(),
        );
        if let Some(recorded) = recorded_here {
            let _ = self
                .worker
                .dispatcher
                .cast(DispatchMsg::Recorded(vec![recorded]));
        }
    }
}

/// The request body for `endpoint`'s format.
fn render(endpoint: &Endpoint, job: &DeliveryJob) -> Vec<u8> {
    match endpoint.format {
        PayloadFormat::Json => job.payload.text().as_bytes().to_vec(),
        PayloadFormat::Slack => {
            serde_json::to_vec(&slack_message(&job.event, &job.payload.value())).unwrap_or_default()
        }
    }
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
