//! The embedded store: one redb file under `data_dir`, with group commit.
//!
//! Writers send their [`Commit`] to a single writer thread ([`writer`]). It takes everything
//! waiting (up to a batch limit), applies it in one write transaction, commits once (fsync when
//! durable) and then answers every writer. Concurrent transitions therefore share one fsync. The
//! delivery queue and log ([`deliveries`]) write through the same thread.

mod deliveries;
mod rooms;
mod writer;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::{mpsc, oneshot};

use writer::{QUEUE_DEPTH, Reply, Write, write_loop};

use super::{
    CasePage, CaseQuery, Commit, DueJobs, DueQuery, Fence, OutboxEntry, RoomEntry, RoomMeta,
    SkipDue, SnapshotStore, StoreError, decode_cursor, encode_cursor,
};
use crate::delivery::{DeliveryJob, Endpoint};
use crate::domain::{Case, CaseId, Event, Review, ReviewId};

const CASES: TableDefinition<u128, &[u8]> = TableDefinition::new("cases");
/// (created micros, case id) → (): the listing index, newest last.
const CASE_INDEX: TableDefinition<(u64, u128), ()> = TableDefinition::new("case_index");
const REVIEWS: TableDefinition<&str, &[u8]> = TableDefinition::new("reviews");
/// key → (case id, created millis)
const IDEMPOTENCY: TableDefinition<&str, (u128, i64)> = TableDefinition::new("idempotency");
/// outbox position (commit order, from 1) → event JSON
const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox_log");
/// The outbox before positions: msg id → event JSON. Moved into [`OUTBOX`] at open.
const LEGACY_OUTBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox");

/// endpoint id (ULID-ordered) → endpoint JSON
const ENDPOINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("endpoints");

/// redb's page cache unless configured (`store.cache_mb`).
pub const DEFAULT_CACHE_BYTES: usize = 128 << 20;

/// The embedded, durable store.
pub struct EmbeddedStore {
    /// `None` once closed, so that `close` releases the file lock even while other parts of the
    /// process still hold the store.
    db: parking_lot::RwLock<Option<Arc<Database>>>,
    /// `None` once closed.
    writer: parking_lot::Mutex<Option<mpsc::Sender<(Write, Reply)>>>,
    worker: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The endpoints as last read, for the dispatcher that lists them on every scheduling pass
    /// and the recorder that loads them per batch. Only this process writes the file, so the
    /// cache is exact: see [`EndpointCache`].
    endpoints: EndpointCache,
}

/// The endpoints table as last read, tagged with the generation it was read at. Every endpoint
/// write bumps the generation once it is committed, so a copy read before a write (even one
/// stored after it) is never served once the write has returned.
#[derive(Default)]
struct EndpointCache {
    generation: AtomicU64,
    read: parking_lot::Mutex<Option<(u64, Arc<Vec<Endpoint>>)>>,
}

impl EndpointCache {
    /// The cached endpoints, when no write has returned since they were read.
    fn get(&self) -> Option<Arc<Vec<Endpoint>>> {
        let generation = self.generation.load(Ordering::Acquire);
        match &*self.read.lock() {
            Some((at, endpoints)) if *at == generation => Some(endpoints.clone()),
            _ => None,
        }
    }

    /// Reads through the cache: `load` runs (after the generation is taken) when it is stale.
    fn get_or_load(
        &self,
        load: impl FnOnce() -> Result<Vec<Endpoint>, StoreError>,
    ) -> Result<Arc<Vec<Endpoint>>, StoreError> {
        if let Some(endpoints) = self.get() {
            return Ok(endpoints);
        }
        let generation = self.generation.load(Ordering::Acquire);
        let endpoints = Arc::new(load()?);
        *self.read.lock() = Some((generation, endpoints.clone()));
        Ok(endpoints)
    }

