//! The delivery queue and log of the embedded store.
//!
//! | table | key → value | holds |
//! |---|---|---|
//! | `deliveries` | (endpoint id, msg id) → JSON | every job; ULID msg ids make it the log |
//! | `delivery_due` | (due micros, endpoint id, msg id) → () | pending jobs only, earliest first |
//! | `delivery_by_msg` | (msg id, endpoint id) → () | the endpoints a message went to |
//! | `meta` | name → text | `dispatch_cursor` |
//!
//! Writes run on the store's writer thread inside its batch transaction, so an enqueue and its
//! cursor, or a job and its due entry, commit together and share the group commit's fsync.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use redb::{ReadTransaction, ReadableTable, Table, TableDefinition, WriteTransaction};

use super::{backend, corrupt, created_key};
use crate::delivery::{DeliveryJob, DeliveryState};
use crate::store::{SkipDue, StoreError};

const DELIVERIES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("deliveries");
const DELIVERY_DUE: TableDefinition<(u64, &str, &str), ()> = TableDefinition::new("delivery_due");
const DELIVERY_BY_MSG: TableDefinition<(&str, &str), ()> = TableDefinition::new("delivery_by_msg");
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");

const DISPATCH_CURSOR: &str = "dispatch_cursor";
/// Sorts after every id (ids are ASCII), so `(id, MAX_ID)` bounds all keys starting with `id`.
const MAX_ID: &str = "\u{10FFFF}";

/// Creates the tables, so readers never see "table does not exist".
pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(DELIVERIES).map_err(backend)?;
    txn.open_table(DELIVERY_DUE).map_err(backend)?;
    txn.open_table(DELIVERY_BY_MSG).map_err(backend)?;
    txn.open_table(META).map_err(backend)?;
    Ok(())
}

/// The delivery tables of one write transaction.
pub(super) struct DeliveryTables<'txn> {
    jobs: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    due: Table<'txn, (u64, &'static str, &'static str), ()>,
    by_msg: Table<'txn, (&'static str, &'static str), ()>,
    meta: Table<'txn, &'static str, &'static str>,
}

impl<'txn> DeliveryTables<'txn> {
    /// Opens the tables in `txn` (once per transaction: redb refuses a second open).
    pub(super) fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(DeliveryTables {
            jobs: txn.open_table(DELIVERIES).map_err(backend)?,
            due: txn.open_table(DELIVERY_DUE).map_err(backend)?,
            by_msg: txn.open_table(DELIVERY_BY_MSG).map_err(backend)?,
            meta: txn.open_table(META).map_err(backend)?,
        })
    }

    /// Inserts the jobs that do not exist yet and moves the cursor.
    pub(super) fn enqueue(&mut self, jobs: &[DeliveryJob], cursor: &str) -> Result<(), StoreError> {
        for job in jobs {
            let key = (job.endpoint_id.as_str(), job.msg_id.as_str());
            // An existing job may already have attempts: re-enqueuing must not reset it.
            if self.jobs.get(key).map_err(backend)?.is_some() {
                continue;
            }
            self.put(&EncodedJob::new(job)?)?;
        }
        self.meta.insert(DISPATCH_CURSOR, cursor).map_err(backend)?;
        Ok(())
    }

    /// Replaces a job, moving or removing its due entry.
    pub(super) fn update(&mut self, job: &EncodedJob) -> Result<(), StoreError> {
        let key = (job.endpoint_id.as_str(), job.msg_id.as_str());
        let (exists, old_due) = match self.jobs.get(key).map_err(backend)? {
            Some(raw) => {
                let old: Schedule = serde_json::from_slice(raw.value()).map_err(corrupt)?;
                (
                    true,
                    (old.state == DeliveryState::Pending).then(|| created_key(old.due_at)),
                )
            }
            None => (false, None),
        };
        match old_due {
            Some(due) if Some(due) == job.due => {
                // Same due entry (a claim or a retry at the same time): only the record changes.
                return self
                    .jobs
                    .insert(key, job.bytes.as_slice())
                    .map(|_| ())
                    .map_err(backend);
            }
            Some(due) => {
                self.due.remove((due, key.0, key.1)).map_err(backend)?;
            }
            None => {}
        }
        if exists {
            // Its message index entry is there already.
            self.jobs
                .insert(key, job.bytes.as_slice())
                .map_err(backend)?;
            if let Some(due) = job.due {
                self.due.insert((due, key.0, key.1), ()).map_err(backend)?;
            }
            return Ok(());
        }
        self.put(job)
    }

    fn put(&mut self, job: &EncodedJob) -> Result<(), StoreError> {
        let (endpoint, msg) = (job.endpoint_id.as_str(), job.msg_id.as_str());
        self.jobs
            .insert((endpoint, msg), job.bytes.as_slice())
            .map_err(backend)?;
        self.by_msg.insert((msg, endpoint), ()).map_err(backend)?;
        if let Some(due) = job.due {
            self.due.insert((due, endpoint, msg), ()).map_err(backend)?;
        }
        Ok(())
    }
}

/// A job ready to store: encoded by the caller, so the writer thread (which every write of the
/// store waits for) does not spend its time in JSON.
pub(super) struct EncodedJob {
    endpoint_id: String,
    msg_id: String,
    /// The due-index key while pending.
    due: Option<u64>,
    bytes: Vec<u8>,
}

