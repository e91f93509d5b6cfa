//! Room history and the pending-review index of the embedded store.
//!
//! | table | key → value | holds |
//! |---|---|---|
//! | `room_meta` | room → JSON `{epoch, seq}` | where each room's history stands |
//! | `room_history` | (room, seq) → frame | the newest `keep` events per room |
//! | `room_pending` | (room, review id) → () | reviews left pending by their last commit |
//!
//! Appends run on the store's writer thread, so they share the group commit's fsync.

use redb::{ReadTransaction, Table, TableDefinition, WriteTransaction};

use super::{backend, corrupt};
use crate::domain::ReviewId;
use crate::store::{RoomEntry, RoomMeta, StoreError};

const ROOM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("room_meta");
const ROOM_HISTORY: TableDefinition<(&str, u64), &str> = TableDefinition::new("room_history");
const ROOM_PENDING: TableDefinition<(&str, &str), ()> = TableDefinition::new("room_pending");

/// Sorts after every id (ids are ASCII), so `(room, MAX_ID)` bounds all keys of `room`.
const MAX_ID: &str = "\u{10FFFF}";

/// Creates the tables, so readers never see "table does not exist".
pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(ROOM_META).map_err(backend)?;
    txn.open_table(ROOM_HISTORY).map_err(backend)?;
    txn.open_table(ROOM_PENDING).map_err(backend)?;
    Ok(())
}

/// An append waiting for the writer thread.
pub(super) struct Append {
    pub room: String,
    pub meta: RoomMeta,
    pub entries: Vec<RoomEntry>,
    pub keep: usize,
}

/// Keeps the pending index in step with a committed review (inside the commit's transaction).
pub(super) fn index_review(
    txn: &WriteTransaction,
    room: &str,
    review_id: &str,
    is_pending: bool,
) -> Result<(), StoreError> {
    let mut pending = txn.open_table(ROOM_PENDING).map_err(backend)?;
    let key = (room, review_id);
    if is_pending {
        pending.insert(key, ()).map_err(backend)?;
    } else {
        pending.remove(key).map_err(backend)?;
    }
    Ok(())
}

/// Applies one append inside the writer's transaction.
pub(super) fn append(txn: &WriteTransaction, append: &Append) -> Result<(), StoreError> {
    let mut history: Table<(&str, u64), &str> = txn.open_table(ROOM_HISTORY).map_err(backend)?;
    let room = append.room.as_str();
    for entry in &append.entries {
        history
            .insert((room, entry.seq), entry.frame.as_str())
            .map_err(backend)?;
    }
    // Trim to the newest `keep`: everything at or below `seq - keep` goes.
    if let Some(cut) = append.meta.seq.checked_sub(append.keep as u64) {
        history
            .retain_in((room, 0)..=(room, cut), |_, _| false)
            .map_err(backend)?;
    }
    let mut meta = txn.open_table(ROOM_META).map_err(backend)?;
    let bytes = serde_json::to_vec(&append.meta).map_err(backend)?;
    meta.insert(room, bytes.as_slice()).map_err(backend)?;
    Ok(())
}

pub(super) fn meta(txn: &ReadTransaction, room: &str) -> Result<Option<RoomMeta>, StoreError> {
    let table = txn.open_table(ROOM_META).map_err(backend)?;
    match table.get(room).map_err(backend)? {
        Some(v) => serde_json::from_slice(v.value()).map(Some).map_err(corrupt),
        None => Ok(None),
    }
}

pub(super) fn history(
    txn: &ReadTransaction,
    room: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<RoomEntry>, StoreError> {
    let table = txn.open_table(ROOM_HISTORY).map_err(backend)?;
    let Some(from) = after.checked_add(1) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in table
        .range((room, from)..=(room, u64::MAX))
        .map_err(backend)?
        .take(limit)
    {
        let (k, v) = entry.map_err(backend)?;
        out.push(RoomEntry {
            seq: k.value().1,
            frame: v.value().to_string(),
        });
    }
    Ok(out)
}

pub(super) fn pending(txn: &ReadTransaction, room: &str) -> Result<Vec<ReviewId>, StoreError> {
    let table = txn.open_table(ROOM_PENDING).map_err(backend)?;
    let mut out = Vec::new();
    for entry in table.range((room, "")..(room, MAX_ID)).map_err(backend)? {
        let (k, _) = entry.map_err(backend)?;
        let id = k.value().1;
        out.push(ReviewId::parse(id).ok_or_else(|| corrupt(format!("review id {id:?}")))?);
    }
    Ok(out)
}
