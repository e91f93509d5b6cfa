//! `CaseSupervisor`: one shard of the case actors.
//!
//! The supervisor is the only spawner of its cases and keeps its own map `case id → actor`
//! (never the global registry: a name is freed before `post_stop` finishes, so two instances
//! could overlap). Commands are routed through it: it spawns or rehydrates the case actor and
//! forwards the command, which answers the caller directly.
//!
//! Retiring an actor (idle passivation, or a lookup of a case that does not exist) drains it:
//! queued commands still run. Until the old actor has terminated, new commands for that case
//! are parked here and handed to a fresh actor afterwards, so one case never has two writers.
//!
//! When several nodes share the store, a case is hosted only by the node holding its lease
//! ([`crate::cluster`]). A command for a case this node does not hold is parked while a task
//! takes the lease, asking the holder to hand the case over (it drains its actor and gives the
//! lease back); a read of a case hosted elsewhere is answered from the store instead. A new
//! case takes its lease with its first commit, so intake waits for nobody.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ractor::concurrency::JoinHandle;
use ractor::{
    Actor, ActorId, ActorProcessingErr, ActorRef, MessagingErr, RpcReplyPort, SupervisionEvent,
};

use super::CaseContext;
use super::actor::{CaseActor, CaseArgs};
use super::command::{CaseError, CaseMsg};
use crate::cluster::{Acquired, Cluster};
use crate::domain::CaseId;

/// Supervision limits of a shard.
#[derive(Debug, Clone)]
pub struct SupervisorSettings {
    /// Passivate a case actor after this long without messages (by the injected clock).
    pub idle_timeout: Duration,
    /// How often idle actors are looked for (real time).
    pub sweep_interval: Duration,
    /// Most case actors this shard keeps live; past it the least recently used are passivated
    /// (their snapshots are in the store), so memory stays bounded under sustained intake
    /// however long `idle_timeout` is.
    pub max_active: usize,
    /// Restarts of one case allowed within `restart_window`; past it the case answers
    /// `Unavailable` until the window has passed.
    pub restart_budget: usize,
    pub restart_window: Duration,
    /// How long shutdown waits for case actors to drain.
    pub drain_timeout: Duration,
    /// How long a command waits for the lease of a case hosted by another node.
    pub lease_wait: Duration,
}

/// Messages a shard supervisor handles.
#[derive(Debug)]
pub enum SupervisorMsg {
    /// Route a command to its case, spawning or rehydrating the actor as needed.
    Deliver(CaseId, CaseMsg),
    /// A case actor found no such case; it may be retired.
    Vacant(CaseId, ActorId),
    /// Periodic: passivate idle actors.
    Sweep,
    /// Refuse new commands, drain every case actor and wait for them (shutdown).
    DrainAll(RpcReplyPort<()>),
    /// This node now holds the case's lease: host it and run what waited.
    LeaseGranted(CaseId),
    /// The case's lease could not be had in time: what waited is refused (503).
    LeaseRefused(CaseId),
    /// Another node asks for the case: drain its actor and give the lease back.
    Release(CaseId),
    /// The case's lease is gone (lapsed, or a commit was fenced): retire its actor.
    LeaseLost(CaseId),
}

/// The supervisor actor type.
pub struct CaseSupervisor;

struct Live {
    actor: ActorRef<CaseMsg>,
    /// By the injected clock, for the idle timeout.
    last_used: DateTime<Utc>,
    /// This shard's delivery count at the last use: a strict recency order for `shed`, even
    /// when the clock stands still.
    used_at: u64,
}

/// A shard's state.
pub struct SupervisorState {
    ctx: Arc<CaseContext>,
    settings: SupervisorSettings,
    live: HashMap<CaseId, Live>,
    /// Every actor of this shard still running, live or draining.
    by_actor: HashMap<ActorId, CaseId>,
    /// Deliveries so far (the recency order of `Live::used_at`).
    uses: u64,
    /// Cases whose previous actor is still stopping, or whose lease is being taken, with the
    /// commands waiting for the next actor.
    parked: HashMap<CaseId, Vec<CaseMsg>>,
    /// Cases whose lease a task is taking (their commands are parked).
    leasing: HashSet<CaseId>,
    /// Cases being handed to another node: their lease goes back once the actor has stopped.
    handing_over: HashSet<CaseId>,
    /// Recent failure times per case, for the restart budget.
    failures: HashMap<CaseId, Vec<DateTime<Utc>>>,
    draining: bool,
    sweeper: Option<JoinHandle<()>>,
}