impl EncodedJob {
    pub(super) fn new(job: &DeliveryJob) -> Result<Self, StoreError> {
        Ok(EncodedJob {
            endpoint_id: job.endpoint_id.clone(),
            msg_id: job.msg_id.clone(),
            due: (job.state == DeliveryState::Pending).then(|| created_key(job.due_at)),
            bytes: serde_json::to_vec(job).map_err(backend)?,
        })
    }
}

/// The part of a stored job an update needs: where its due entry is. Decoding only this skips
/// building the payload (the parser still steps over it).
#[derive(serde::Deserialize)]
struct Schedule {
    state: DeliveryState,
    due_at: DateTime<Utc>,
}

fn decode(raw: &[u8]) -> Result<DeliveryJob, StoreError> {
    serde_json::from_slice(raw).map_err(corrupt)
}

/// The dispatch cursor.
pub(super) fn dispatch_cursor(txn: &ReadTransaction) -> Result<Option<String>, StoreError> {
    let meta = txn.open_table(META).map_err(backend)?;
    Ok(meta
        .get(DISPATCH_CURSOR)
        .map_err(backend)?
        .map(|v| v.value().to_string()))
}

/// One job.
pub(super) fn load(
    txn: &ReadTransaction,
    endpoint_id: &str,
    msg_id: &str,
) -> Result<Option<DeliveryJob>, StoreError> {
    let jobs = txn.open_table(DELIVERIES).map_err(backend)?;
    match jobs.get((endpoint_id, msg_id)).map_err(backend)? {
        Some(raw) => decode(raw.value()).map(Some),
        None => Ok(None),
    }
}

/// Pending jobs due at `now` (micro precision), earliest first, except those `skip` names (at
/// most `max_skipped` of them are passed over).
pub(super) fn due(
    txn: &ReadTransaction,
    now: DateTime<Utc>,
    limit: usize,
    max_skipped: usize,
    skip: &SkipDue<'_>,
) -> Result<Vec<DeliveryJob>, StoreError> {
    let due = txn.open_table(DELIVERY_DUE).map_err(backend)?;
    let jobs = txn.open_table(DELIVERIES).map_err(backend)?;
    let now = created_key(now);
    let mut out = Vec::new();
    let mut skipped = 0;
    for entry in due.range::<(u64, &str, &str)>(..).map_err(backend)? {
        if out.len() == limit {
            break;
        }
        let (key, _) = entry.map_err(backend)?;
        let (at, endpoint, msg) = key.value();
        if at > now {
            break;
        }
        if skip(endpoint, msg) {
            skipped += 1;
            if skipped >= max_skipped {
                break;
            }
            continue;
        }
        let raw = jobs.get((endpoint, msg)).map_err(backend)?.ok_or_else(|| {
            StoreError::Corrupt(format!("due entry without job: {endpoint}/{msg}"))
        })?;
        out.push(decode(raw.value())?);
    }
    Ok(out)
}

/// The earliest due time among pending jobs.
pub(super) fn next_due(txn: &ReadTransaction) -> Result<Option<DateTime<Utc>>, StoreError> {
    let due = txn.open_table(DELIVERY_DUE).map_err(backend)?;
    let Some((key, _)) = due.first().map_err(backend)? else {
        return Ok(None);
    };
    let (at, _, _) = key.value();
    let at = i64::try_from(at)
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(|| StoreError::Corrupt(format!("due time {at}")))?;
    Ok(Some(at))
}

/// The jobs of one message, by endpoint id.
pub(super) fn of_message(
    txn: &ReadTransaction,
    msg_id: &str,
) -> Result<Vec<DeliveryJob>, StoreError> {
    let by_msg = txn.open_table(DELIVERY_BY_MSG).map_err(backend)?;
    let jobs = txn.open_table(DELIVERIES).map_err(backend)?;
    let mut out = Vec::new();
    for entry in by_msg
        .range((msg_id, "")..(msg_id, MAX_ID))
        .map_err(backend)?
    {
        let (key, _) = entry.map_err(backend)?;
        let (_, endpoint) = key.value();
        if let Some(raw) = jobs.get((endpoint, msg_id)).map_err(backend)? {
            out.push(decode(raw.value())?);
        }
    }
    Ok(out)
}

/// One endpoint's jobs, newest first, below `before`.
pub(super) fn endpoint_log(
    txn: &ReadTransaction,
    endpoint_id: &str,
    before: Option<&str>,
    limit: usize,
) -> Result<Vec<DeliveryJob>, StoreError> {
    let jobs = txn.open_table(DELIVERIES).map_err(backend)?;
    let upper = before.unwrap_or(MAX_ID);
    let range = jobs
        .range((endpoint_id, "")..(endpoint_id, upper))
        .map_err(backend)?;
    let mut out = Vec::new();
    for entry in range.rev().take(limit) {
        let (_, raw) = entry.map_err(backend)?;
        out.push(decode(raw.value())?);
    }
    Ok(out)
}

/// Pending jobs per endpoint.
pub(super) fn backlog(txn: &ReadTransaction) -> Result<BTreeMap<String, u64>, StoreError> {
    let due = txn.open_table(DELIVERY_DUE).map_err(backend)?;
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for entry in due.range::<(u64, &str, &str)>(..).map_err(backend)? {
        let (key, _) = entry.map_err(backend)?;
        let (_, endpoint, _) = key.value();
        match out.get_mut(endpoint) {
            Some(n) => *n += 1,
            None => {
                out.insert(endpoint.to_string(), 1);
            }
        }
    }
    Ok(out)
}
