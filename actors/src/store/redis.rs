//! The Redis store (also Valkey): every key under a configurable prefix.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{p}case:{id}` | string | case snapshot (JSON) |
//! | `{p}cases` | sorted set, lex | `{created micros, 20 digits}.{id}`: the listing index |
//! | `{p}review:{id}` | string | review (JSON) |
//! | `{p}idem:{key}` | string | `{case id}\|{created millis}` |
//! | `{p}idem_index` | sorted set | idempotency keys by creation millis, for purging |
//! | `{p}outbox_log` | sorted set | message ids by outbox position (commit order) |
//! | `{p}outbox_seq` | string | the last outbox position given out |
//! | `{p}events` | hash | message id → event (JSON) |
//! | `{p}endpoints` | hash | webhook endpoint id → endpoint (JSON) |
//! | `{p}delivery:{endpoint}:{msg}` | string | delivery job (JSON) |
//! | `{p}delivery_due` | sorted set | `{endpoint}\|{msg}` by due millis: pending jobs only |
//! | `{p}delivery_log:{endpoint}` | sorted set, lex | the endpoint's msg ids (its delivery log) |
//! | `{p}delivery_msg:{msg}` | set | endpoint ids a message was queued for |
//! | `{p}dispatch_cursor` | string | msg id of the last outbox event fanned out |
//! | `{p}room:{room}:meta` | hash | `epoch`, `seq`: where the room's history stands |
//! | `{p}room:{room}:history` | stream | the room's newest events, entry id `0-{seq}` |
//! | `{p}room:{room}:pending` | set | review ids left pending by their last commit |
//!
//! A commit is one Lua script ([`commit`] says why), so a snapshot and the events it caused land
//! together or not at all, and only while the writer's lease holds; enqueuing delivery jobs is
//! another ([`deliveries`] says why). Every operation has a
//! deadline: while Redis is unreachable callers get [`StoreError::Unavailable`] promptly (the
//! edge answers 503), and the connection manager reconnects by itself when Redis is back.

mod commit;
mod deliveries;
mod rooms;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, RedisError};

use super::{
    CasePage, CaseQuery, Commit, Fence, OutboxEntry, RoomEntry, RoomMeta, SkipDue, SnapshotStore,
    StoreError, decode_cursor,
};
use crate::delivery::{DeliveryJob, Endpoint};
use crate::domain::{Case, CaseId, Event, Review, ReviewId};

/// Listing scans the index in batches of this many entries.
const LIST_BATCH: isize = 200;

/// The Redis-backed store. Cheap to share in an `Arc`.
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn map_err(e: RedisError) -> StoreError {
    if e.code() == Some("FENCED") {
        StoreError::Fenced(e.to_string())
    } else if e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
    {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Backend(e.to_string())
    }
}

fn decode<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(raw).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Backend(e.to_string()))
}

/// The listing-index member of a case: zero-padded creation micros, so lex order is time order.
fn index_member(created_us: u64, id: CaseId) -> String {
    format!("{created_us:020}.{}", id.0.simple())
}

fn created_us(t: DateTime<Utc>) -> u64 {
    t.timestamp_micros().max(0) as u64
}

impl RedisStore {
    /// Connects lazily to `url` (`redis://host:port/db`); the first operation (or a ping) dials.
    /// `timeout` bounds every operation, including reconnect attempts.
    pub fn connect(url: &str, prefix: &str, timeout: Duration) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::Unavailable(format!("store.url: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(map_err)?;
        Ok(RedisStore {
            conn,
            prefix: prefix.to_string(),
            timeout,
        })
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// Runs `op` on a connection with the store's deadline.
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        match tokio::time::timeout(self.timeout, op(self.conn.clone())).await {
            Ok(result) => result.map_err(map_err),
            Err(_) => Err(StoreError::Unavailable(format!(
                "redis did not answer within {:?}",
                self.timeout
            ))),
        }
    }
}

#[async_trait]
impl SnapshotStore for RedisStore {
    async fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        self.commit_case(commit).await
    }

    async fn append_events(&self, events: Vec<Event>) -> Result<(), StoreError> {
        self.commit_events(&events).await
    }

    async fn load_case(&self, id: CaseId) -> Result<Option<Case>, StoreError> {
        let key = self.key(&format!("case:{id}"));
        let raw: Option<Vec<u8>> = self.run(|mut c| async move { c.get(key).await }).await?;
        raw.map(|r| decode(&r)).transpose()
    }

