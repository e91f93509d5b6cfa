//! The delivery queue and log of the embedded store.
//!
//! | table | key → value | holds |
//! |---|---|---|
//! | `deliveries` | (endpoint id, msg id) → record | every job but its envelope; ULID msg ids make it the log |
//! | `delivery_payloads` | msg id → JSON | the envelope, once per message (the same for every endpoint) |
//! | `delivery_due_by_endpoint` | (endpoint id, due micros, msg id) → () | pending jobs only, per endpoint, earliest first |
//! | `delivery_by_msg` | (msg id, endpoint id) → () | the endpoints a message went to |
//! | `meta` | name → text | `dispatch_cursor` |
//!
//! Writes run on the store's writer thread inside its batch transaction, so an enqueue and its
//! cursor, or a job and its due entry, commit together and share the group commit's fsync.
//!
//! Pending jobs are indexed per endpoint only: the dispatcher reads the endpoints it can serve,
//! and the few readers that want every endpoint's jobs earliest first merge the endpoints'
//! ranges. Stores written before kept a second, global index (`delivery_due`); opening one
//! builds the per-endpoint index from it if need be and drops it, which saves every attempt a
//! B-tree remove and every retry an insert.
//!
//! A job's envelope never changes, so it is stored apart from the record every attempt rewrites:
//! an attempt writes a couple of hundred bytes, not the whole envelope again. Records written
//! before that still hold their envelope; they are read as they are, and their first update
//! moves the envelope to `delivery_payloads`.
//!
//! A record is binary: a format byte, then the job in postcard with its state and due time
//! first, so an update finds the old due entry without decoding the rest, and times are numbers
//! rather than RFC 3339 text. JSON then was a sixth of a delivery drain's store work (encoding
//! in the recorder, parsing in the writer and the dispatcher). Records written before are JSON
//! (they start with `{`); both are read, and each is rewritten binary on its next update.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use redb::{
    ReadTransaction, ReadableTable, ReadableTableMetadata, Table, TableDefinition, TableHandle,
    WriteTransaction,
};

use super::{backend, corrupt, created_key};
use crate::delivery::job::{Attempt, Envelope};
use crate::delivery::{DeliveryJob, DeliveryState};
use crate::store::{DueJobs, DueQuery, SkipDue, StoreError};

const DELIVERIES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("deliveries");
/// The global earliest-first index of stores written before; dropped on open.
const LEGACY_DELIVERY_DUE: TableDefinition<(u64, &str, &str), ()> =
    TableDefinition::new("delivery_due");
const DELIVERY_DUE_BY_ENDPOINT: TableDefinition<(&str, u64, &str), ()> =
    TableDefinition::new("delivery_due_by_endpoint");
const DELIVERY_BY_MSG: TableDefinition<(&str, &str), ()> = TableDefinition::new("delivery_by_msg");
const DELIVERY_PAYLOADS: TableDefinition<&str, &str> = TableDefinition::new("delivery_payloads");
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");

const DISPATCH_CURSOR: &str = "dispatch_cursor";
/// Sorts after every id (ids are ASCII), so `(id, MAX_ID)` bounds all keys starting with `id`.
const MAX_ID: &str = "\u{10FFFF}";

/// Creates the tables, so readers never see "table does not exist"; a store written before
/// gets its per-endpoint due index built from the global one, which is then dropped.
pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(DELIVERIES).map_err(backend)?;
    {
        let mut by_endpoint = txn.open_table(DELIVERY_DUE_BY_ENDPOINT).map_err(backend)?;
        let legacy = txn
            .list_tables()
            .map_err(backend)?
            .any(|t| t.name() == LEGACY_DELIVERY_DUE.name());
        if legacy {
            let due = txn.open_table(LEGACY_DELIVERY_DUE).map_err(backend)?;
            if by_endpoint.is_empty().map_err(backend)? {
                for entry in due.iter().map_err(backend)? {
                    let (key, _) = entry.map_err(backend)?;
                    let (at, endpoint, msg) = key.value();
                    by_endpoint
                        .insert((endpoint, at, msg), ())
                        .map_err(backend)?;
                }
            }
            drop(due);
            txn.delete_table(LEGACY_DELIVERY_DUE).map_err(backend)?;
        }
    }
    txn.open_table(DELIVERY_BY_MSG).map_err(backend)?;
    txn.open_table(DELIVERY_PAYLOADS).map_err(backend)?;
    txn.open_table(META).map_err(backend)?;
    Ok(())
}

