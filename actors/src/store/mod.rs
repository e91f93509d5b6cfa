//! Storage behind traits: case snapshots, reviews, idempotency keys, the event outbox, webhook
//! endpoints and the durable delivery queue.
//!
//! A case actor hands the store one [`Commit`] per transition: its new snapshot, the events the
//! transition caused and, on intake, the idempotency key. The store writes all of it atomically
//! and only then returns, so an answered request implies durable state (CONTRACT §3, §5).
//!
//! The dispatcher turns outbox events into [`DeliveryJob`]s, one per subscribed endpoint, and
//! stores them together with its fan-out cursor; workers then take due jobs and record each
//! attempt. Only pending jobs are in the due index, so delivered and failed jobs cost nothing to
//! the scheduler but stay in the delivery log.

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
mod embedded;
mod metered;
mod redis;

pub use self::redis::RedisStore;
pub use embedded::EmbeddedStore;
pub use metered::MeteredStore;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::delivery::{DeliveryJob, Endpoint};
use crate::domain::{Case, CaseId, CaseStatus, Event, Review, ReviewId};

/// What can go wrong in a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or is shutting down; the request may be retried.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store answered but the operation failed.
    #[error("store failure: {0}")]
    Backend(String),
    /// Stored data could not be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A commit's [`Fence`] did not hold: another node owns the case now, so this writer's
    /// snapshot may be stale. Nothing was written.
    #[error("lease not held: {0}")]
    Fenced(String),
}

impl StoreError {
    /// Whether retrying later may succeed (the edge answers 503 rather than 500).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Fenced(_))
    }
}

/// An idempotency key bound to the case its first request created.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyRecord {
    /// Caller-scoped key (the edge prefixes the caller's identity).
    pub key: String,
    pub case_id: CaseId,
    pub created_at: DateTime<Utc>,
}

/// Everything one transition writes, atomically.
#[derive(Debug, Clone)]
pub struct Commit {
    /// The case's new snapshot; its current review (if any) is indexed by review id too.
    pub case: Case,
    /// Events the transition caused, appended to the outbox.
    pub events: Vec<Event>,
    /// Set on intake with an `Idempotency-Key`.
    pub idempotency: Option<IdempotencyRecord>,
    /// The lease this writer must hold, when several nodes share the store.
    pub fence: Option<Fence>,
}

/// A lease a commit must hold (CONTRACT §9: one case, one node at a time). A store shared by
/// several nodes refuses the commit with [`StoreError::Fenced`] unless `key` holds `token`, or,
/// with `take`, unless it can set `key` to `token` for `take` (a case being created, whose
/// lease is taken by its first commit). A store only one process can open ignores it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fence {
    pub key: String,
    pub token: String,
    pub take: Option<Duration>,
}

/// One outbox event and where it stands. Positions start at 1 and grow by one per event in
/// commit order (not in msg id order: two cases commit in whichever order they reach the
/// store), so a reader that resumes after the last position it read misses nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub position: u64,
    pub event: Event,
}

/// A page of cases, newest first.
#[derive(Debug, Clone, Default)]
pub struct CasePage {
    pub cases: Vec<Case>,
    /// Opaque; pass back as `CaseQuery::cursor` for the next page.
    pub next_cursor: Option<String>,
}

/// Which cases to list.
#[derive(Debug, Clone, Default)]
pub struct CaseQuery {
    pub status: Option<CaseStatus>,
    pub limit: usize,
    pub cursor: Option<String>,
}

