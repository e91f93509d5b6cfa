//! A [`SnapshotStore`] decorator that records every operation's latency in the telemetry
//! registry (`casehub_store_op_seconds{op}`), whatever the backend.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    CasePage, CaseQuery, Commit, DueJobs, DueQuery, Fence, OutboxEntry, RoomEntry, RoomMeta,
    SharedStore, SkipDue, SnapshotStore, StoreError,
};
use crate::delivery::{DeliveryJob, Endpoint};
use crate::domain::{Case, CaseId, Event, Review, ReviewId};
use crate::telemetry::Telemetry;

/// Times each call to the wrapped store.
#[derive(Debug)]
pub struct MeteredStore {
    inner: SharedStore,
    telemetry: Arc<Telemetry>,
}

impl MeteredStore {
    /// Wraps `inner`.
    pub fn wrap(inner: SharedStore, telemetry: Arc<Telemetry>) -> SharedStore {
        Arc::new(MeteredStore { inner, telemetry })
    }

    async fn timed<T>(
        &self,
        op: &str,
        fut: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let out = fut.await;
        self.telemetry.store_op(op, started.elapsed());
        out
    }
}

#[async_trait]
impl SnapshotStore for MeteredStore {
    async fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        self.timed("commit", self.inner.commit(commit)).await
    }

    async fn append_events(&self, events: Vec<Event>) -> Result<(), StoreError> {
        self.timed("append_events", self.inner.append_events(events))
            .await
    }

    async fn load_case(&self, id: CaseId) -> Result<Option<Case>, StoreError> {
        self.timed("load_case", self.inner.load_case(id)).await
    }

    async fn load_review(&self, id: &ReviewId) -> Result<Option<Review>, StoreError> {
        self.timed("load_review", self.inner.load_review(id)).await
    }

    async fn idempotent_case(
        &self,
        key: &str,
        not_before: DateTime<Utc>,
    ) -> Result<Option<CaseId>, StoreError> {
        self.timed(
            "idempotent_case",
            self.inner.idempotent_case(key, not_before),
        )
        .await
    }

    async fn purge_idempotency(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        self.timed("purge_idempotency", self.inner.purge_idempotency(before))
            .await
    }

    async fn list_cases(&self, query: CaseQuery) -> Result<CasePage, StoreError> {
        self.timed("list_cases", self.inner.list_cases(query)).await
    }

    async fn outbox(&self, after: u64, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        self.timed("outbox", self.inner.outbox(after, limit)).await
    }

    async fn outbox_end(&self) -> Result<u64, StoreError> {
        self.timed("outbox_end", self.inner.outbox_end()).await
    }

    async fn put_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        self.timed("put_endpoint", self.inner.put_endpoint(endpoint))
            .await
    }

    async fn load_endpoint(&self, id: &str) -> Result<Option<Endpoint>, StoreError> {
        self.timed("load_endpoint", self.inner.load_endpoint(id))
            .await
    }

    async fn list_endpoints(&self) -> Result<Vec<Endpoint>, StoreError> {
        self.timed("list_endpoints", self.inner.list_endpoints())
            .await
    }

    async fn delete_endpoint(&self, id: &str) -> Result<bool, StoreError> {
        self.timed("delete_endpoint", self.inner.delete_endpoint(id))
            .await
    }

    async fn dispatch_cursor(&self) -> Result<Option<String>, StoreError> {
        self.timed("dispatch_cursor", self.inner.dispatch_cursor())
            .await
    }

    async fn enqueue_deliveries(
        &self,
        jobs: Vec<DeliveryJob>,
        cursor: &str,
    ) -> Result<(), StoreError> {
        self.timed(
            "enqueue_deliveries",
            self.inner.enqueue_deliveries(jobs, cursor),
        )
        .await
    }

    async fn enqueue_fanned_out(
        &self,
        jobs: Vec<DeliveryJob>,
        cursor: &str,
    ) -> Result<(), StoreError> {
        self.timed(
            "enqueue_fanned_out",
            self.inner.enqueue_fanned_out(jobs, cursor),
        )
        .await
    }

    async fn due_deliveries_skipping(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        max_skipped: usize,
        skip: &SkipDue<'_>,
    ) -> Result<Vec<DeliveryJob>, StoreError> {
        self.timed(
            "due_deliveries",
            self.inner
                .due_deliveries_skipping(now, limit, max_skipped, skip),
        )
        .await
    }

    async fn due_deliveries_of(
        &self,
        query: DueQuery<'_>,
        in_flight: &SkipDue<'_>,
    ) -> Result<DueJobs, StoreError> {
        self.timed(
            "due_deliveries",
            self.inner.due_deliveries_of(query, in_flight),
        )
        .await
    }

    async fn claim_deliveries(
        &self,
        jobs: &[(&str, &str)],
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        self.timed(
            "claim_deliveries",
            self.inner.claim_deliveries(jobs, now, until),
        )
        .await
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.timed("next_due", self.inner.next_due()).await
    }

    async fn update_delivery(&self, job: &DeliveryJob) -> Result<(), StoreError> {
        self.timed("update_delivery", self.inner.update_delivery(job))
            .await
    }

    async fn update_deliveries(&self, jobs: &[DeliveryJob]) -> Result<(), StoreError> {
        self.timed("update_deliveries", self.inner.update_deliveries(jobs))
            .await
    }

    async fn record_attempts(&self, jobs: &[DeliveryJob]) -> Result<(), StoreError> {
        self.timed("record_attempts", self.inner.record_attempts(jobs))
            .await
    }

    async fn load_delivery(
        &self,
        endpoint_id: &str,
        msg_id: &str,
    ) -> Result<Option<DeliveryJob>, StoreError> {
        self.timed(
            "load_delivery",
            self.inner.load_delivery(endpoint_id, msg_id),
        )
        .await
    }

    async fn deliveries_of_message(&self, msg_id: &str) -> Result<Vec<DeliveryJob>, StoreError> {
        self.timed(
            "deliveries_of_message",
            self.inner.deliveries_of_message(msg_id),
        )
        .await
    }

    async fn endpoint_deliveries(
        &self,
        endpoint_id: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeliveryJob>, StoreError> {
        self.timed(
            "endpoint_deliveries",
            self.inner.endpoint_deliveries(endpoint_id, before, limit),
        )
        .await
    }

    async fn delivery_backlog(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        self.timed("delivery_backlog", self.inner.delivery_backlog())
            .await
    }

    async fn oldest_pending_of(&self, endpoint_id: &str) -> Result<Option<String>, StoreError> {
        self.timed(
            "oldest_pending_of",
            self.inner.oldest_pending_of(endpoint_id),
        )
        .await
    }

    async fn ping(&self) -> Result<Duration, StoreError> {
        self.timed("ping", self.inner.ping()).await
    }

    async fn close(&self) {
        self.inner.close().await
    }

    async fn room_meta(&self, room: &str) -> Result<Option<RoomMeta>, StoreError> {
        self.timed("room_meta", self.inner.room_meta(room)).await
    }

    async fn room_append(
        &self,
        room: &str,
        meta: &RoomMeta,
        entries: &[RoomEntry],
        keep: usize,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        self.timed(
            "room_append",
            self.inner.room_append(room, meta, entries, keep, fence),
        )
        .await
    }

    async fn room_history(
        &self,
        room: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RoomEntry>, StoreError> {
        self.timed("room_history", self.inner.room_history(room, after, limit))
            .await
    }

    async fn pending_reviews(&self, room: &str) -> Result<Vec<ReviewId>, StoreError> {
        self.timed("pending_reviews", self.inner.pending_reviews(room))
            .await
    }
}