/// The delivery tables of one write transaction.
pub(super) struct DeliveryTables<'txn> {
    jobs: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    due_by_endpoint: Table<'txn, (&'static str, u64, &'static str), ()>,
    by_msg: Table<'txn, (&'static str, &'static str), ()>,
    payloads: Table<'txn, &'static str, &'static str>,
    meta: Table<'txn, &'static str, &'static str>,
}

impl<'txn> DeliveryTables<'txn> {
    /// Opens the tables in `txn` (once per transaction: redb refuses a second open).
    pub(super) fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(DeliveryTables {
            jobs: txn.open_table(DELIVERIES).map_err(backend)?,
            due_by_endpoint: txn.open_table(DELIVERY_DUE_BY_ENDPOINT).map_err(backend)?,
            by_msg: txn.open_table(DELIVERY_BY_MSG).map_err(backend)?,
            payloads: txn.open_table(DELIVERY_PAYLOADS).map_err(backend)?,
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
        // The insert answers the record it replaces: one walk down the tree rather than a read
        // and then a write. (A failure below aborts the whole transaction, insert included.)
        let replaced = self
            .jobs
            .insert(key, job.bytes.as_slice())
            .map_err(backend)?
            .map(|raw| Schedule::of(raw.value()))
            .transpose()?;
        let Some(old) = replaced else {
            return self.index(job);
        };
        if old.holds_envelope {
            // Written before envelopes were stored apart: the new record leaves it out.
            self.payloads
                .insert(key.1, job.payload.as_str())
                .map_err(backend)?;
        }
        // Same due entry (a claim or a retry at the same time): only the record changed.
        if old.due != job.due {
            if let Some(due) = old.due {
                self.unschedule(due, key.0, key.1)?;
            }
            if let Some(due) = job.due {
                self.schedule(due, key.0, key.1)?;
            }
        }
        Ok(())
    }

    fn put(&mut self, job: &EncodedJob) -> Result<(), StoreError> {
        self.jobs
            .insert(
                (job.endpoint_id.as_str(), job.msg_id.as_str()),
                job.bytes.as_slice(),
            )
            .map_err(backend)?;
        self.index(job)
    }

    /// A new job's message index entry, envelope (the message's jobs for other endpoints share
    /// it) and due entry.
    fn index(&mut self, job: &EncodedJob) -> Result<(), StoreError> {
        let (endpoint, msg) = (job.endpoint_id.as_str(), job.msg_id.as_str());
        self.by_msg.insert((msg, endpoint), ()).map_err(backend)?;
        if self.payloads.get(msg).map_err(backend)?.is_none() {
            self.payloads
                .insert(msg, job.payload.as_str())
                .map_err(backend)?;
        }
        if let Some(due) = job.due {
            self.schedule(due, endpoint, msg)?;
        }
        Ok(())
    }

    /// Adds a job's due entry.
    fn schedule(&mut self, due: u64, endpoint: &str, msg: &str) -> Result<(), StoreError> {
        self.due_by_endpoint
            .insert((endpoint, due, msg), ())
            .map_err(backend)?;
        Ok(())
    }

    /// Removes a job's due entry.
    fn unschedule(&mut self, due: u64, endpoint: &str, msg: &str) -> Result<(), StoreError> {
        self.due_by_endpoint
            .remove((endpoint, due, msg))
            .map_err(backend)?;
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
    /// The record: the job without its envelope.
    bytes: Vec<u8>,
    /// The envelope, stored with the message's first job.
    payload: String,
}

impl EncodedJob {
    pub(super) fn new(job: &DeliveryJob) -> Result<Self, StoreError> {
        let record = BinaryRecord {
            state: state_code(job.state),
            due_at: stamp(job.due_at),
            msg_id: job.msg_id.as_str(),
            endpoint_id: job.endpoint_id.as_str(),
            event: job.event.as_str(),
            created_at: stamp(job.created_at),
            attempts: Attempts(&job.attempts),
        };
        let mut bytes = Vec::with_capacity(128 + 64 * job.attempts.len());
        bytes.push(BINARY_RECORD);
        Ok(EncodedJob {
            endpoint_id: job.endpoint_id.clone(),
            msg_id: job.msg_id.clone(),
            due: due_key(job.state, job.due_at),
            bytes: postcard::to_extend(&record, bytes).map_err(backend)?,
            payload: job.payload.text().to_string(),
        })
    }
}

/// A job's due-index key: its due time while it is pending, none once settled.
fn due_key(state: DeliveryState, due_at: DateTime<Utc>) -> Option<u64> {
    (state == DeliveryState::Pending).then(|| created_key(due_at))
}

/// The first byte of a binary record. A JSON record (as written before) starts with `{`.
const BINARY_RECORD: u8 = 1;

/// A time in a binary record: seconds and nanoseconds since the epoch.
type Stamp = (i64, u32);

fn stamp(t: DateTime<Utc>) -> Stamp {
    (t.timestamp(), t.timestamp_subsec_nanos())
}

fn time_of((secs, nanos): Stamp) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp(secs, nanos)
        .ok_or_else(|| StoreError::Corrupt(format!("stored time {secs}.{nanos}")))
}

/// A state in a binary record (fixed codes, whatever the enum's order).
fn state_code(state: DeliveryState) -> u8 {
    match state {
        DeliveryState::Pending => 0,
        DeliveryState::Delivered => 1,
        DeliveryState::Failed => 2,
    }
}

fn state_of(code: u8) -> Result<DeliveryState, StoreError> {
    match code {
        0 => Ok(DeliveryState::Pending),
        1 => Ok(DeliveryState::Delivered),
        2 => Ok(DeliveryState::Failed),
        _ => Err(StoreError::Corrupt(format!("stored delivery state {code}"))),
    }
}

/// A job as stored after [`BINARY_RECORD`], without its envelope: `S` is `&str` when written,
/// `String` when read, `A` the attempts. The state and due time come first: [`Schedule`] reads
/// only them.
#[derive(serde::Serialize, serde::Deserialize)]
struct BinaryRecord<S, A> {
    state: u8,
    due_at: Stamp,
    msg_id: S,
    endpoint_id: S,
    event: S,
    created_at: Stamp,
    attempts: A,
}

/// One attempt as stored in a binary record.
#[derive(serde::Serialize, serde::Deserialize)]
struct BinaryAttempt<S> {
    attempt: u32,
    status_code: Option<u16>,
    error: Option<S>,
    duration_ms: u64,
    response_snippet: Option<S>,
    at: Stamp,
    next_attempt_at: Option<Stamp>,
}

/// A job's attempts, written as [`BinaryAttempt`]s without building them all first.
struct Attempts<'a>(&'a [Attempt]);