    /// After an endpoint write has committed (or failed: the next read looks either way).
    fn written(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").finish_non_exhaustive()
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn closed() -> StoreError {
    StoreError::Unavailable("store is closed".into())
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

impl EmbeddedStore {
    /// Opens (or creates) `casehub.redb` in `data_dir`. With `durable`, every commit is fsynced
    /// before it is acknowledged.
    pub fn open(data_dir: &Path, durable: bool) -> Result<Arc<Self>, StoreError> {
        Self::open_with_cache(data_dir, durable, DEFAULT_CACHE_BYTES)
    }

    /// [`open`](Self::open) with redb's page cache limited to `cache_bytes`: the cache fills
    /// as the file grows, so this bounds the store's share of the process's memory.
    pub fn open_with_cache(
        data_dir: &Path,
        durable: bool,
        cache_bytes: usize,
    ) -> Result<Arc<Self>, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let path = data_dir.join("casehub.redb");
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(&path)
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        {
            // Create every table up front so readers never see "table does not exist".
            let txn = db.begin_write().map_err(backend)?;
            txn.open_table(CASES).map_err(backend)?;
            txn.open_table(CASE_INDEX).map_err(backend)?;
            txn.open_table(REVIEWS).map_err(backend)?;
            txn.open_table(IDEMPOTENCY).map_err(backend)?;
            txn.open_table(OUTBOX).map_err(backend)?;
            txn.open_table(ENDPOINTS).map_err(backend)?;
            deliveries::create_tables(&txn)?;
            rooms::create_tables(&txn)?;
            migrate_legacy_outbox(&txn)?;
            txn.commit().map_err(backend)?;
        }
        let next_position = {
            let txn = db.begin_read().map_err(backend)?;
            let outbox = txn.open_table(OUTBOX).map_err(backend)?;
            let last = outbox.last().map_err(backend)?;
            last.map_or(1, |(k, _)| k.value() + 1)
        };
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        // Writes that need no sync (recorded attempts, the dispatcher's fan-out, room history)
        // are synced within about a second even when nothing else is written.
        let ticker = tx.downgrade();
        std::thread::Builder::new()
            .name("casehub-store-sync".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(writer::MAX_UNSYNCED);
                    let Some(tx) = ticker.upgrade() else { return };
                    let (reply, _) = oneshot::channel();
                    let _ = tx.try_send((Write::Sync, reply));
                }
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start the sync ticker: {e}")))?;
        let writer_db = db.clone();
        let worker = std::thread::Builder::new()
            .name("casehub-store-writer".into())
            .spawn(move || write_loop(&writer_db, rx, durable, next_position))
            .map_err(|e| StoreError::Unavailable(format!("cannot start writer: {e}")))?;
        Ok(Arc::new(EmbeddedStore {
            db: parking_lot::RwLock::new(Some(db)),
            writer: parking_lot::Mutex::new(Some(tx)),
            worker: parking_lot::Mutex::new(Some(worker)),
            endpoints: EndpointCache::default(),
        }))
    }

    /// Queues a write for the writer thread and waits until it is committed.
    async fn write(&self, write: Write) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        let writer = self.writer.lock().clone();
        let writer = writer.ok_or_else(|| StoreError::Unavailable("store is closed".into()))?;
        writer
            .send((write, tx))
            .await
            .map_err(|_| StoreError::Unavailable("store is closed".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("store writer stopped".into()))?
    }

    /// Every endpoint, id order, through the cache.
    fn endpoints(&self) -> Result<Arc<Vec<Endpoint>>, StoreError> {
        self.endpoints.get_or_load(|| {
            self.read(|txn| {
                let table = txn.open_table(ENDPOINTS).map_err(backend)?;
                let mut out = Vec::new();
                for entry in table.range::<&str>(..).map_err(backend)? {
                    let (_, v) = entry.map_err(backend)?;
                    out.push(serde_json::from_slice(v.value()).map_err(corrupt)?);
                }
                Ok(out)
            })
        })
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let db = self.db.read();
        let db = db.as_ref().ok_or_else(closed)?;
        let txn = db.begin_read().map_err(backend)?;
        f(&txn)
    }
}

/// Moves the events of a store written before outbox positions into the positioned outbox, in
/// msg id order (their recording order then). The dispatcher's old cursor (a msg id) no longer
/// parses as a position, so it fans out from the start once; jobs that exist are kept as they
/// are, so nothing is sent twice.
fn migrate_legacy_outbox(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let moved = {
        let legacy = txn.open_table(LEGACY_OUTBOX).map_err(backend)?;
        if legacy.is_empty().map_err(backend)? {
            false
        } else {
            let mut outbox = txn.open_table(OUTBOX).map_err(backend)?;
            let mut position = outbox
                .last()
                .map_err(backend)?
                .map_or(0, |(k, _)| k.value());
            for entry in legacy.iter().map_err(backend)? {
                let (_, event) = entry.map_err(backend)?;
                position += 1;
                outbox.insert(position, event.value()).map_err(backend)?;
            }
            tracing::info!(
                events = position,
                "moved the outbox to commit-order positions"
            );
            true
        }
    };
    if moved {
        txn.delete_table(LEGACY_OUTBOX).map_err(backend)?;
    }
    Ok(())
}

fn created_key(t: DateTime<Utc>) -> u64 {
    t.timestamp_micros().max(0) as u64
}

#[async_trait]
impl SnapshotStore for EmbeddedStore {
    async fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        // Encoded here, on the caller's thread: the one writer thread only inserts bytes.
        let encoded = writer::EncodedCommit::new(commit)?;
        self.write(Write::Commit(Box::new(encoded))).await
    }

    async fn append_events(&self, events: Vec<Event>) -> Result<(), StoreError> {
        let encoded = events
            .iter()
            .map(|e| serde_json::to_vec(e).map_err(backend))
            .collect::<Result<_, _>>()?;
        self.write(Write::Events(encoded)).await
    }

    async fn load_case(&self, id: CaseId) -> Result<Option<Case>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(CASES).map_err(backend)?;
            match table.get(id.0.as_u128()).map_err(backend)? {
                Some(v) => serde_json::from_slice(v.value()).map(Some).map_err(corrupt),
                None => Ok(None),
            }
        })
    }

    async fn load_review(&self, id: &ReviewId) -> Result<Option<Review>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(REVIEWS).map_err(backend)?;
            match table.get(id.as_str()).map_err(backend)? {
                Some(v) => serde_json::from_slice(v.value()).map(Some).map_err(corrupt),
                None => Ok(None),
            }
        })
    }

    async fn idempotent_case(
        &self,
        key: &str,
        not_before: DateTime<Utc>,
    ) -> Result<Option<CaseId>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(IDEMPOTENCY).map_err(backend)?;
            let Some(v) = table.get(key).map_err(backend)? else {
                return Ok(None);
            };
            let (id, at) = v.value();
            Ok((at >= not_before.timestamp_millis()).then(|| CaseId(uuid::Uuid::from_u128(id))))
        })
    }

    async fn purge_idempotency(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        let db = self.db.read().clone().ok_or_else(closed)?;
        let cutoff = before.timestamp_millis();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_write().map_err(backend)?;
            let mut removed = 0;
            {
                let mut table = txn.open_table(IDEMPOTENCY).map_err(backend)?;
                table
                    .retain(|_, (_, at)| {
                        let keep = at >= cutoff;
                        removed += usize::from(!keep);
                        keep
                    })
                    .map_err(backend)?;
            }
            txn.commit().map_err(backend)?;
            Ok(removed)
        })
        .await
        .map_err(backend)?
    }

    async fn list_cases(&self, query: CaseQuery) -> Result<CasePage, StoreError> {
        let start = query.cursor.as_deref().and_then(decode_cursor);
        let limit = query.limit.max(1);
        self.read(|txn| {
            let index = txn.open_table(CASE_INDEX).map_err(backend)?;
            let cases = txn.open_table(CASES).map_err(backend)?;
            let range = match start {
                Some((ms, id)) => index.range(..(ms, id.0.as_u128())).map_err(backend)?,
                None => index.range::<(u64, u128)>(..).map_err(backend)?,
            };
            let mut page = CasePage::default();
            for entry in range.rev() {
                let (key, _) = entry.map_err(backend)?;
                let (ms, id) = key.value();
                let Some(raw) = cases.get(id).map_err(backend)? else {
                    continue;
                };
                let case: Case = serde_json::from_slice(raw.value()).map_err(corrupt)?;
                if query.status.is_some_and(|s| s != case.status) {
                    continue;
                }
                if page.cases.len() == limit {
                    // One more matching case exists: the page ends at the previous one.
                    let last = page
                        .cases
                        .last()
                        .map(|c| (created_key(c.created_at), c.case_id));
                    page.next_cursor = last.map(|(ms, id)| encode_cursor(ms, id));
                    let _ = ms;
                    break;
                }
                page.cases.push(case);
            }
            Ok(page)
        })
    }

    async fn outbox(&self, after: u64, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(OUTBOX).map_err(backend)?;
            let mut out = Vec::new();
            for entry in table
                .range(after.saturating_add(1)..)
                .map_err(backend)?
                .take(limit)
            {
                let (position, v) = entry.map_err(backend)?;
                out.push(OutboxEntry {
                    position: position.value(),
                    event: serde_json::from_slice(v.value()).map_err(corrupt)?,
                });
            }
            Ok(out)
        })
    }

    async fn outbox_end(&self) -> Result<u64, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(OUTBOX).map_err(backend)?;
            let last = table.last().map_err(backend)?;
            Ok(last.map_or(0, |(position, _)| position.value()))
        })
    }

    async fn put_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        let written = self
            .write(Write::PutEndpoint(Box::new(endpoint.clone())))
            .await;
        self.endpoints.written();
        written
    }

    async fn load_endpoint(&self, id: &str) -> Result<Option<Endpoint>, StoreError> {
        Ok(self.endpoints()?.iter().find(|e| e.id == id).cloned())
    }

    async fn list_endpoints(&self) -> Result<Vec<Endpoint>, StoreError> {
        Ok(self.endpoints()?.to_vec())
    }

    async fn delete_endpoint(&self, id: &str) -> Result<bool, StoreError> {
        if self.load_endpoint(id).await?.is_none() {
            return Ok(false);
        }
        let written = self.write(Write::DeleteEndpoint(id.to_string())).await;
        self.endpoints.written();
        written.map(|()| true)
    }

    async fn dispatch_cursor(&self) -> Result<Option<String>, StoreError> {
        self.read(deliveries::dispatch_cursor)
    }

    async fn enqueue_deliveries(
        &self,
        jobs: Vec<DeliveryJob>,
        cursor: &str,
    ) -> Result<(), StoreError> {
        self.write(Write::enqueue(jobs, cursor)).await
    }

    async fn enqueue_fanned_out(
        &self,
        jobs: Vec<DeliveryJob>,
        cursor: &str,
    ) -> Result<(), StoreError> {
        self.write(Write::fan_out(jobs, cursor)).await
    }

    async fn due_deliveries_skipping(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        max_skipped: usize,
        skip: &SkipDue<'_>,
    ) -> Result<Vec<DeliveryJob>, StoreError> {
        self.read(|txn| deliveries::due(txn, now, limit, max_skipped, skip))
    }

    async fn due_deliveries_of(
        &self,
        query: DueQuery<'_>,
        in_flight: &SkipDue<'_>,
    ) -> Result<DueJobs, StoreError> {
        self.read(|txn| deliveries::due_of(txn, query, in_flight))
    }

    async fn claim_deliveries(
        &self,
        jobs: &[(&str, &str)],
        _now: DateTime<Utc>,
        _until: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        // One process owns the file: nobody else could have claimed them.
        Ok(vec![true; jobs.len()])
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.read(deliveries::next_due)
    }

    async fn update_delivery(&self, job: &DeliveryJob) -> Result<(), StoreError> {
        self.update_deliveries(std::slice::from_ref(job)).await
    }

    async fn update_deliveries(&self, jobs: &[DeliveryJob]) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let encoded = jobs
            .iter()
            .map(deliveries::EncodedJob::new)
            .collect::<Result<Vec<_>, _>>()?;
        self.write(Write::UpdateDeliveries {
            jobs: encoded,
            sync: true,
        })
        .await
    }

    async fn record_attempts(&self, jobs: &[DeliveryJob]) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let encoded = jobs
            .iter()
            .map(deliveries::EncodedJob::new)
            .collect::<Result<Vec<_>, _>>()?;
        self.write(Write::UpdateDeliveries {
            jobs: encoded,
            sync: false,
        })
        .await
    }

    async fn load_delivery(
        &self,
        endpoint_id: &str,
        msg_id: &str,
    ) -> Result<Option<DeliveryJob>, StoreError> {
        self.read(|txn| deliveries::load(txn, endpoint_id, msg_id))
    }

    async fn deliveries_of_message(&self, msg_id: &str) -> Result<Vec<DeliveryJob>, StoreError> {
        self.read(|txn| deliveries::of_message(txn, msg_id))
    }

    async fn endpoint_deliveries(
        &self,
        endpoint_id: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeliveryJob>, StoreError> {
        self.read(|txn| deliveries::endpoint_log(txn, endpoint_id, before, limit))
    }

    async fn delivery_backlog(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        self.read(deliveries::backlog)
    }

    async fn oldest_pending_of(&self, endpoint_id: &str) -> Result<Option<String>, StoreError> {
        self.read(|txn| deliveries::oldest_pending_of(txn, endpoint_id))
    }

    async fn ping(&self) -> Result<Duration, StoreError> {
        let started = Instant::now();
        self.read(|txn| {
            txn.open_table(CASES).map_err(backend)?;
            Ok(())
        })?;
        Ok(started.elapsed())
    }

    async fn close(&self) {
        // Dropping the last sender ends the writer loop after the queued commits are written.
        self.writer.lock().take();
        let worker = self.worker.lock().take();
        if let Some(worker) = worker {
            let _ = tokio::task::spawn_blocking(move || worker.join()).await;
        }
        // Release the file: a restart in the same process (or a test reopening the directory)
        // must not find it locked by tasks that still hold the store. A blocking job that cloned
        // the database gets a moment to finish first.
        let Some(mut db) = self.db.write().take() else {
            return;
        };
        for _ in 0..500 {
            match Arc::try_unwrap(db) {
                Ok(_) => return,
                Err(shared) => db = shared,
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::warn!("embedded store still in use after close; its file stays locked");
    }

    async fn room_meta(&self, room: &str) -> Result<Option<RoomMeta>, StoreError> {
        self.read(|txn| rooms::meta(txn, room))
    }

    async fn room_append(
        &self,
        room: &str,
        meta: &RoomMeta,
        entries: &[RoomEntry],
        keep: usize,
        // One process owns the file: nobody to fence off.
        _fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        self.write(Write::RoomAppend(Box::new(rooms::Append {
            room: room.to_string(),
            meta: meta.clone(),
            entries: entries.to_vec(),
            keep,
        })))
        .await
    }

    async fn room_history(
        &self,
        room: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RoomEntry>, StoreError> {
        self.read(|txn| rooms::history(txn, room, after, limit))
    }

    async fn pending_reviews(&self, room: &str) -> Result<Vec<ReviewId>, StoreError> {
        self.read(|txn| rooms::pending(txn, room))
    }
}