    async fn load_review(&self, id: &ReviewId) -> Result<Option<Review>, StoreError> {
        let key = self.key(&format!("review:{id}"));
        let raw: Option<Vec<u8>> = self.run(|mut c| async move { c.get(key).await }).await?;
        raw.map(|r| decode(&r)).transpose()
    }

    async fn idempotent_case(
        &self,
        key: &str,
        not_before: DateTime<Utc>,
    ) -> Result<Option<CaseId>, StoreError> {
        let key = self.key(&format!("idem:{key}"));
        let raw: Option<String> = self.run(|mut c| async move { c.get(key).await }).await?;
        let Some(raw) = raw else {
            return Ok(None);
        };
        let (id, at) = raw
            .split_once('|')
            .ok_or_else(|| StoreError::Corrupt(format!("idempotency record {raw:?}")))?;
        let at: i64 = at
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("idempotency record {raw:?}")))?;
        let id = CaseId::parse(id)
            .ok_or_else(|| StoreError::Corrupt(format!("idempotency record {raw:?}")))?;
        Ok((at >= not_before.timestamp_millis()).then_some(id))
    }

    async fn purge_idempotency(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        let index = self.key("idem_index");
        let cutoff = before.timestamp_millis();
        let expired: Vec<String> = self
            .run(|mut c| {
                let index = index.clone();
                async move { c.zrangebyscore(index, "-inf", format!("({cutoff}")).await }
            })
            .await?;
        if expired.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for key in &expired {
            pipe.del(self.key(&format!("idem:{key}"))).ignore();
        }
        pipe.zrem(index, &expired).ignore();
        self.run(|mut c| async move { pipe.query_async::<()>(&mut c).await })
            .await?;
        Ok(expired.len())
    }

    async fn list_cases(&self, query: CaseQuery) -> Result<CasePage, StoreError> {
        let limit = query.limit.max(1);
        let mut upper = match query.cursor.as_deref().and_then(decode_cursor) {
            Some((us, id)) => format!("({}", index_member(us, id)),
            None => "+".to_string(),
        };
        let index = self.key("cases");
        let mut page = CasePage::default();
        loop {
            let members: Vec<String> = self
                .run(|mut c| {
                    let (index, upper) = (index.clone(), upper.clone());
                    async move {
                        redis::cmd("ZREVRANGEBYLEX")
                            .arg(index)
                            .arg(upper)
                            .arg("-")
                            .arg("LIMIT")
                            .arg(0)
                            .arg(LIST_BATCH)
                            .query_async(&mut c)
                            .await
                    }
                })
                .await?;
            let Some(last) = members.last() else {
                return Ok(page);
            };
            upper = format!("({last}");
            let keys: Vec<String> = members
                .iter()
                .filter_map(|m| m.split_once('.'))
                .filter_map(|(_, id)| uuid::Uuid::try_parse(id).ok())
                .map(|id| self.key(&format!("case:{id}")))
                .collect();
            let raws: Vec<Option<Vec<u8>>> = self
                .run(|mut c| async move { redis::cmd("MGET").arg(keys).query_async(&mut c).await })
                .await?;
            for raw in raws.into_iter().flatten() {
                let case: Case = decode(&raw)?;
                if query.status.is_some_and(|s| s != case.status) {
                    continue;
                }
                if page.cases.len() == limit {
                    let last = page
                        .cases
                        .last()
                        .map(|c| (created_us(c.created_at), c.case_id));
                    page.next_cursor = last.map(|(us, id)| super::encode_cursor(us, id));
                    return Ok(page);
                }
                page.cases.push(case);
            }
            if members.len() < LIST_BATCH as usize {
                return Ok(page);
            }
        }
    }

    async fn outbox(&self, after: u64, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let index = self.key("outbox_log");
        // Scores are positions; read as floats (RESP3 sends doubles), exact below 2^53.
        let positioned: Vec<(String, f64)> = self
            .run(|mut c| async move {
                redis::cmd("ZRANGEBYSCORE")
                    .arg(index)
                    .arg(format!("({after}"))
                    .arg("+inf")
                    .arg("WITHSCORES")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        if positioned.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&String> = positioned.iter().map(|(id, _)| id).collect();
        let events = self.key("events");
        let raws: Vec<Option<Vec<u8>>> = self
            .run(|mut c| async move {
                redis::cmd("HMGET")
                    .arg(events)
                    .arg(ids)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        positioned
            .iter()
            .zip(raws)
            .filter_map(|((_, position), raw)| raw.map(|raw| (*position as u64, raw)))
            .map(|(position, raw)| {
                Ok(OutboxEntry {
                    position,
                    event: decode(&raw)?,
                })
            })
            .collect()
    }

    async fn outbox_end(&self) -> Result<u64, StoreError> {
        let index = self.key("outbox_log");
        let newest: Vec<(String, f64)> = self
            .run(|mut c| async move {
                redis::cmd("ZRANGE")
                    .arg(index)
                    .arg(-1)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(newest.first().map_or(0, |(_, position)| *position as u64))
    }

    async fn put_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        let key = self.key("endpoints");
        let bytes = encode(endpoint)?;
        let id = endpoint.id.clone();
        self.run(|mut c| async move { c.hset::<_, _, _, ()>(key, id, bytes).await })
            .await
    }

    async fn load_endpoint(&self, id: &str) -> Result<Option<Endpoint>, StoreError> {
        let key = self.key("endpoints");
        let id = id.to_string();
        let raw: Option<Vec<u8>> = self
            .run(|mut c| async move { c.hget(key, id).await })
            .await?;
        raw.map(|r| decode(&r)).transpose()
    }

    async fn list_endpoints(&self) -> Result<Vec<Endpoint>, StoreError> {
        let key = self.key("endpoints");
        let all: std::collections::BTreeMap<String, Vec<u8>> = self
            .run(|mut c| async move { c.hgetall(key).await })
            .await?;
        // Ids are ULIDs, so key order is creation order.
        all.values().map(|raw| decode(raw)).collect()
    }

    async fn delete_endpoint(&self, id: &str) -> Result<bool, StoreError> {
        let key = self.key("endpoints");
        let id = id.to_string();
        let removed: usize = self
            .run(|mut c| async move { c.hdel(key, id).await })
            .await?;
        Ok(removed > 0)
    }

    async fn dispatch_cursor(&self) -> Result<Option<String>, StoreError> {
        self.get_dispatch_cursor().await
    }

    async fn enqueue_deliveries(
        &self,
        jobs: Vec<DeliveryJob>,
        cursor: &str,
    ) -> Result<(), StoreError> {
        self.enqueue(jobs, cursor).await
    }

    async fn due_deliveries_skipping(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        max_skipped: usize,
        skip: &SkipDue<'_>,
    ) -> Result<Vec<DeliveryJob>, StoreError> {
        self.due(now, limit, max_skipped, skip).await
    }

    async fn claim_deliveries(
        &self,
        jobs: &[(&str, &str)],
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        self.claim(jobs, now, until).await
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.earliest_due().await
    }

    async fn update_delivery(&self, job: &DeliveryJob) -> Result<(), StoreError> {
        self.update(std::slice::from_ref(job)).await
    }

    async fn update_deliveries(&self, jobs: &[DeliveryJob]) -> Result<(), StoreError> {
        self.update(jobs).await
    }

    async fn load_delivery(
        &self,
        endpoint_id: &str,
        msg_id: &str,
    ) -> Result<Option<DeliveryJob>, StoreError> {
        self.load_job(endpoint_id, msg_id).await
    }

    async fn deliveries_of_message(&self, msg_id: &str) -> Result<Vec<DeliveryJob>, StoreError> {
        self.of_message(msg_id).await
    }

    async fn endpoint_deliveries(
        &self,
        endpoint_id: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeliveryJob>, StoreError> {
        self.endpoint_log(endpoint_id, before, limit).await
    }

    async fn delivery_backlog(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        self.backlog().await
    }

    async fn oldest_pending_of(&self, endpoint_id: &str) -> Result<Option<String>, StoreError> {
        self.oldest_pending(endpoint_id).await
    }

    async fn ping(&self) -> Result<Duration, StoreError> {
        let started = Instant::now();
        self.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await?;
        Ok(started.elapsed())
    }

    async fn close(&self) {}

    async fn room_meta(&self, room: &str) -> Result<Option<RoomMeta>, StoreError> {
        self.meta_of_room(room).await
    }

    async fn room_append(
        &self,
        room: &str,
        meta: &RoomMeta,
        entries: &[RoomEntry],
        keep: usize,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        self.append_to_room(room, meta, entries, keep, fence).await
    }

    async fn room_history(
        &self,
        room: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RoomEntry>, StoreError> {
        self.room_range(room, after, limit).await
    }

    async fn pending_reviews(&self, room: &str) -> Result<Vec<ReviewId>, StoreError> {
        self.pending_of_room(room).await
    }
}