impl serde::Serialize for Attempts<'_> {
    fn serialize<Ser: serde::Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        serializer.collect_seq(self.0.iter().map(|a| BinaryAttempt {
            attempt: a.attempt,
            status_code: a.status_code,
            error: a.error.as_deref(),
            duration_ms: a.duration_ms,
            response_snippet: a.response_snippet.as_deref(),
            at: stamp(a.at),
            next_attempt_at: a.next_attempt_at.map(stamp),
        }))
    }
}

/// A stored job as read back, without its envelope unless the record still holds one: a JSON
/// record (as written before) deserializes into it, a binary one is converted.
#[derive(serde::Deserialize)]
struct Record {
    msg_id: String,
    endpoint_id: String,
    event: String,
    /// Only in records written before envelopes were stored apart.
    #[serde(default)]
    payload: Option<Envelope>,
    created_at: DateTime<Utc>,
    due_at: DateTime<Utc>,
    state: DeliveryState,
    attempts: Vec<Attempt>,
}

/// The part of a stored job an update needs: its due entry (while pending), and whether the
/// record still holds its envelope.
struct Schedule {
    due: Option<u64>,
    holds_envelope: bool,
}

/// The schedule of a JSON record (the rest stepped over, not built).
#[derive(serde::Deserialize)]
struct JsonSchedule {
    state: DeliveryState,
    due_at: DateTime<Utc>,
    #[serde(default)]
    payload: Option<serde::de::IgnoredAny>,
}

