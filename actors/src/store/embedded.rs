//! The embedded store: one redb file under `data_dir`, with group commit.
//!
//! Writers send their [`Commit`] to a single writer thread. It takes everything waiting (up to
//! [`MAX_BATCH`]), applies it in one write transaction, commits once (fsync when durable) and
//! then answers every writer. Concurrent transitions therefore share one fsync.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use tokio::sync::{mpsc, oneshot};

use super::{CasePage, CaseQuery, Commit, SnapshotStore, StoreError, decode_cursor, encode_cursor};
use crate::delivery::Endpoint;
use crate::domain::{Case, CaseId, Event, Review, ReviewId};

const CASES: TableDefinition<u128, &[u8]> = TableDefinition::new("cases");
/// (created micros, case id) → (): the listing index, newest last.
const CASE_INDEX: TableDefinition<(u64, u128), ()> = TableDefinition::new("case_index");
const REVIEWS: TableDefinition<&str, &[u8]> = TableDefinition::new("reviews");
/// key → (case id, created millis)
const IDEMPOTENCY: TableDefinition<&str, (u128, i64)> = TableDefinition::new("idempotency");
/// msg id (ULID-ordered) → event JSON
const OUTBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox");

/// endpoint id (ULID-ordered) → endpoint JSON
const ENDPOINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("endpoints");

/// Most commits folded into one transaction.
const MAX_BATCH: usize = 512;
/// Commits waiting for the writer before senders wait (backpressure, not loss).
const QUEUE_DEPTH: usize = 4096;

type Reply = oneshot::Sender<Result<(), StoreError>>;

/// One unit of work for the writer thread.
enum Write {
    Commit(Box<Commit>),
    Events(Vec<Event>),
    PutEndpoint(Box<Endpoint>),
    DeleteEndpoint(String),
}

/// The embedded, durable store.
pub struct EmbeddedStore {
    db: Arc<Database>,
    /// `None` once closed.
    writer: parking_lot::Mutex<Option<mpsc::Sender<(Write, Reply)>>>,
    worker: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").finish_non_exhaustive()
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

impl EmbeddedStore {
    /// Opens (or creates) `casehub.redb` in `data_dir`. With `durable`, every commit is fsynced
    /// before it is acknowledged.
    pub fn open(data_dir: &Path, durable: bool) -> Result<Arc<Self>, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let path = data_dir.join("casehub.redb");
        let db = Database::create(&path)
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
            txn.commit().map_err(backend)?;
        }
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let writer_db = db.clone();
        let worker = std::thread::Builder::new()
            .name("casehub-store-writer".into())
            .spawn(move || write_loop(&writer_db, rx, durable))
            .map_err(|e| StoreError::Unavailable(format!("cannot start writer: {e}")))?;
        Ok(Arc::new(EmbeddedStore {
            db,
            writer: parking_lot::Mutex::new(Some(tx)),
            worker: parking_lot::Mutex::new(Some(worker)),
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

    fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        f(&txn)
    }
}

fn write_loop(db: &Database, mut rx: mpsc::Receiver<(Write, Reply)>, durable: bool) {
    let mut batch: Vec<(Write, Reply)> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let writes: Vec<&Write> = batch.iter().map(|(w, _)| w).collect();
        let outcome = apply_batch(db, &writes, durable);
        for (_, reply) in batch.drain(..) {
            let answer = match &outcome {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Backend(e.to_string())),
            };
            let _ = reply.send(answer);
        }
    }
}

