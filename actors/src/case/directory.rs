//! `CaseDirectory`: the cheap-clone handle the edge uses to reach cases.
//!
//! It picks the shard supervisor of a case by its id and waits for the answer with a deadline.

use std::sync::Arc;
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef, ActorStatus};
use uuid::Uuid;

use tokio::sync::broadcast::error::RecvError;

use super::CaseContext;
use super::command::{CaseError, CaseMsg, CaseReply, CollaborativeRequest, ReviewDecision};
use super::supervisor::{CaseSupervisor, SupervisorMsg, SupervisorSettings};
use crate::cluster::link::Received;
use crate::cluster::{Acquired, Cluster};
use crate::delivery::fix::FixOutcomes;
use crate::domain::{Case, CaseId, CaseStatus, Decision, Intake};
use crate::store::{CaseQuery, StoreError};

/// Routes commands to case actors.
///
/// ractor mailboxes are unbounded, so the directory bounds the work in front of them: at most
/// `max_in_flight` commands are queued or running across all cases; past that a command is
/// refused at once with [`CaseError::Unavailable`] (503) instead of queueing without limit.
#[derive(Clone)]
pub struct CaseDirectory {
    shards: Arc<Vec<ActorRef<SupervisorMsg>>>,
    ctx: Arc<CaseContext>,
    call_timeout: Duration,
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for CaseDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaseDirectory")
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

impl CaseDirectory {
    /// Starts `shards` supervisors (at least one).
    pub async fn start(
        ctx: Arc<CaseContext>,
        settings: SupervisorSettings,
        shards: usize,
        call_timeout: Duration,
        max_in_flight: usize,
    ) -> Result<Self, ractor::SpawnErr> {
        let mut refs = Vec::with_capacity(shards.max(1));
        for shard in 0..shards.max(1) {
            let (actor, _) =
                Actor::spawn(None, CaseSupervisor, (ctx.clone(), settings.clone())).await?;
            ctx.supervisor_metrics
                .spawned(&format_args!("case-supervisor-{shard}"));
            refs.push(actor);
        }
        let shards = Arc::new(refs);
        listen_for_handovers(&ctx.cluster, shards.clone()).await;
        Ok(CaseDirectory {
            shards,
            ctx,
            call_timeout,
            in_flight: Arc::new(tokio::sync::Semaphore::new(max_in_flight.max(1))),
        })
    }

    /// The shared context (store, triage, clock, stats).
    pub fn context(&self) -> &Arc<CaseContext> {
        &self.ctx
    }

    fn shard(&self, id: CaseId) -> &ActorRef<SupervisorMsg> {
        shard_of(&self.shards, id)
    }

    async fn call(
        &self,
        id: CaseId,
        build: impl FnOnce(CaseReply) -> CaseMsg,
    ) -> Result<Case, CaseError> {
        let Ok(_permit) = self.in_flight.try_acquire() else {
            return Err(CaseError::Unavailable);
        };
        // Commands in flight are the case actors' mailbox depth, exactly (bounded above).
        let depth = &self.ctx.metrics.mailbox;
        depth.inc();
        self.ctx.supervisor_metrics.queued();
        let shard = self.shard(id);
        let answer = match shard
            .call(
                |reply| SupervisorMsg::Deliver(id, build(reply)),
                Some(self.call_timeout),
            )
            .await
        {
            Ok(CallResult::Success(answer)) => answer,
            Ok(CallResult::Timeout) => Err(CaseError::Unavailable),
            // The reply port was dropped: the actor failed while handling the command.
            Ok(CallResult::SenderError) => Err(CaseError::Internal),
            Err(_) => Err(CaseError::Unavailable),
        };
        depth.dec();
        answer
    }

    /// Triages and stores a new case with a fresh id.
    pub async fn create(
        &self,
        intake: Intake,
        idempotency_key: Option<String>,
    ) -> Result<Case, CaseError> {
        let id = CaseId::new();
        self.call(id, |reply| CaseMsg::Create {
            intake: Box::new(intake),
            idempotency_key,
            reply,
        })
        .await
    }

    /// The current snapshot.
    pub async fn get(&self, id: CaseId) -> Result<Case, CaseError> {
        self.call(id, |reply| CaseMsg::Get { reply }).await
    }

    /// Offers self-service.
    pub async fn self_service(
        &self,
        id: CaseId,
        customer_id: Uuid,
        force: bool,
    ) -> Result<Case, CaseError> {
        self.call(id, |reply| CaseMsg::SelfService {
            customer_id,
            force,
            reply,
        })
        .await
    }

    /// The customer's approve/reject.
    pub async fn decide(&self, id: CaseId, decision: Decision) -> Result<Case, CaseError> {
        self.call(id, |reply| CaseMsg::Decide { decision, reply })
            .await
    }

    /// The customer's rating.
    pub async fn feedback(
        &self,
        id: CaseId,
        score: u8,
        comment: Option<String>,
    ) -> Result<Case, CaseError> {
        self.call(id, |reply| CaseMsg::Feedback {
            score,
            comment,
            reply,
        })
        .await
    }

    /// Opens a review.
    pub async fn collaborative(
        &self,
        id: CaseId,
        request: CollaborativeRequest,
    ) -> Result<Case, CaseError> {
        self.call(id, |reply| CaseMsg::Collaborative { request, reply })
            .await
    }

    /// A reviewer's action; finds the case through the stored review.
    pub async fn review(&self, decision: ReviewDecision) -> Result<Case, CaseError> {
        let review = self
            .ctx
            .store
            .load_review(&decision.review_id)
            .await?
            .ok_or(CaseError::ReviewNotFound)?;
        self.call(review.case_id, |reply| CaseMsg::Review { decision, reply })
            .await
    }