impl Schedule {
    fn of(raw: &[u8]) -> Result<Schedule, StoreError> {
        if let Some((&BINARY_RECORD, rest)) = raw.split_first() {
            let ((state, due_at), _): ((u8, Stamp), _) =
                postcard::take_from_bytes(rest).map_err(corrupt)?;
            return Ok(Schedule {
                due: due_key(state_of(state)?, time_of(due_at)?),
                holds_envelope: false,
            });
        }
        let old: JsonSchedule = serde_json::from_slice(raw).map_err(corrupt)?;
        Ok(Schedule {
            due: due_key(old.state, old.due_at),
            holds_envelope: old.payload.is_some(),
        })
    }
}

/// The envelopes table of a read.
type Payloads = redb::ReadOnlyTable<&'static str, &'static str>;

fn decode(raw: &[u8], payloads: &Payloads) -> Result<DeliveryJob, StoreError> {
    let record = match raw.split_first() {
        Some((&BINARY_RECORD, rest)) => {
            let r: BinaryRecord<String, Vec<BinaryAttempt<String>>> =
                postcard::from_bytes(rest).map_err(corrupt)?;
            Record {
                state: state_of(r.state)?,
                due_at: time_of(r.due_at)?,
                msg_id: r.msg_id,
                endpoint_id: r.endpoint_id,
                event: r.event,
                payload: None,
                created_at: time_of(r.created_at)?,
                attempts: r
                    .attempts
                    .into_iter()
                    .map(|a| {
                        Ok(Attempt {
                            attempt: a.attempt,
                            status_code: a.status_code,
                            error: a.error,
                            duration_ms: a.duration_ms,
                            response_snippet: a.response_snippet,
                            at: time_of(a.at)?,
                            next_attempt_at: a.next_attempt_at.map(time_of).transpose()?,
                        })
                    })
                    .collect::<Result<_, StoreError>>()?,
            }
        }
        _ => serde_json::from_slice(raw).map_err(corrupt)?,
    };
    let payload = match record.payload {
        Some(payload) => payload,
        None => {
            let text = payloads
                .get(record.msg_id.as_str())
                .map_err(backend)?
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("job without envelope: {}", record.msg_id))
                })?;
            Envelope::from_text(text.value().to_string()).map_err(corrupt)?
        }
    };
    Ok(DeliveryJob {
        msg_id: record.msg_id,
        endpoint_id: record.endpoint_id,
        event: record.event,
        payload,
        created_at: record.created_at,
        due_at: record.due_at,
        state: record.state,
        attempts: record.attempts,
    })
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
    let payloads = txn.open_table(DELIVERY_PAYLOADS).map_err(backend)?;
    match jobs.get((endpoint_id, msg_id)).map_err(backend)? {
        Some(raw) => decode(raw.value(), &payloads).map(Some),
        None => Ok(None),
    }
}

/// The per-endpoint due index of a read.
type DueIndex = redb::ReadOnlyTable<(&'static str, u64, &'static str), ()>;

/// Each endpoint with pending jobs and its earliest due entry (due micros, msg id), in endpoint
/// order: one index lookup per endpoint, stepping over the rest of its entries.
fn endpoint_heads(index: &DueIndex) -> Result<Vec<(String, u64, String)>, StoreError> {
    let mut heads: Vec<(String, u64, String)> = Vec::new();
    loop {
        let next = match heads.last() {
            None => index.first().map_err(backend)?,
            Some((endpoint, _, _)) => index
                .range((endpoint.as_str(), u64::MAX, MAX_ID)..)
                .map_err(backend)?
                .next()
                .transpose()
                .map_err(backend)?,
        };
        let Some((key, _)) = next else {
            return Ok(heads);
        };
        let (endpoint, at, msg) = key.value();
        heads.push((endpoint.to_string(), at, msg.to_string()));
    }
}

