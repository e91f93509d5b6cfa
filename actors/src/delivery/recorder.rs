//! The attempt recorder: stores delivery attempts in batches, off the send path.
//!
//! A worker hands the outcome of an ordinary attempt (no 410, not the fix executor) to the
//! recorder and is free for its next job as soon as the response is in. The recorder takes
//! everything waiting (up to [`MAX_BATCH`]; when more than one outcome was waiting, a stream,
//! it first lets more gather for [`GATHER`]), stores it with one
//! [`record_attempts`](crate::store::SnapshotStore::record_attempts) (one transaction, synced
//! with the next durable write; one Redis round trip), then tracks the endpoints' failure streaks and tells the
//! dispatcher which jobs are recorded. Until then the dispatcher keeps those jobs in flight, so
//! a job never goes out again while its last outcome is unrecorded.
//!
//! At least once: a crash loses only outcomes not yet recorded (or not yet synced), and those
//! jobs are still pending
//! in the store, so they are sent again after the restart under the same `webhook-id`. A failed
//! write does the same without a crash (the dispatcher takes the jobs again).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use ractor::ActorRef;
use serde_json::json;
use tokio::sync::mpsc;

use super::endpoint::EndpointStatus;
use super::job::DeliveryJob;
use super::pool::{DispatchMsg, PoolContext};
use crate::domain::{Event, EventKind};
use crate::store::StoreError;

/// Most attempts stored in one write.
pub(super) const MAX_BATCH: usize = 256;
/// How long a stream of outcomes gathers before it is written.
const GATHER: std::time::Duration = std::time::Duration::from_millis(2);
/// Outcomes waiting for the recorder before workers wait (backpressure: a worker holds its job
/// until the recorder takes it).
pub(super) const QUEUE_DEPTH: usize = 256;

/// One attempt for the recorder.
#[derive(Debug)]
pub(super) struct Outcome {
    /// The job with the attempt recorded in it.
    pub job: DeliveryJob,
    /// Whether the endpoint acknowledged.
    pub delivered: bool,
    /// When the attempt started.
    pub at: DateTime<Utc>,
}

/// Starts the recorder; it runs until every sender is dropped (the workers are gone).
pub(super) fn spawn(ctx: PoolContext, dispatcher: ActorRef<DispatchMsg>) -> mpsc::Sender<Outcome> {
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    tokio::spawn(run(ctx, dispatcher, rx));
    tx
}

async fn run(ctx: PoolContext, dispatcher: ActorRef<DispatchMsg>, mut rx: mpsc::Receiver<Outcome>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        if batch.len() > 1 {
            // A stream of outcomes: let it gather into fewer, larger writes (each write is a
            // transaction whose commit costs about as much as dozens of its records). A plain
            // sleep, not a wait for each arrival: one wake-up per batch (at the rates where
            // this matters a batch is far from MAX_BATCH after GATHER).
            tokio::time::sleep(GATHER).await;
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(outcome) => batch.push(outcome),
                    Err(_) => break,
                }
            }
        }
        let mut jobs = Vec::with_capacity(batch.len());
        let mut streaks = Vec::with_capacity(batch.len());
        for Outcome { job, delivered, at } in batch.drain(..) {
            streaks.push((job.endpoint_id.clone(), delivered, at));
            jobs.push(job);
        }
        let recorded = match ctx.store.record_attempts(&jobs).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(jobs = jobs.len(), error = %e, "recording delivery attempts failed; those jobs go again");
                false
            }
        };
        if recorded {
            track_failure_streaks(&ctx, &streaks).await;
        }
        let keys = jobs
            .into_iter()
            .map(|j| ((j.endpoint_id, j.msg_id), recorded))
            .collect();
        if dispatcher.cast(DispatchMsg::Recorded(keys)).is_err() {
            return;
        }
    }
}

/// Applies a batch's outcomes to the endpoints' failure streaks, in order. Per endpoint only the
/// first attempt of a run of equal outcomes can start or end a streak and only the last failure
/// of a run is the latest to measure against `disable_after`, so the rest are not looked at.
async fn track_failure_streaks(ctx: &PoolContext, outcomes: &[(String, bool, DateTime<Utc>)]) {
    let mut per_endpoint: HashMap<&str, Vec<(bool, DateTime<Utc>)>> = HashMap::new();
    for (endpoint, delivered, at) in outcomes {
        per_endpoint
            .entry(endpoint.as_str())
            .or_default()
            .push((*delivered, *at));
    }
    for (endpoint, attempts) in per_endpoint {
        for (i, &(delivered, at)) in attempts.iter().enumerate() {
            let run_starts = i == 0 || attempts[i - 1].0 != delivered;
            let run_ends = attempts.get(i + 1).is_none_or(|next| next.0 != delivered);
            if !(run_starts || (run_ends && !delivered)) {
                continue;
            }
            if let Err(e) = track_failure_streak(ctx, endpoint, delivered, at).await {
                tracing::warn!(endpoint = %endpoint, error = %e, "tracking an endpoint's failure streak failed");
            }
        }
    }
}

/// Starts or clears the endpoint's failure streak, and disables it once the streak is older
/// than `disable_after`. Writes only when the streak starts or ends.
pub(super) async fn track_failure_streak(
    ctx: &PoolContext,
    id: &str,
    delivered: bool,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let Some(mut endpoint) = ctx.store.load_endpoint(id).await? else {
        return Ok(());
    };
    match (delivered, endpoint.failing_since) {
        (true, Some(_)) => {
            endpoint.failing_since = None;
            ctx.sealer.seal_endpoint(&mut endpoint);
            ctx.store.put_endpoint(&endpoint).await
        }
        (false, None) => {
            endpoint.failing_since = Some(now);
            ctx.sealer.seal_endpoint(&mut endpoint);
            ctx.store.put_endpoint(&endpoint).await
        }
        (false, Some(since)) => {
            let limit = chrono::Duration::from_std(ctx.settings.disable_after)
                .unwrap_or(chrono::Duration::MAX);
            if now - since >= limit {
                let reason = format!(
                    "every delivery failed since {} ({} without a success)",
                    crate::domain::rfc3339(since),
                    humantime_serde::re::humantime::format_duration(ctx.settings.disable_after)
                );
                disable(ctx, id, &reason).await?;
            }
            Ok(())
        }
        (true, None) => Ok(()),
    }
}

/// Disables an endpoint and records `endpoint.disabled` for the others subscribed to it.
pub(super) async fn disable(ctx: &PoolContext, id: &str, reason: &str) -> Result<(), StoreError> {
    let Some(mut endpoint) = ctx.store.load_endpoint(id).await? else {
        return Ok(());
    };
    if endpoint.status == EndpointStatus::Disabled {
        return Ok(());
    }
    let now = Utc::now();
    endpoint.status = EndpointStatus::Disabled;
    endpoint.disabled_reason = Some(reason.to_string());
    endpoint.updated_at = now;
    ctx.sealer.seal_endpoint(&mut endpoint);
    ctx.store.put_endpoint(&endpoint).await?;
    let event = Event::new(
        EventKind::EndpointDisabled,
        "webhooks",
        now,
        json!({"endpoint_id": endpoint.id, "url": endpoint.url, "reason": reason}),
    );
    ctx.store.append_events(vec![event.clone()]).await?;
    ctx.bus.publish([event]);
    Ok(())
}
