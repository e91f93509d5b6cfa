//! The embedded store's single writer thread: group commit.
//!
//! Every write ([`Write`]) goes through one thread. It takes everything waiting (up to
//! [`MAX_BATCH`]), applies it in one write transaction, commits once (fsync when durable) and
//! then answers every sender with the transaction's outcome.

use redb::{Database, Durability};
use tokio::sync::{mpsc, oneshot};

use super::deliveries::{DeliveryTables, EncodedJob};
use super::rooms;
use super::{CASE_INDEX, CASES, ENDPOINTS, IDEMPOTENCY, OUTBOX, REVIEWS, backend, created_key};
use crate::delivery::{DeliveryJob, Endpoint};
use crate::domain::ReviewStatus;
use crate::store::{Commit, StoreError};

/// Most commits folded into one transaction.
const MAX_BATCH: usize = 512;
/// Longest a committed write that needs no sync waits for one (it is synced with the next batch
/// after this).
pub(super) const MAX_UNSYNCED: std::time::Duration = std::time::Duration::from_secs(1);
/// Commits waiting for the writer before senders wait (backpressure, not loss).
pub(super) const QUEUE_DEPTH: usize = 4096;

pub(super) type Reply = oneshot::Sender<Result<(), StoreError>>;

/// A [`Commit`] as the writer inserts it: encoded by the caller.
pub(super) struct EncodedCommit {
    case_id: u128,
    created: u64,
    case: Vec<u8>,
    /// Review id, JSON, room, and whether it is pending (the room's index).
    review: Option<(String, Vec<u8>, String, bool)>,
    /// Key, case id, created millis.
    idempotency: Option<(String, u128, i64)>,
    events: Vec<Vec<u8>>,
}