/// Pending jobs due at `now` (micro precision), earliest first (then by endpoint and msg id),
/// except those `skip` names (at most `max_skipped` of them are passed over): the endpoints'
/// due ranges merged.
pub(super) fn due(
    txn: &ReadTransaction,
    now: DateTime<Utc>,
    limit: usize,
    max_skipped: usize,
    skip: &SkipDue<'_>,
) -> Result<Vec<DeliveryJob>, StoreError> {
    use std::cmp::Reverse;
    let index = txn.open_table(DELIVERY_DUE_BY_ENDPOINT).map_err(backend)?;
    let jobs = txn.open_table(DELIVERIES).map_err(backend)?;
    let payloads = txn.open_table(DELIVERY_PAYLOADS).map_err(backend)?;
    let now = created_key(now);
    let endpoints: Vec<String> = endpoint_heads(&index)?
        .into_iter()
        .filter(|(_, at, _)| *at <= now)
        .map(|(endpoint, _, _)| endpoint)
        .collect();
    let mut ranges = endpoints
        .iter()
        .map(|e| index.range((e.as_str(), 0, "")..=(e.as_str(), now, MAX_ID)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    // The next entry of each endpoint's range: (due, endpoint's place, msg id).
    let mut heap = std::collections::BinaryHeap::new();
    let mut advance = |i: usize, heap: &mut std::collections::BinaryHeap<_>| {
        if let Some(entry) = ranges[i].next() {
            let (key, _) = entry.map_err(backend)?;
            let (_, at, msg) = key.value();
            heap.push(Reverse((at, i, msg.to_string())));
        }
        Ok::<(), StoreError>(())
    };
    for i in 0..endpoints.len() {
        advance(i, &mut heap)?;
    }
    let mut out = Vec::new();
    let mut skipped = 0;
    while out.len() < limit {
        let Some(Reverse((_, i, msg))) = heap.pop() else {
            break;
        };
        let endpoint = endpoints[i].as_str();
        if skip(endpoint, &msg) {
            skipped += 1;
            if skipped >= max_skipped {
                break;
            }
        } else {
            let raw = jobs
                .get((endpoint, msg.as_str()))
                .map_err(backend)?
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("due entry without job: {endpoint}/{msg}"))
                })?;
            out.push(decode(raw.value(), &payloads)?);
        }
        advance(i, &mut heap)?;
    }
    Ok(out)
}

/// Due jobs of the `wanted` endpoints from the per-endpoint index (see
/// [`SnapshotStore::due_deliveries_of`](crate::store::SnapshotStore::due_deliveries_of)): only
/// their own entries are read, so another endpoint's backlog costs nothing. Complete unless
/// `limit` or `max_skipped` cut the reading short.
pub(super) fn due_of(
    txn: &ReadTransaction,
    DueQuery {
        wanted,
        now,
        limit,
        max_skipped,
    }: DueQuery<'_>,
    in_flight: &SkipDue<'_>,
) -> Result<DueJobs, StoreError> {
    let by_endpoint = txn.open_table(DELIVERY_DUE_BY_ENDPOINT).map_err(backend)?;
    let jobs = txn.open_table(DELIVERIES).map_err(backend)?;
    let payloads = txn.open_table(DELIVERY_PAYLOADS).map_err(backend)?;
    let now = created_key(now);
    let mut out = Vec::new();
    let mut skipped = 0;
    for &(endpoint, want) in wanted {
        let mut taken = 0;
        for entry in by_endpoint
            .range((endpoint, 0, "")..=(endpoint, now, MAX_ID))
            .map_err(backend)?
        {
            if taken == want {
                break;
            }
            if out.len() == limit || skipped >= max_skipped {
                return Ok(DueJobs {
                    jobs: out,
                    complete: false,
                });
            }
            let (key, _) = entry.map_err(backend)?;
            let (_, _, msg) = key.value();
            if in_flight(endpoint, msg) {
                skipped += 1;
                continue;
            }
            let raw = jobs.get((endpoint, msg)).map_err(backend)?.ok_or_else(|| {
                StoreError::Corrupt(format!("due entry without job: {endpoint}/{msg}"))
            })?;
            out.push(decode(raw.value(), &payloads)?);
            taken += 1;
        }
    }
    Ok(DueJobs {
        jobs: out,
        complete: true,
    })
}

