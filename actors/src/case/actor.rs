//! `CaseActor`: the one writer of one case.
//!
//! It loads its snapshot on the first message (so spawning is cheap for the supervisor), applies
//! each command to a working copy, persists the copy and its events in one commit, adopts the
//! copy, replies, and only then publishes the events on the bus.

use std::sync::Arc;
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::CaseContext;
use super::command::{CaseError, CaseMsg};
use super::lifecycle::{self, Effects};
use super::supervisor::SupervisorMsg;
use crate::delivery::fix::{FIX_ENDPOINT_ID, FixResult};
use crate::domain::{Case, CaseId, CaseStatus};
use crate::store::{Commit, IdempotencyRecord, StoreError};
use crate::triage::{Terms, TriageInput};

/// How many similar cases triage attaches.
const SIMILAR_CASES: usize = 5;
/// Delay before retrying a failed finishing step.
const FINISH_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// The actor type; its state is [`CaseState`].
pub struct CaseActor;

/// Start arguments.
pub struct CaseArgs {
    pub case_id: CaseId,
    pub ctx: Arc<CaseContext>,
    pub supervisor: ActorRef<SupervisorMsg>,
}

/// A case actor's state.
pub struct CaseState {
    args: CaseArgs,
    /// `None` until loaded; `Some(None)` when no such case exists.
    case: Option<Option<Case>>,
}

impl Actor for CaseActor {
    type Msg = CaseMsg;
    type State = CaseState;
    type Arguments = CaseArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<CaseMsg>,
        args: CaseArgs,
    ) -> Result<CaseState, ActorProcessingErr> {
        Ok(CaseState { args, case: None })
    }

    async fn handle(
        &self,
        myself: ActorRef<CaseMsg>,
        msg: CaseMsg,
        state: &mut CaseState,
    ) -> Result<(), ActorProcessingErr> {
        let started = Instant::now();
        let ctx = state.args.ctx.clone();
        if state.case.is_none() && matches!(msg, CaseMsg::Create { .. }) {
            // A create carries an id minted for it (`CaseDirectory::create`, v4 random): no
            // stored case has it, so there is nothing to load.
            state.case = Some(None);
        } else if state.case.is_none() {
            match ctx.store.load_case(state.args.case_id).await {
                Ok(loaded) => {
                    // A crash between two steps of a transition is finished on rehydration.
                    if loaded.as_ref().is_some_and(|c| {
                        matches!(c.status, CaseStatus::Executing | CaseStatus::Delivering)
                    }) {
                        schedule(&state.args, CaseMsg::Finish, None);
                    }
                    state.case = Some(loaded);
                }
                Err(e) => {
                    msg.fail(e.into());
                    ctx.metrics.handled(started.elapsed());
                    return Ok(());
                }
            }
        }
        if let Stored::Unknown = handle_loaded(&myself, msg, state).await {
            // A failed write may still have landed (a lost reply): reload before the next command
            // rather than build on a snapshot that might be stale.
            state.case = None;
        }
        ctx.metrics.handled(started.elapsed());
        Ok(())
    }
}

/// Sends the case a message of its own (finishing a transition, retrying a step) through its
/// supervisor rather than to itself: if this actor is being passivated meanwhile, the
/// supervisor parks the message and hands it to the case's next actor, so no case is left
/// half-way in `executing` or `delivering`.
fn schedule(args: &CaseArgs, msg: CaseMsg, after: Option<std::time::Duration>) {
    let case_id = args.case_id;
    args.ctx.supervisor_metrics.queued();
    let sent = match after {
        None => args
            .supervisor
            .cast(SupervisorMsg::Deliver(case_id, msg))
            .is_ok(),
        Some(delay) => {
            args.supervisor
                .send_after(delay, move || SupervisorMsg::Deliver(case_id, msg));
            true
        }
    };
    if !sent {
        // The supervisor is gone (shutdown); the next start resumes unfinished cases.
        args.ctx.supervisor_metrics.mailbox.dec();
    }
}