impl EncodedCommit {
    pub(super) fn new(commit: &Commit) -> Result<Self, StoreError> {
        let case = &commit.case;
        let review = match &case.review {
            Some(review) => Some((
                review.review_id.as_str().to_string(),
                serde_json::to_vec(review).map_err(backend)?,
                review.room.clone(),
                review.status == ReviewStatus::Pending,
            )),
            None => None,
        };
        Ok(EncodedCommit {
            case_id: case.case_id.0.as_u128(),
            created: created_key(case.created_at),
            case: serde_json::to_vec(case).map_err(backend)?,
            review,
            idempotency: commit.idempotency.as_ref().map(|rec| {
                (
                    rec.key.clone(),
                    rec.case_id.0.as_u128(),
                    rec.created_at.timestamp_millis(),
                )
            }),
            events: commit
                .events
                .iter()
                .map(|e| serde_json::to_vec(e).map_err(backend))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// One unit of work for the writer thread.
pub(super) enum Write {
    Commit(Box<EncodedCommit>),
    /// Events (encoded) that belong to no case.
    Events(Vec<Vec<u8>>),
    PutEndpoint(Box<Endpoint>),
    DeleteEndpoint(String),
    /// New delivery jobs (existing ones are kept) and the dispatch cursor after them; the
    /// dispatcher's fan-out (`sync: false`) need not be on disk when acknowledged.
    Enqueue {
        jobs: Vec<DeliveryJob>,
        cursor: String,
        sync: bool,
    },
    /// Jobs after their attempts, in order (one batch entry however many), encoded by the
    /// caller; the recorder's attempts (`sync: false`) need not be on disk when acknowledged.
    UpdateDeliveries {
        jobs: Vec<EncodedJob>,
        sync: bool,
    },
    /// Room events appended to a room's history.
    RoomAppend(Box<rooms::Append>),
    /// Syncs what committed writes wait for a sync, if any (sent every [`MAX_UNSYNCED`]).
    Sync,
}

impl Write {
    /// `jobs` and the cursor after them, synced when acknowledged (a test send).
    pub(super) fn enqueue(jobs: Vec<DeliveryJob>, cursor: &str) -> Self {
        Write::Enqueue {
            jobs,
            cursor: cursor.to_string(),
            sync: true,
        }
    }

    /// The dispatcher's fan-out: [`Write::enqueue`] without waiting for a sync.
    pub(super) fn fan_out(jobs: Vec<DeliveryJob>, cursor: &str) -> Self {
        Write::Enqueue {
            jobs,
            cursor: cursor.to_string(),
            sync: false,
        }
    }

    /// Whether the write must be on disk before it is acknowledged, given `store.durable`.
    /// A running room's history batches need not be: the room's start marker (`open`) is
    /// synced, so after a crash the room starts a new epoch and never replays from what was
    /// lost, and its clean-close marker is synced, which persists every batch before it. The
    /// markers are synced even when `durable` is off (twice per room lifetime), since a lost
    /// start marker would let a room reuse an epoch whose history it no longer has. Nor need
    /// the recorder's attempts and the dispatcher's fan-out (`sync: false`): after a crash their
    /// jobs are pending again or made again from the outbox. Everything else follows `durable`.
    /// A batch is synced if any of its writes must be.
    fn must_sync(&self, durable: bool) -> bool {
        match self {
            Write::RoomAppend(append) => !append.meta.open || append.entries.is_empty(),
            Write::UpdateDeliveries { sync, .. } | Write::Enqueue { sync, .. } => *sync && durable,
            Write::Sync => false,
            _ => durable,
        }
    }
}

/// Runs until every sender is dropped, answering each write once its batch is committed (or
/// failed: one failing write fails its whole batch, as they share one transaction).
///
/// Outbox positions are assigned here, from `next_position` on, in the order the writes are
/// applied: the one thread that commits is the one that numbers, so positions follow commit
/// order exactly.
pub(super) fn write_loop(
    db: &Database,
    mut rx: mpsc::Receiver<(Write, Reply)>,
    durable: bool,
    mut next_position: u64,
) {
    let mut batch: Vec<(Write, Reply)> = Vec::with_capacity(MAX_BATCH);
    // Since when committed writes wait for a sync (writes that need none are synced with the
    // next batch after at most MAX_UNSYNCED, or at the end).
    let mut unsynced_since: Option<std::time::Instant> = None;
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let writes: Vec<&Write> = batch.iter().map(|(w, _)| w).collect();
        if writes.iter().all(|w| matches!(w, Write::Sync)) && (!durable || unsynced_since.is_none())
        {
            for (_, reply) in batch.drain(..) {
                let _ = reply.send(Ok(()));
            }
            continue;
        }
        let mut position = next_position;
        let sync = writes.iter().any(|w| w.must_sync(durable))
            || (durable
                && (writes.iter().any(|w| matches!(w, Write::Sync))
                    || unsynced_since.is_some_and(|t| t.elapsed() >= MAX_UNSYNCED)));
        let outcome = apply_batch(db, &writes, sync, &mut position);
        if outcome.is_ok() {
            // A failed batch wrote nothing: its positions are used again.
            next_position = position;
            if sync {
                unsynced_since = None;
            } else if unsynced_since.is_none() {
                unsynced_since = Some(std::time::Instant::now());
            }
        }
        for (_, reply) in batch.drain(..) {
            let answer = match &outcome {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Backend(e.to_string())),
            };
            let _ = reply.send(answer);
        }
    }
    if durable && unsynced_since.is_some() {
        let synced = (|| -> Result<(), StoreError> {
            let mut txn = db.begin_write().map_err(backend)?;
            txn.set_durability(Durability::Immediate).map_err(backend)?;
            txn.commit().map_err(backend)
        })();
        if let Err(e) = synced {
            tracing::warn!(error = %e, "syncing the last writes at close failed");
        }
    }
}

/// Applies `writes` in one transaction, synced to disk when `sync`.
fn apply_batch(
    db: &Database,
    writes: &[&Write],
    sync: bool,
    position: &mut u64,
) -> Result<(), StoreError> {
    let mut txn = db.begin_write().map_err(backend)?;
    let durability = if sync {
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
        // Opened on first use: most batches are case commits only.
        let mut delivery_tables: Option<DeliveryTables> = None;
        for write in writes {
            let commit = match write {
                Write::Enqueue { jobs, cursor, .. } => {
                    open_deliveries(&txn, &mut delivery_tables)?.enqueue(jobs, cursor)?;
                    continue;
                }
                Write::UpdateDeliveries { jobs, .. } => {
                    let tables = open_deliveries(&txn, &mut delivery_tables)?;
                    for job in jobs {
                        tables.update(job)?;
                    }
                    continue;
                }
                Write::RoomAppend(append) => {
                    rooms::append(&txn, append)?;
                    continue;
                }
                Write::Sync => continue,
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
                    append_outbox(&mut outbox, events, position)?;
                    continue;
                }
            };
            let id = commit.case_id;
            cases.insert(id, commit.case.as_slice()).map_err(backend)?;
            index.insert((commit.created, id), ()).map_err(backend)?;
            if let Some((review_id, json, room, pending)) = &commit.review {
                reviews
                    .insert(review_id.as_str(), json.as_slice())
                    .map_err(backend)?;
                rooms::index_review(&txn, room, review_id, *pending)?;
            }
            if let Some((key, case_id, at)) = &commit.idempotency {
                idem.insert(key.as_str(), (*case_id, *at))
                    .map_err(backend)?;
            }
            append_outbox(&mut outbox, &commit.events, position)?;
        }
    }
    txn.commit().map_err(backend)
}

/// Appends encoded `events` to the outbox at the next positions.
fn append_outbox(
    outbox: &mut redb::Table<u64, &[u8]>,
    events: &[Vec<u8>],
    position: &mut u64,
) -> Result<(), StoreError> {
    for event in events {
        outbox
            .insert(*position, event.as_slice())
            .map_err(backend)?;
        *position += 1;
    }
    Ok(())
}

fn open_deliveries<'a, 'txn>(
    txn: &'txn redb::WriteTransaction,
    tables: &'a mut Option<DeliveryTables<'txn>>,
) -> Result<&'a mut DeliveryTables<'txn>, StoreError> {
    if tables.is_none() {
        *tables = Some(DeliveryTables::open(txn)?);
    }
    tables
        .as_mut()
        .ok_or_else(|| StoreError::Backend("delivery tables not open".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{RoomEntry, RoomMeta};

    fn append(open: bool, entries: usize) -> Write {
        Write::RoomAppend(Box::new(rooms::Append {
            room: "r".into(),
            meta: RoomMeta {
                epoch: "e".into(),
                seq: entries as u64,
                open,
            },
            entries: (1..=entries as u64)
                .map(|seq| RoomEntry {
                    seq,
                    frame: "{}".into(),
                })
                .collect(),
            keep: 10,
        }))
    }

    #[test]
    fn room_history_batches_recorded_attempts_and_the_fan_out_skip_the_sync() {
        for durable in [true, false] {
            assert!(!append(true, 2).must_sync(durable), "history batch");
            assert!(append(true, 0).must_sync(durable), "open marker");
            assert!(append(false, 0).must_sync(durable), "close marker");
            assert_eq!(Write::Events(vec![]).must_sync(durable), durable);
            let attempts = |sync| Write::UpdateDeliveries { jobs: vec![], sync };
            assert!(!attempts(false).must_sync(durable), "recorded attempts");
            assert_eq!(attempts(true).must_sync(durable), durable);
            assert!(!Write::fan_out(vec![], "1").must_sync(durable), "fan-out");
            assert_eq!(Write::enqueue(vec![], "1").must_sync(durable), durable);
        }
    }
}