/// Durable state of cases and the outbox. Implementations must make [`SnapshotStore::commit`]
/// atomic and durable before returning.
#[async_trait]
pub trait SnapshotStore: Send + Sync + std::fmt::Debug + 'static {
    /// Writes a snapshot, its events and its idempotency record in one atomic operation.
    async fn commit(&self, commit: &Commit) -> Result<(), StoreError>;

    /// Appends events that belong to no case (alerts, endpoint notices) to the outbox, atomically.
    async fn append_events(&self, events: Vec<Event>) -> Result<(), StoreError>;

    /// The last committed snapshot of a case.
    async fn load_case(&self, id: CaseId) -> Result<Option<Case>, StoreError>;

    /// The latest stored state of a review.
    async fn load_review(&self, id: &ReviewId) -> Result<Option<Review>, StoreError>;

    /// The case an idempotency key created, if the key was first used at or after `not_before`.
    async fn idempotent_case(
        &self,
        key: &str,
        not_before: DateTime<Utc>,
    ) -> Result<Option<CaseId>, StoreError>;

    /// Removes idempotency records created before `before`; returns how many.
    async fn purge_idempotency(&self, before: DateTime<Utc>) -> Result<usize, StoreError>;

    /// Cases newest first, optionally by status, cursor-paginated.
    async fn list_cases(&self, query: CaseQuery) -> Result<CasePage, StoreError>;

    /// Outbox events in commit order after position `after` (0: from the first), at most
    /// `limit`.
    async fn outbox(&self, after: u64, limit: usize) -> Result<Vec<OutboxEntry>, StoreError>;

    /// The position of the newest outbox event (0: none yet), without reading any event: the
    /// dispatcher moves its cursor past events no endpoint could want without decoding them.
    async fn outbox_end(&self) -> Result<u64, StoreError>;

    /// Creates or replaces a webhook endpoint, durably.
    async fn put_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError>;

    /// One endpoint.
    async fn load_endpoint(&self, id: &str) -> Result<Option<Endpoint>, StoreError>;

    /// Every endpoint, oldest first.
    async fn list_endpoints(&self) -> Result<Vec<Endpoint>, StoreError>;

    /// Removes an endpoint; false when there was none.
    async fn delete_endpoint(&self, id: &str) -> Result<bool, StoreError>;

    /// Fan-out position: what the dispatcher stored with its last enqueue (the outbox position
    /// it has turned into jobs, as text).
    async fn dispatch_cursor(&self) -> Result<Option<String>, StoreError>;

    /// Atomically inserts `jobs` (skipping any (endpoint id, msg id) that already exists, so its
    /// progress is kept) and sets the dispatch cursor to `cursor`. After a crash the dispatcher
    /// resumes from the cursor and re-enqueuing what it had already enqueued changes nothing.
    async fn enqueue_deliveries(
        &self,
        jobs: Vec<DeliveryJob>,
        cursor: &str,
    ) -> Result<(), StoreError>;

    /// [`SnapshotStore::enqueue_deliveries`] for the dispatcher's fan-out, whose jobs are made
    /// from outbox events and may be acknowledged before they are on disk (the embedded store
    /// syncs them within about a second, or with the next durable write): a crash before that
    /// sets the cursor back with them, and the dispatcher makes the same jobs (same `msg_id`)
    /// from the outbox again, for the endpoints existing then. A write that was acknowledged to
    /// a caller (an endpoint created, a test send) is durable and so syncs every fan-out before
    /// it.
    async fn enqueue_fanned_out(
        &self,
        jobs: Vec<DeliveryJob>,
        cursor: &str,
    ) -> Result<(), StoreError> {
        self.enqueue_deliveries(jobs, cursor).await
    }

    /// Pending jobs with `due_at <= now`, earliest first, at most `limit`. Jobs of paused
    /// endpoints are included (the caller decides). Due times compare at the index's precision
    /// (milliseconds at worst), consistently with [`SnapshotStore::next_due`].
    async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DeliveryJob>, StoreError> {
        self.due_deliveries_skipping(now, limit, usize::MAX, &|_, _| false)
            .await
    }

    /// [`SnapshotStore::due_deliveries`] without the jobs `skip(endpoint id, msg id)` names: they
    /// are passed over in the index, neither read nor counted in `limit`, and the scan stops
    /// after passing over `max_skipped` of them. `skip` is asked once per index entry examined,
    /// in index order, until `limit` jobs are taken, so it may count what it lets through. The
    /// dispatcher passes over the jobs it already has in flight (they sit at the front of the
    /// index until their attempts are recorded) and those of endpoints that cannot take more.
    async fn due_deliveries_skipping(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        max_skipped: usize,
        skip: &SkipDue<'_>,
    ) -> Result<Vec<DeliveryJob>, StoreError>;

    /// Due jobs of the query's wanted endpoints: for each, earliest first, at most the number it
    /// asks for; `limit` in all; never one `in_flight(endpoint id, msg id)` names. The default
    /// scans the earliest-first index of [`SnapshotStore::due_deliveries_skipping`] once, passing
    /// over the entries of endpoints not wanted or already served, and stops after passing over
    /// `max_skipped` entries; then the result is not complete (a wanted endpoint may have due
    /// jobs the scan did not reach, behind another endpoint's backlog). A store that indexes due
    /// jobs per endpoint reads only the wanted endpoints' entries.
    async fn due_deliveries_of(
        &self,
        query: DueQuery<'_>,
        in_flight: &SkipDue<'_>,
    ) -> Result<DueJobs, StoreError> {
        use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
        let DueQuery {
            wanted,
            now,
            limit,
            max_skipped,
        } = query;
        let room: std::collections::HashMap<&str, AtomicUsize> = wanted
            .iter()
            .map(|&(endpoint, n)| (endpoint, AtomicUsize::new(n)))
            .collect();
        let skipped = AtomicUsize::new(0);
        let skip = |endpoint: &str, msg: &str| {
            let take = !in_flight(endpoint, msg)
                && room.get(endpoint).is_some_and(|free| {
                    free.fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
                        .is_ok()
                });
            if !take {
                skipped.fetch_add(1, Relaxed);
            }
            !take
        };
        let jobs = self
            .due_deliveries_skipping(now, limit, max_skipped, &skip)
            .await?;
        let complete = jobs.len() < limit && skipped.load(Relaxed) < max_skipped;
        Ok(DueJobs { jobs, complete })
    }

    /// Claims due jobs (by endpoint id, msg id) for this node until `until`, when several nodes
    /// share the store: a job is claimed only if its due entry is still at or before `now`
    /// (nobody claimed it since it was read), and the entry moves to `until`, so no other node
    /// takes it while it is attempted. A node that dies mid-attempt leaves it due again at
    /// `until`; recording the attempt sets the entry for real. Answers per job whether it was
    /// claimed. A store one process owns has nobody to claim against: it claims everything
    /// without writing.
    async fn claim_deliveries(
        &self,
        jobs: &[(&str, &str)],
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError>;

    /// The earliest due time among pending jobs (at the index's precision); `None` when nothing
    /// is pending. The dispatcher does not use it (it polls every `delivery.poll_interval` and
    /// is woken by new events); the conformance suite checks each store's due index with it.
    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Replaces a job after an attempt (state, attempts, due time) atomically with its due-index
    /// entry: a pending job is (re)scheduled at its `due_at`, a delivered or failed one leaves
    /// the index. A job that was never enqueued is stored as if it had been.
    async fn update_delivery(&self, job: &DeliveryJob) -> Result<(), StoreError>;

    /// [`SnapshotStore::update_delivery`] for each of `jobs`, in order, as one atomic write (one
    /// transaction sharing one commit, one round trip): the pool records a batch of attempts at
    /// once. A job listed twice ends as its last copy; an empty slice writes nothing.
    async fn update_deliveries(&self, jobs: &[DeliveryJob]) -> Result<(), StoreError>;

    /// [`SnapshotStore::update_deliveries`] for the recorder's attempts, which may be
    /// acknowledged before they are on disk (the embedded store syncs them within about a
    /// second): an attempt lost to a crash leaves its job pending,
    /// so it is sent again under the same `webhook-id`, which at-least-once delivery allows.
    async fn record_attempts(&self, jobs: &[DeliveryJob]) -> Result<(), StoreError> {
        self.update_deliveries(jobs).await
    }

    /// One job.
    async fn load_delivery(
        &self,
        endpoint_id: &str,
        msg_id: &str,
    ) -> Result<Option<DeliveryJob>, StoreError>;

    /// The jobs of one message across endpoints, by endpoint id (for the manual retry).
    async fn deliveries_of_message(&self, msg_id: &str) -> Result<Vec<DeliveryJob>, StoreError>;

    /// The delivery log of one endpoint: newest message first, at most `limit`, starting below
    /// the msg id `before` when given (pass the last msg id of a page to get the next one).
    async fn endpoint_deliveries(
        &self,
        endpoint_id: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeliveryJob>, StoreError>;

    /// Pending jobs per endpoint id (endpoints with none are absent); reads the whole due index,
    /// meant for health and metrics, not for every request.
    async fn delivery_backlog(&self) -> Result<BTreeMap<String, u64>, StoreError>;

    /// The msg id of `endpoint_id`'s oldest pending job (msg ids grow with time), whatever its
    /// due time: a FIFO endpoint's head, read back after a restart. Reads the endpoint's (or the
    /// whole) due index, so once per endpoint, not per pass.
    async fn oldest_pending_of(&self, endpoint_id: &str) -> Result<Option<String>, StoreError>;

    /// A cheap round trip, for health; returns its latency.
    async fn ping(&self) -> Result<Duration, StoreError>;

    /// Flushes and releases the store (idempotent).
    async fn close(&self);

    /// A room's history position, `None` for a room that never recorded an event.
    async fn room_meta(&self, room: &str) -> Result<Option<RoomMeta>, StoreError>;

    /// Appends `entries` (consecutive seqs, after `meta.seq` of the previous append) to a
    /// room's history, records `meta` as its new position and keeps only the newest `keep`
    /// entries, atomically. An append with entries to an open room may be acknowledged before
    /// it is synced (the embedded store does so); an append without entries (the room's open
    /// and close markers) is durable, and so is everything appended before it. With `fence`
    /// (nodes sharing the store) it is refused with [`StoreError::Fenced`] unless the room's
    /// lease still holds the fence's token.
    async fn room_append(
        &self,
        room: &str,
        meta: &RoomMeta,
        entries: &[RoomEntry],
        keep: usize,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError>;

    /// A room's retained history after `after`, oldest first, at most `limit` entries.
    async fn room_history(
        &self,
        room: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RoomEntry>, StoreError>;

    /// Ids of the reviews of `room` whose last commit left them pending (an index kept by
    /// [`SnapshotStore::commit`]; callers re-check each review, as a review replaced without
    /// being decided may linger).
    async fn pending_reviews(&self, room: &str) -> Result<Vec<ReviewId>, StoreError>;
}

/// Where a room's history stands: `epoch` names the history, `seq` is its last event. `open`
/// is true while a room runs and false after it stopped cleanly: a room that finds it still open
/// was cut off (its newest events may not have been written) and starts a new epoch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoomMeta {
    pub epoch: String,
    pub seq: u64,
    #[serde(default)]
    pub open: bool,
}

/// What [`SnapshotStore::due_deliveries_of`] asks for.
#[derive(Debug, Clone, Copy)]
pub struct DueQuery<'a> {
    /// Per endpoint id, how many of its due jobs at most.
    pub wanted: &'a [(&'a str, usize)],
    /// Due at or before this.
    pub now: DateTime<Utc>,
    /// Jobs in all at most.
    pub limit: usize,
    /// In-flight entries passed over before the answer is cut short (not complete).
    pub max_skipped: usize,
}