/// Whether the in-memory snapshot is known to match the store after a command.
enum Stored {
    Known,
    Unknown,
}

async fn handle_loaded(myself: &ActorRef<CaseMsg>, msg: CaseMsg, state: &mut CaseState) -> Stored {
    let ctx = state.args.ctx.clone();
    let now = ctx.clock.now();
    let slot = state.case.get_or_insert(None);

    if let CaseMsg::Create {
        intake,
        idempotency_key,
        reply,
    } = msg
    {
        if let Some(existing) = slot {
            // Only a repeated create reaches an existing case; answer with what exists.
            let _ = reply.send(Ok(existing.clone()));
            return Stored::Known;
        }
        let mut classification = ctx.triage.classify(&TriageInput {
            description: &intake.description,
            severity: intake.severity,
            product: intake.product.as_deref(),
            environment: intake.environment,
        });
        let terms = Terms::of(&intake.description);
        classification.similar_cases =
            ctx.similar
                .similar_to(&terms, SIMILAR_CASES, Some(state.args.case_id.0));
        let (case, events) = lifecycle::create(
            state.args.case_id,
            *intake,
            classification,
            &ctx.routing,
            now,
        );
        let idempotency = idempotency_key.map(|key| IdempotencyRecord {
            key,
            case_id: case.case_id,
            created_at: now,
        });
        match persist(&state.args, case, events, idempotency, 0).await {
            Ok(case) => {
                ctx.similar.record_terms(case.case_id.0, &terms);
                *slot = Some(case.clone());
                let _ = reply.send(Ok(case));
            }
            Err(e) => {
                let _ = reply.send(Err(e));
                return Stored::Unknown;
            }
        }
        return Stored::Known;
    }

    let Some(current) = slot.as_ref() else {
        msg.fail(CaseError::NotFound);
        let _ = state
            .args
            .supervisor
            .cast(SupervisorMsg::Vacant(state.args.case_id, myself.get_id()));
        return Stored::Known;
    };

    let mut work = current.clone();
    let before = work.history.len();
    let (outcome, reply) = match msg {
        CaseMsg::Create { .. } => unreachable!("handled above"),
        CaseMsg::Get { reply } => {
            let _ = reply.send(Ok(work));
            return Stored::Known;
        }
        CaseMsg::InjectPanic { reply } => {
            if ctx.fault_injection {
                panic!("injected fault in case actor {}", state.args.case_id);
            }
            let _ = reply.send(Err(CaseError::NotFound));
            return Stored::Known;
        }
        CaseMsg::Finish | CaseMsg::FixSettled => {
            let effects = match lifecycle::pending_fix(&work).map(str::to_string) {
                Some(msg_id) => match fix_outcome(&ctx, &msg_id).await {
                    Ok(Some(result)) => {
                        lifecycle::fix_settled(&mut work, result, &ctx.routing, &ctx.links, now)
                    }
                    // Still pending: the pool sends FixSettled once it is settled.
                    Ok(None) => None,
                    Err(e) => {
                        tracing::warn!(case_id = %state.args.case_id, error = %e, "reading the fix outcome failed; retrying");
                        schedule(&state.args, CaseMsg::FixSettled, Some(FINISH_RETRY));
                        None
                    }
                },
                None => lifecycle::finish(&mut work, &ctx.links, now),
            };
            let Some(effects) = effects else {
                return Stored::Known;
            };
            return match persist(&state.args, work, effects.events, None, before).await {
                Ok(case) => {
                    *slot = Some(case);
                    Stored::Known
                }
                Err(e) => {
                    // Stay in executing/delivering and try again; rehydration also retries.
                    tracing::warn!(case_id = %state.args.case_id, error = %e, "finishing a case failed; retrying");
                    schedule(&state.args, CaseMsg::Finish, Some(FINISH_RETRY));
                    Stored::Unknown
                }
            };
        }
        CaseMsg::SelfService {
            customer_id,
            force,
            reply,
        } => {
            if work.customer_id != customer_id {
                let _ = reply.send(Err(CaseError::NotFound));
                return Stored::Known;
            }
            let solution = ctx
                .triage
                .solution_for(&work.classification, &work.description);
            (
                lifecycle::self_service(&mut work, force, solution, now),
                reply,
            )
        }
        CaseMsg::Decide { decision, reply } => (
            lifecycle::decide(&mut work, decision, &ctx.routing, ctx.fix_executor, now),
            reply,
        ),
        CaseMsg::Feedback {
            score,
            comment,
            reply,
        } => (lifecycle::feedback(&mut work, score, comment, now), reply),
        CaseMsg::Collaborative { request, reply } => {
            if work.customer_id != request.customer_id {
                let _ = reply.send(Err(CaseError::NotFound));
                return Stored::Known;
            }
            (
                lifecycle::collaborative(&mut work, request, &ctx.routing, now),
                reply,
            )
        }
        CaseMsg::Review { decision, reply } => (lifecycle::review(&mut work, decision, now), reply),
    };
    let Effects { events, finish } = match outcome {
        Ok(effects) => effects,
        Err(e) => {
            let _ = reply.send(Err(e));
            return Stored::Known;
        }
    };
    match persist(&state.args, work, events, None, before).await {
        Ok(case) => {
            *slot = Some(case.clone());
            let _ = reply.send(Ok(case));
            if finish {
                schedule(&state.args, CaseMsg::Finish, None);
            }
            Stored::Known
        }
        Err(e) => {
            let _ = reply.send(Err(e));
            Stored::Unknown
        }
    }
}