/// The earliest due time among pending jobs: the earliest of the endpoints' first entries.
pub(super) fn next_due(txn: &ReadTransaction) -> Result<Option<DateTime<Utc>>, StoreError> {
    let index = txn.open_table(DELIVERY_DUE_BY_ENDPOINT).map_err(backend)?;
    let Some(at) = endpoint_heads(&index)?
        .into_iter()
        .map(|(_, at, _)| at)
        .min()
    else {
        return Ok(None);
    };
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
    let payloads = txn.open_table(DELIVERY_PAYLOADS).map_err(backend)?;
    let mut out = Vec::new();
    for entry in by_msg
        .range((msg_id, "")..(msg_id, MAX_ID))
        .map_err(backend)?
    {
        let (key, _) = entry.map_err(backend)?;
        let (_, endpoint) = key.value();
        if let Some(raw) = jobs.get((endpoint, msg_id)).map_err(backend)? {
            out.push(decode(raw.value(), &payloads)?);
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
    let payloads = txn.open_table(DELIVERY_PAYLOADS).map_err(backend)?;
    let upper = before.unwrap_or(MAX_ID);
    let range = jobs
        .range((endpoint_id, "")..(endpoint_id, upper))
        .map_err(backend)?;
    let mut out = Vec::new();
    for entry in range.rev().take(limit) {
        let (_, raw) = entry.map_err(backend)?;
        out.push(decode(raw.value(), &payloads)?);
    }
    Ok(out)
}

/// The smallest msg id among `endpoint`'s entries in the per-endpoint due index (its keys only).
pub(super) fn oldest_pending_of(
    txn: &ReadTransaction,
    endpoint: &str,
) -> Result<Option<String>, StoreError> {
    let by_endpoint = txn.open_table(DELIVERY_DUE_BY_ENDPOINT).map_err(backend)?;
    let mut oldest: Option<String> = None;
    for entry in by_endpoint
        .range((endpoint, 0, "")..=(endpoint, u64::MAX, MAX_ID))
        .map_err(backend)?
    {
        let (key, _) = entry.map_err(backend)?;
        let (_, _, msg) = key.value();
        if oldest.as_deref().is_none_or(|o| msg < o) {
            oldest = Some(msg.to_string());
        }
    }
    Ok(oldest)
}

/// Pending jobs per endpoint.
pub(super) fn backlog(txn: &ReadTransaction) -> Result<BTreeMap<String, u64>, StoreError> {
    let index = txn.open_table(DELIVERY_DUE_BY_ENDPOINT).map_err(backend)?;
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for (endpoint, _, _) in endpoint_heads(&index)? {
        let pending = index
            .range((endpoint.as_str(), 0, "")..=(endpoint.as_str(), u64::MAX, MAX_ID))
            .map_err(backend)?
            .count();
        out.insert(endpoint, pending as u64);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::delivery::Attempt;
    use crate::domain::{Event, EventKind};
    use crate::store::{EmbeddedStore, SnapshotStore};

    /// A job stored whole (envelope inside the record) and in the earliest-first due index only,
    /// as stores written before envelopes were kept apart and due jobs indexed per endpoint.
    fn write_whole(path: &std::path::Path, job: &DeliveryJob) {
        let db = redb::Database::create(path.join("casehub.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let key = (job.endpoint_id.as_str(), job.msg_id.as_str());
            let bytes = serde_json::to_vec(job).unwrap();
            let mut jobs = txn.open_table(DELIVERIES).unwrap();
            jobs.insert(key, bytes.as_slice()).unwrap();
            let mut due = txn.open_table(LEGACY_DELIVERY_DUE).unwrap();
            due.insert((created_key(job.due_at), key.0, key.1), ())
                .unwrap();
            let mut by_msg = txn.open_table(DELIVERY_BY_MSG).unwrap();
            by_msg.insert((key.1, key.0), ()).unwrap();
        }
        txn.commit().unwrap();
    }

    /// How a job is stored.
    #[derive(Debug, PartialEq)]
    struct Stored {
        /// The record is binary (else JSON, as written before).
        binary: bool,
        /// The record holds the envelope.
        holds_envelope: bool,
        /// The envelopes table holds the message's envelope.
        apart: bool,
    }

    fn stored(store: &EmbeddedStore, job: &DeliveryJob) -> Stored {
        store
            .read(|txn| {
                let jobs = txn.open_table(DELIVERIES).map_err(backend)?;
                let raw = jobs
                    .get((job.endpoint_id.as_str(), job.msg_id.as_str()))
                    .map_err(backend)?
                    .expect("the job is stored");
                let payloads = txn.open_table(DELIVERY_PAYLOADS).map_err(backend)?;
                let kept = payloads.get(job.msg_id.as_str()).map_err(backend)?;
                Ok(Stored {
                    binary: raw.value().first() == Some(&BINARY_RECORD),
                    holds_envelope: Schedule::of(raw.value())?.holds_envelope,
                    apart: kept.is_some_and(|p| p.value() == job.payload.text()),
                })
            })
            .unwrap()
    }

    /// Checks that `job` is stored `how` and reads back as it is.
    async fn stored_as(store: &EmbeddedStore, job: &DeliveryJob, how: Stored) {
        assert_eq!(stored(store, job), how);
        let loaded = store
            .load_delivery(&job.endpoint_id, &job.msg_id)
            .await
            .unwrap();
        assert_eq!(loaded.as_ref(), Some(job));
    }

    /// Opens the store in `dir` and checks how `job` is stored there and that it reads back.
    async fn reopened(
        dir: &std::path::Path,
        job: &DeliveryJob,
        how: Stored,
    ) -> std::sync::Arc<EmbeddedStore> {
        let store = EmbeddedStore::open(dir, true).unwrap();
        stored_as(&store, job, how).await;
        store
    }

    /// Records `job`'s attempts and checks that it is now stored as every job is and reads back.
    async fn rewritten(store: &EmbeddedStore, job: &DeliveryJob) {
        store
            .record_attempts(std::slice::from_ref(job))
            .await
            .unwrap();
        stored_as(store, job, CURRENT).await;
    }

    /// A JSON record as written before: with its envelope inside, or with it stored apart.
    fn json_record(holds_envelope: bool) -> Stored {
        Stored {
            binary: false,
            holds_envelope,
            apart: !holds_envelope,
        }
    }

    /// What every job written now looks like.
    const CURRENT: Stored = Stored {
        binary: true,
        holds_envelope: false,
        apart: true,
    };

    #[tokio::test]
    async fn a_store_from_before_reads_back_its_jobs_indexes_them_per_endpoint_and_moves_envelopes_apart()
     {
        let dir = tempfile::TempDir::new().unwrap();
        let now = Utc::now();
        let event = Event::new(
            EventKind::CaseCreated,
            "c_1",
            now,
            json!({"case_id": "c_1"}),
        );
        let mut job = DeliveryJob::new(&event, "wh_old");
        write_whole(dir.path(), &job);

        let store = reopened(dir.path(), &job, json_record(true)).await;
        assert_eq!(store.due_deliveries(now, 10).await.unwrap(), [job.clone()]);
        // The per-endpoint due index was built at open.
        let none = |_: &str, _: &str| false;
        let due = store
            .due_deliveries_of(
                DueQuery {
                    wanted: &[("wh_old", 5)],
                    now,
                    limit: 10,
                    max_skipped: 10,
                },
                &none,
            )
            .await
            .unwrap();
        assert_eq!(due.jobs, [job.clone()]);
        // ... and the global index it was built from is gone.
        let tables: Vec<String> = store
            .read(|txn| {
                Ok(txn
                    .list_tables()
                    .map_err(backend)?
                    .map(|t| t.name().to_string())
                    .collect())
            })
            .unwrap();
        assert!(tables.iter().any(|t| t == "delivery_due_by_endpoint"));
        assert!(!tables.iter().any(|t| t == "delivery_due"), "{tables:?}");

        let retry = now + chrono::Duration::seconds(5);
        job.record(
            Attempt {
                attempt: 0,
                status_code: Some(500),
                error: None,
                duration_ms: 3,
                response_snippet: None,
                at: now,
                next_attempt_at: None,
            },
            Some(retry),
        );
        rewritten(&store, &job).await;
        assert_eq!(
            store.deliveries_of_message(&job.msg_id).await.unwrap(),
            [job.clone()]
        );
        assert_eq!(
            store.due_deliveries(retry, 10).await.unwrap(),
            [job.clone()]
        );
        store.close().await;
    }

    /// A job with two attempts that use every field (times to the nanosecond).
    fn job_with_attempts(now: DateTime<Utc>) -> DeliveryJob {
        let event = Event::new(
            EventKind::CaseCreated,
            "c_3",
            now,
            json!({"case_id": "c_3", "note": "ünïcode"}),
        );
        let mut job = DeliveryJob::new(&event, "wh_json");
        let retry = now + chrono::Duration::nanoseconds(1_234_567_891);
        job.record(
            Attempt {
                attempt: 0,
                status_code: None,
                error: Some("connection refused".into()),
                duration_ms: 12,
                response_snippet: None,
                at: now,
                next_attempt_at: Some(retry),
            },
            Some(retry),
        );
        job.record(
            Attempt {
                attempt: 0,
                status_code: Some(503),
                error: None,
                duration_ms: 7,
                response_snippet: Some("busy — try later".into()),
                at: retry,
                next_attempt_at: Some(retry + chrono::Duration::seconds(5)),
            },
            Some(retry + chrono::Duration::seconds(5)),
        );
        job
    }

    /// Records written as JSON without their envelope (the format before binary records) read
    /// back as they were, and their next update writes them binary, losing nothing.
    #[tokio::test]
    async fn json_records_read_back_and_are_rewritten_binary_on_update() {
        let dir = tempfile::TempDir::new().unwrap();
        let now = Utc::now();
        let mut job = job_with_attempts(now);
        {
            let store = EmbeddedStore::open(dir.path(), true).unwrap();
            store
                .enqueue_deliveries(vec![job.clone()], "1")
                .await
                .unwrap();
            store.close().await;
        }
        // Rewrite the record as the JSON the store wrote before (the envelope stays apart).
        {
            let db = redb::Database::create(dir.path().join("casehub.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut record = serde_json::to_value(&job).unwrap();
                record.as_object_mut().unwrap().remove("payload");
                let bytes = serde_json::to_vec(&record).unwrap();
                let mut jobs = txn.open_table(DELIVERIES).unwrap();
                jobs.insert(
                    (job.endpoint_id.as_str(), job.msg_id.as_str()),
                    bytes.as_slice(),
                )
                .unwrap();
            }
            txn.commit().unwrap();
        }
        let store = reopened(dir.path(), &job, json_record(false)).await;
        let due = job.due_at;
        assert_eq!(store.due_deliveries(due, 10).await.unwrap(), [job.clone()]);

        job.record(
            Attempt {
                attempt: 0,
                status_code: Some(200),
                error: None,
                duration_ms: 3,
                response_snippet: Some("ok".into()),
                at: due,
                next_attempt_at: None,
            },
            None,
        );
        rewritten(&store, &job).await;
        assert_eq!(job.attempts.len(), 3);
        // Delivered: its due entry went with the update.
        assert!(store.due_deliveries(due, 10).await.unwrap().is_empty());
        store.close().await;
    }

    #[test]
    fn a_damaged_binary_record_is_reported_corrupt() {
        let job = job_with_attempts(Utc::now());
        let bytes = EncodedJob::new(&job).unwrap().bytes;
        assert_eq!(bytes[0], BINARY_RECORD);
        let schedule = Schedule::of(&bytes).unwrap();
        assert_eq!(
            (schedule.due, schedule.holds_envelope),
            (Some(created_key(job.due_at)), false)
        );
        let mut bad_state = bytes.clone();
        bad_state[1] = 9;
        assert!(matches!(
            Schedule::of(&bad_state),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            Schedule::of(&bytes[..2]),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[tokio::test]
    async fn jobs_of_one_message_share_one_stored_envelope_and_records_leave_it_out() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = EmbeddedStore::open(dir.path(), true).unwrap();
        let now = Utc::now();
        let event = Event::new(
            EventKind::CaseCreated,
            "c_2",
            now,
            json!({"case_id": "c_2"}),
        );
        let jobs = vec![
            DeliveryJob::new(&event, "wh_a"),
            DeliveryJob::new(&event, "wh_b"),
        ];
        store.enqueue_deliveries(jobs.clone(), "1").await.unwrap();
        for job in &jobs {
            assert_eq!(stored(&store, job), CURRENT);
        }
        assert_eq!(
            store.deliveries_of_message(&event.msg_id).await.unwrap(),
            jobs
        );
        store.close().await;
    }
}