    /// Test-only fault hook (refused unless fault injection is enabled).
    pub async fn inject_panic(&self, id: CaseId) -> Result<Case, CaseError> {
        self.call(id, |reply| CaseMsg::InjectPanic { reply }).await
    }

    /// Sends an internal message to a case, without waiting (and outside the in-flight bound:
    /// internal messages are bounded by what sends them).
    fn notify(&self, id: CaseId, msg: CaseMsg) {
        self.ctx.supervisor_metrics.queued();
        if self
            .shard(id)
            .cast(SupervisorMsg::Deliver(id, msg))
            .is_err()
        {
            self.ctx.supervisor_metrics.mailbox.dec();
        }
    }

    /// Wakes every case left `executing` or `delivering` (a crash or stop between two steps of
    /// a transition, or a fix outcome whose message was lost), so each finishes from what the
    /// store says. Returns how many were woken. Run once at start, in the background: it reads
    /// every snapshot.
    ///
    /// When nodes share the store, a case another node hosts is left to that node (waking it
    /// here would pull it over from a healthy node that is finishing it). One whose host has
    /// died is still woken: its lease lapses within `cluster.lease_ttl`, so those are looked at
    /// again once that has passed.
    pub async fn resume_unfinished(&self) -> Result<usize, StoreError> {
        let mut woken = 0;
        let mut hosted_elsewhere = Vec::new();
        for status in [CaseStatus::Executing, CaseStatus::Delivering] {
            let mut cursor = None;
            loop {
                let page = self
                    .ctx
                    .store
                    .list_cases(CaseQuery {
                        status: Some(status),
                        limit: 256,
                        cursor,
                    })
                    .await?;
                for case in &page.cases {
                    if !self.take_unless_hosted_elsewhere(case.case_id).await {
                        hosted_elsewhere.push(case.case_id);
                        continue;
                    }
                    self.notify(case.case_id, CaseMsg::Finish);
                    woken += 1;
                }
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        if hosted_elsewhere.is_empty() {
            return Ok(woken);
        }
        // A host that is alive keeps renewing; a dead one's lease is gone after the ttl.
        tokio::time::sleep(self.ctx.cluster.lease_ttl() + LEASE_LAPSE_MARGIN).await;
        for id in hosted_elsewhere {
            // Stopped meanwhile: taking leases now would only hold them from the other nodes.
            if self.shard(id).get_status() != ActorStatus::Running {
                break;
            }
            if self.take_unless_hosted_elsewhere(id).await {
                self.notify(id, CaseMsg::Finish);
                woken += 1;
            }
        }
        Ok(woken)
    }

    /// Takes the case's lease for this node unless another node holds it now; true when this
    /// node may host the case (also when it held the lease already, when it runs alone, or
    /// when the store cannot say: then the supervisor's own lease handling decides, as for any
    /// command).
    async fn take_unless_hosted_elsewhere(&self, id: CaseId) -> bool {
        let cluster = &self.ctx.cluster;
        if !cluster.is_shared() {
            return true;
        }
        !matches!(
            cluster.acquire(&super::lease_name(id)).await,
            Ok(Acquired::HeldBy(_))
        )
    }

    /// Number of shard supervisors.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Drains every case actor, then stops the supervisors and waits for them.
    pub async fn shutdown(&self, timeout: Duration) {
        for shard in self.shards.iter() {
            let _ = shard.call(SupervisorMsg::DrainAll, Some(timeout)).await;
        }
        for (n, shard) in self.shards.iter().enumerate() {
            let _ = shard.stop_and_wait(None, Some(timeout)).await;
            self.ctx
                .supervisor_metrics
                .stopped(&format_args!("case-supervisor-{n}"));
        }
    }
}

/// How long after a lease's ttl a lease of a dead node is surely gone (clock steps, a renewal
/// in flight when it died).
const LEASE_LAPSE_MARGIN: Duration = Duration::from_millis(500);

fn shard_of(shards: &[ActorRef<SupervisorMsg>], id: CaseId) -> &ActorRef<SupervisorMsg> {
    &shards[(id.0.as_u128() % shards.len() as u128) as usize]
}

/// When nodes share the store: hands a case over when another node asks for it (its release
/// channel), and retires the actor of a case whose lease was lost. Nothing to do when single.
async fn listen_for_handovers(cluster: &Cluster, shards: Arc<Vec<ActorRef<SupervisorMsg>>>) {
    let Some(mut requests) = cluster
        .subscribe(&super::release_channel(cluster.node()))
        .await
    else {
        return;
    };
    let asked = shards.clone();
    tokio::spawn(async move {
        // A lost request is asked again by the node waiting for the case.
        while let Some(item) = requests.recv().await {
            let Received::Message(payload) = item else {
                continue;
            };
            if let Some(id) = std::str::from_utf8(&payload).ok().and_then(CaseId::parse) {
                let _ = shard_of(&asked, id).cast(SupervisorMsg::Release(id));
            }
        }
    });
    let mut lost = cluster.lost();
    tokio::spawn(async move {
        loop {
            match lost.recv().await {
                Ok(name) => {
                    let id = name.strip_prefix("case:").and_then(CaseId::parse);
                    if let Some(id) = id {
                        let _ = shard_of(&shards, id).cast(SupervisorMsg::LeaseLost(id));
                    }
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            }
        }
    });
}

impl FixOutcomes for CaseDirectory {
    fn settled(&self, case_id: CaseId) {
        self.notify(case_id, CaseMsg::FixSettled);
    }
}