impl Actor for CaseSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = (Arc<CaseContext>, SupervisorSettings);

    async fn pre_start(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        (ctx, settings): Self::Arguments,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState {
            ctx,
            settings,
            live: HashMap::new(),
            by_actor: HashMap::new(),
            uses: 0,
            parked: HashMap::new(),
            leasing: HashSet::new(),
            handing_over: HashSet::new(),
            failures: HashMap::new(),
            draining: false,
            sweeper: None,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let period = state.settings.sweep_interval.max(Duration::from_millis(5));
        state.sweeper = Some(myself.send_interval(period, || SupervisorMsg::Sweep));
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(sweeper) = state.sweeper.take() {
            sweeper.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let started = std::time::Instant::now();
        match msg {
            SupervisorMsg::Deliver(case_id, msg) => {
                state.ctx.supervisor_metrics.mailbox.dec();
                state.deliver(&myself, case_id, msg).await
            }
            SupervisorMsg::Vacant(case_id, actor_id) => {
                if state
                    .live
                    .get(&case_id)
                    .is_some_and(|l| l.actor.get_id() == actor_id)
                {
                    state.retire(case_id);
                }
            }
            SupervisorMsg::Sweep => {
                let now = state.ctx.clock.now();
                let idle = chrono::Duration::from_std(state.settings.idle_timeout)
                    .unwrap_or(chrono::Duration::MAX);
                let expired: Vec<CaseId> = state
                    .live
                    .iter()
                    .filter(|(_, l)| now - l.last_used >= idle)
                    .map(|(id, _)| *id)
                    .collect();
                for case_id in expired {
                    state.retire(case_id);
                    state.ctx.metrics.passivated(&case_id);
                }
            }
            SupervisorMsg::DrainAll(reply) => {
                state.draining = true;
                for (_, waiting) in state.parked.drain() {
                    for msg in waiting {
                        msg.fail(CaseError::Unavailable);
                    }
                }
                myself
                    .drain_children_and_wait(Some(state.settings.drain_timeout))
                    .await;
                let _ = reply.send(());
            }
            SupervisorMsg::LeaseGranted(case_id) => {
                state.leasing.remove(&case_id);
                let waiting = state.parked.remove(&case_id).unwrap_or_default();
                if waiting.is_empty() || state.draining {
                    for msg in waiting {
                        msg.fail(CaseError::Unavailable);
                    }
                    state.give_back(case_id);
                } else {
                    for msg in waiting {
                        state.deliver(&myself, case_id, msg).await;
                    }
                }
            }
            SupervisorMsg::LeaseRefused(case_id) => {
                state.leasing.remove(&case_id);
                for msg in state.parked.remove(&case_id).unwrap_or_default() {
                    msg.fail(CaseError::Unavailable);
                }
            }
            SupervisorMsg::Release(case_id) => {
                if state.live.contains_key(&case_id) {
                    tracing::debug!(case_id = %case_id, "handing the case over to another node");
                    state.handing_over.insert(case_id);
                    state.retire(case_id);
                } else if !state.parked.contains_key(&case_id) {
                    // Not hosted here (any more): a lease left behind goes back.
                    state.give_back(case_id);
                }
            }
            SupervisorMsg::LeaseLost(case_id) => {
                if state.live.contains_key(&case_id) {
                    tracing::warn!(case_id = %case_id, "case lease lost; retiring its actor");
                    state.retire(case_id);
                }
            }
        }
        state.ctx.supervisor_metrics.handled(started.elapsed());
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (actor_id, failed) = match &event {
            SupervisionEvent::ActorTerminated(cell, _, _) => (cell.get_id(), false),
            SupervisionEvent::ActorFailed(cell, err) => {
                tracing::error!(actor = %cell.get_id(), error = %err, "case actor failed");
                (cell.get_id(), true)
            }
            _ => return Ok(()),
        };
        let Some(case_id) = state.by_actor.remove(&actor_id) else {
            return Ok(());
        };
        state.ctx.metrics.stopped(&case_id);
        if state
            .live
            .get(&case_id)
            .is_some_and(|l| l.actor.get_id() == actor_id)
        {
            state.live.remove(&case_id);
        }
        let handed_over = state.handing_over.remove(&case_id);
        if failed {
            state.ctx.metrics.failed(&case_id);
            let now = state.ctx.clock.now();
            state.failures.entry(case_id).or_default().push(now);
            if !state.draining && !handed_over && state.within_budget(case_id) {
                // Restart at once from the last snapshot, so the case is live again.
                if state.spawn(&myself, case_id).await.is_some() {
                    state.ctx.metrics.restarted(&case_id);
                    tracing::warn!(case_id = %case_id, "case actor restarted from its snapshot");
                }
            }
        }
        if state.live.contains_key(&case_id) {
            // Restarted: the parked commands go to the new actor.
            if let Some(waiting) = state.parked.remove(&case_id) {
                for msg in waiting {
                    state.deliver(&myself, case_id, msg).await;
                }
            }
            return Ok(());
        }
        if handed_over {
            // Another node asked for it: the lease goes back even if commands arrived here
            // meanwhile; those compete for it again.
            state.give_back(case_id);
        }
        match state.parked.remove(&case_id) {
            Some(waiting) if handed_over && !waiting.is_empty() && !state.draining => {
                // The node that asked gets its turn first: taking the lease straight back
                // would starve it while both keep writing to the case.
                for msg in waiting {
                    state.take_lease(&myself, case_id, msg, HANDOVER_YIELD);
                }
            }
            Some(waiting) if !waiting.is_empty() => {
                for msg in waiting {
                    state.deliver(&myself, case_id, msg).await;
                }
            }
            _ if handed_over => {}
            _ => state.let_lapse(case_id),
        }
        Ok(())
    }
}

impl SupervisorState {
    async fn deliver(&mut self, myself: &ActorRef<SupervisorMsg>, case_id: CaseId, msg: CaseMsg) {
        if self.draining {
            msg.fail(CaseError::Unavailable);
            return;
        }
        if let Some(waiting) = self.parked.get_mut(&case_id) {
            waiting.push(msg);
            return;
        }
        let now = self.ctx.clock.now();
        self.uses += 1;
        let actor = match self.live.get_mut(&case_id) {
            Some(live) => {
                live.last_used = now;
                live.used_at = self.uses;
                live.actor.clone()
            }
            None => {
                if !self.within_budget(case_id) {
                    msg.fail(CaseError::Unavailable);
                    return;
                }
                let cluster = &self.ctx.cluster;
                // A new case takes its lease with its first commit; anything else needs the
                // lease first, except a read, which the store answers.
                if !matches!(msg, CaseMsg::Create { .. })
                    && !cluster.holds(&super::lease_name(case_id))
                {
                    match msg {
                        CaseMsg::Get { reply } => self.read_from_store(case_id, reply),
                        msg => self.take_lease(myself, case_id, msg, Duration::ZERO),
                    }
                    return;
                }
                match self.spawn(myself, case_id).await {
                    Some(actor) => actor,
                    None => {
                        msg.fail(CaseError::Internal);
                        return;
                    }
                }
            }
        };
        if let Err(MessagingErr::SendErr(msg)) = actor.cast(msg) {
            // The actor is stopping but its exit is not reported yet: wait for it.
            self.live.remove(&case_id);
            self.parked.entry(case_id).or_default().push(msg);
        }
    }

    async fn spawn(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        case_id: CaseId,
    ) -> Option<ActorRef<CaseMsg>> {
        // Every spawn, a restart included, keeps within the cap. Draining actors count too:
        // they hold memory until they have stopped.
        if self.by_actor.len() >= self.settings.max_active {
            self.shed();
        }
        let args = CaseArgs {
            case_id,
            ctx: self.ctx.clone(),
            supervisor: myself.clone(),
        };
        match Actor::spawn_linked(None, CaseActor, args, myself.get_cell()).await {
            Ok((actor, _)) => {
                self.ctx.metrics.spawned(&case_id);
                self.by_actor.insert(actor.get_id(), case_id);
                self.live.insert(
                    case_id,
                    Live {
                        actor: actor.clone(),
                        last_used: self.ctx.clock.now(),
                        used_at: self.uses,
                    },
                );
                Some(actor)
            }
            Err(e) => {
                tracing::error!(case_id = %case_id, error = %e, "cannot spawn case actor");
                None
            }
        }
    }

    /// Answers a read of a case this node does not host from its last committed snapshot.
    fn read_from_store(&self, case_id: CaseId, reply: super::command::CaseReply) {
        let store = self.ctx.store.clone();
        tokio::spawn(async move {
            let answer = match store.load_case(case_id).await {
                Ok(Some(case)) => Ok(case),
                Ok(None) => Err(CaseError::NotFound),
                Err(e) => Err(e.into()),
            };
            let _ = reply.send(answer);
        });
    }

    /// Parks `msg` and starts a task taking the case's lease (asking its holder to hand the
    /// case over), which answers with `LeaseGranted` or `LeaseRefused`.
    fn take_lease(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        case_id: CaseId,
        msg: CaseMsg,
        first_wait: Duration,
    ) {
        self.parked.entry(case_id).or_default().push(msg);
        if !self.leasing.insert(case_id) {
            return;
        }
        let cluster = self.ctx.cluster.clone();
        let myself = myself.clone();
        let wait = self.settings.lease_wait;
        tokio::spawn(async move {
            tokio::time::sleep(first_wait).await;
            let granted = take_lease(&cluster, case_id, wait).await;
            let msg = if granted {
                SupervisorMsg::LeaseGranted(case_id)
            } else {
                SupervisorMsg::LeaseRefused(case_id)
            };
            if myself.cast(msg).is_err() && granted {
                // The supervisor is gone (shutdown): nobody will host it.
                cluster.release(&super::lease_name(case_id)).await;
            }
        });
    }

    /// Gives the case's lease back (in the background; a no-op when single), when another
    /// node asked for the case.
    fn give_back(&self, case_id: CaseId) {
        let cluster = &self.ctx.cluster;
        if cluster.is_shared() {
            tokio::spawn(cluster.release_owned(super::lease_name(case_id)));
        }
    }

    /// Leaves the case's lease to lapse once its actor stopped with nobody waiting: this node
    /// takes it back at once if the case is used here again, and gives it back if another node
    /// asks.
    fn let_lapse(&self, case_id: CaseId) {
        self.ctx.cluster.let_lapse(&super::lease_name(case_id));
    }

    /// Drains the case's actor; commands arriving meanwhile are parked until it has stopped.
    fn retire(&mut self, case_id: CaseId) {
        if let Some(live) = self.live.remove(&case_id) {
            self.parked.entry(case_id).or_default();
            if live.actor.drain().is_err() {
                // Already stopping; its termination event will release the parked commands.
            }
        }
    }

    /// Passivates the least recently used actors: at least enough to make room for one more,
    /// and an eighth of the limit at a time, so the scan is paid once per many spawns.
    fn shed(&mut self) {
        let max = self.settings.max_active.max(1);
        let excess = (self.by_actor.len() + 1).saturating_sub(max);
        let count = excess.max(max / 8).min(self.live.len());
        if count == 0 {
            return;
        }
        let mut by_age: Vec<(u64, CaseId)> = self
            .live
            .iter()
            .map(|(id, live)| (live.used_at, *id))
            .collect();
        by_age.select_nth_unstable_by_key(count - 1, |(used, _)| *used);
        for (_, case_id) in by_age.into_iter().take(count) {
            self.retire(case_id);
            self.ctx.metrics.passivated(&case_id);
        }
    }

    /// True while the case has failed at most `restart_budget` times within the window.
    fn within_budget(&mut self, case_id: CaseId) -> bool {
        let now = self.ctx.clock.now();
        let window = chrono::Duration::from_std(self.settings.restart_window)
            .unwrap_or(chrono::Duration::MAX);
        let Some(times) = self.failures.get_mut(&case_id) else {
            return true;
        };
        times.retain(|t| now - *t < window);
        if times.is_empty() {
            self.failures.remove(&case_id);
            return true;
        }
        times.len() <= self.settings.restart_budget
    }
}

/// Takes the lease of `case_id` within `wait`: while another node holds it, asks that node (at
/// most every [`ASK_EVERY`]) to hand the case over, polling with a short back-off. False when
/// the wait is over, or at once when the store cannot be reached.
async fn take_lease(cluster: &Cluster, case_id: CaseId, wait: Duration) -> bool {
    let name = super::lease_name(case_id);
    let deadline = tokio::time::Instant::now() + wait;
    let mut backoff = Duration::from_millis(2);
    let mut asked: Option<tokio::time::Instant> = None;
    loop {
        match cluster.acquire(&name).await {
            Ok(Acquired::Taken) => return true,
            Ok(Acquired::HeldBy(node)) => {
                if asked.is_none_or(|at| at.elapsed() >= ASK_EVERY) {
                    let channel = super::release_channel(&node);
                    if let Err(e) = cluster
                        .publish(&channel, case_id.to_string().into_bytes())
                        .await
                    {
                        tracing::debug!(case_id = %case_id, error = %e, "asking for a case failed");
                    }
                    asked = Some(tokio::time::Instant::now());
                }
            }
            // The store is away: answer 503 now (within store.timeout), not after the wait.
            Err(e) => {
                tracing::debug!(case_id = %case_id, error = %e, "taking a case lease failed");
                return false;
            }
        }
        if tokio::time::Instant::now() + backoff >= deadline {
            return false;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(50));
    }
}

/// How often a node waiting for a case asks its holder again (a request may be lost).
const ASK_EVERY: Duration = Duration::from_millis(250);
/// How long commands that arrived while a case was being handed over wait before they ask
/// for it back (the asking node polls at least every 50 ms).
const HANDOVER_YIELD: Duration = Duration::from_millis(100);