/// What became of the fix request `msg_id`, from its delivery job; `None` while it is pending
/// (or not queued yet). Without a configured executor nothing will send it: that is a failure.
async fn fix_outcome(
    ctx: &CaseContext,
    msg_id: &str,
) -> Result<Option<FixResult>, crate::store::StoreError> {
    if !ctx.fix_executor {
        return Ok(Some(FixResult::Failed(
            "no fix executor is configured (delivery.fix_executor_url)".into(),
        )));
    }
    let job = ctx.store.load_delivery(FIX_ENDPOINT_ID, msg_id).await?;
    Ok(job.as_ref().and_then(FixResult::of))
}

/// Commits the snapshot and its events, then publishes the events. Returns the stored case.
///
/// When nodes share the store the commit carries the case's lease as a fence: a new case's
/// first commit takes it, every later one must still hold it. A fenced commit means another
/// node hosts the case now: the supervisor retires this actor, the caller gets 503.
async fn persist(
    args: &CaseArgs,
    mut case: Case,
    events: Vec<crate::domain::Event>,
    idempotency: Option<IdempotencyRecord>,
    history_before: usize,
) -> Result<Case, CaseError> {
    let ctx = &args.ctx;
    let lease = super::lease_name(case.case_id);
    let created = case.version == 0;
    let lease_lost = || {
        let _ = args.supervisor.cast(SupervisorMsg::LeaseLost(args.case_id));
    };
    let fence = if created {
        ctx.cluster.fence_to_take(&lease)
    } else {
        match ctx.cluster.fence(&lease) {
            Ok(fence) => fence,
            Err(e) => {
                lease_lost();
                return Err(e.into());
            }
        }
    };
    case.version += 1;
    let commit = Commit {
        case,
        events,
        idempotency,
        fence,
    };
    let sent = std::time::Instant::now();
    if let Err(e) = ctx.store.commit(&commit).await {
        if matches!(e, StoreError::Fenced(_)) {
            // Another node holds the lease: commands parked meanwhile go to it.
            if let Some(fence) = &commit.fence {
                ctx.cluster.forget(&lease, &fence.token);
            }
            lease_lost();
        }
        return Err(e.into());
    }
    if let (true, Some(fence)) = (created, &commit.fence) {
        ctx.cluster.adopt(&lease, fence, sent);
    }
    ctx.telemetry.events_recorded(&commit.events);
    for entry in commit.case.history.iter().skip(history_before) {
        ctx.telemetry.transition(entry.status);
    }
    ctx.bus.publish(commit.events);
    Ok(commit.case)
}