fn apply_batch(db: &Database, writes: &[&Write], durable: bool) -> Result<(), StoreError> {
    let mut txn = db.begin_write().map_err(backend)?;
    let durability = if durable {
        Durability::Immediate
    } else {
        Durability::None
    };
    txn.set_durability(durability).map_err(backend)?;
    {
        let mut cases = txn.open_table(CASES).map_err(backend)?;
        let mut index = txn.open_table(CASE_INDEX).map_err(backend)?;
        let mut reviews = txn.open_table(REVIEWS).map_err(backend)?;
        let mut idem = txn.open_table(IDEMPOTENCY).map_err(backend)?;
        let mut outbox = txn.open_table(OUTBOX).map_err(backend)?;
        let mut endpoints = txn.open_table(ENDPOINTS).map_err(backend)?;
        for write in writes {
            let commit = match write {
                Write::Commit(commit) => commit,
                Write::PutEndpoint(endpoint) => {
                    let bytes = serde_json::to_vec(endpoint).map_err(backend)?;
                    endpoints
                        .insert(endpoint.id.as_str(), bytes.as_slice())
                        .map_err(backend)?;
                    continue;
                }
                Write::DeleteEndpoint(id) => {
                    endpoints.remove(id.as_str()).map_err(backend)?;
                    continue;
                }
                Write::Events(events) => {
                    for event in events {
                        let bytes = serde_json::to_vec(event).map_err(backend)?;
                        outbox
                            .insert(event.msg_id.as_str(), bytes.as_slice())
                            .map_err(backend)?;
                    }
                    continue;
                }
            };
            let case = &commit.case;
            let id = case.case_id.0.as_u128();
            let bytes = serde_json::to_vec(case).map_err(backend)?;
            cases.insert(id, bytes.as_slice()).map_err(backend)?;
            index
                .insert((created_key(case.created_at), id), ())
                .map_err(backend)?;
            if let Some(review) = &case.review {
                let bytes = serde_json::to_vec(review).map_err(backend)?;
                reviews
                    .insert(review.review_id.as_str(), bytes.as_slice())
                    .map_err(backend)?;
            }
            if let Some(rec) = &commit.idempotency {
                idem.insert(
                    rec.key.as_str(),
                    (rec.case_id.0.as_u128(), rec.created_at.timestamp_millis()),
                )
                .map_err(backend)?;
            }
            for event in &commit.events {
                let bytes = serde_json::to_vec(event).map_err(backend)?;
                outbox
                    .insert(event.msg_id.as_str(), bytes.as_slice())
                    .map_err(backend)?;
            }
        }
    }
    txn.commit().map_err(backend)
}

fn created_key(t: DateTime<Utc>) -> u64 {
    t.timestamp_micros().max(0) as u64
}

#[async_trait]
impl SnapshotStore for EmbeddedStore {
    async fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        self.write(Write::Commit(Box::new(commit))).await
    }

    async fn append_events(&self, events: Vec<Event>) -> Result<(), StoreError> {
        self.write(Write::Events(events)).await
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
        let db = self.db.clone();
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

    async fn outbox(&self, after: Option<&str>, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(OUTBOX).map_err(backend)?;
            let range = match after {
                Some(after) => table
                    .range::<&str>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)),
                None => table.range::<&str>(..),
            }
            .map_err(backend)?;
            let mut out = Vec::new();
            for entry in range.take(limit) {
                let (_, v) = entry.map_err(backend)?;
                out.push(serde_json::from_slice(v.value()).map_err(corrupt)?);
            }
            Ok(out)
        })
    }

    async fn put_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        self.write(Write::PutEndpoint(Box::new(endpoint.clone())))
            .await
    }

    async fn load_endpoint(&self, id: &str) -> Result<Option<Endpoint>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(ENDPOINTS).map_err(backend)?;
            match table.get(id).map_err(backend)? {
                Some(v) => serde_json::from_slice(v.value()).map(Some).map_err(corrupt),
                None => Ok(None),
            }
        })
    }

    async fn list_endpoints(&self) -> Result<Vec<Endpoint>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(ENDPOINTS).map_err(backend)?;
            let mut out = Vec::new();
            for entry in table.range::<&str>(..).map_err(backend)? {
                let (_, v) = entry.map_err(backend)?;
                out.push(serde_json::from_slice(v.value()).map_err(corrupt)?);
            }
            Ok(out)
        })
    }

    async fn delete_endpoint(&self, id: &str) -> Result<bool, StoreError> {
        if self.load_endpoint(id).await?.is_none() {
            return Ok(false);
        }
        self.write(Write::DeleteEndpoint(id.to_string())).await?;
        Ok(true)
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
    }
}