/// What [`SnapshotStore::due_deliveries_of`] found.
#[derive(Debug)]
pub struct DueJobs {
    pub jobs: Vec<DeliveryJob>,
    /// Every wanted endpoint's due entries were looked at (as far as it wanted).
    pub complete: bool,
}

/// One room event as sent to reviewers: its seq and its frame (JSON text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomEntry {
    pub seq: u64,
    pub frame: String,
}

/// Shared store handle.
pub type SharedStore = Arc<dyn SnapshotStore>;

/// Names due jobs to pass over, by (endpoint id, msg id), in
/// [`SnapshotStore::due_deliveries_skipping`]. An alias also keeps `async_trait` from naming the
/// argument lifetimes (the predicate must take any).
pub type SkipDue<'a> = dyn Fn(&str, &str) -> bool + Sync + 'a;

/// Cursor encoding shared by the implementations: `<created micros>.<case id simple hex>`.
pub fn encode_cursor(created_us: u64, id: CaseId) -> String {
    format!("{created_us}.{}", id.0.simple())
}

/// Inverse of [`encode_cursor`]; `None` for anything malformed.
pub fn decode_cursor(cursor: &str) -> Option<(u64, CaseId)> {
    let (ms, id) = cursor.split_once('.')?;
    let ms = ms.parse().ok()?;
    let id = uuid::Uuid::try_parse(id).ok()?;
    Some((ms, CaseId(id)))
}
