//! The delivery queue and log of the Redis store (keys in the table of the parent module).
//!
//! Enqueuing is one Lua script: per job `SET NX` and, only when that created the job, its log,
//! message and due entries; then the cursor. A script rather than `WATCH` + `MULTI` because it is
//! atomic in one round trip with no optimistic retry loop (the dispatcher enqueues while workers
//! update the same jobs), and `SET NX` inside it is what keeps a re-enqueued job's progress.
//! Updates need no read of the old job (the due member is fixed per job), so they are a plain
//! `MULTI`/`EXEC`, one for a whole batch of jobs.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use redis::AsyncCommands;

use super::{RedisStore, decode, encode};
use crate::delivery::{DeliveryJob, DeliveryState};
use crate::store::{SkipDue, StoreError};

/// KEYS: due set, cursor, then per job: job key, endpoint log, message set.
/// ARGV: cursor, then per job: job JSON, due member, due score ("" unless pending), msg id,
/// endpoint id. Returns how many jobs were new.
const ENQUEUE_LUA: &str = r"
local added = 0
local n = (#KEYS - 2) / 3
for i = 0, n - 1 do
  local k = 3 + 3 * i
  local a = 2 + 5 * i
  if redis.call('SET', KEYS[k], ARGV[a], 'NX') then
    redis.call('ZADD', KEYS[k + 1], 0, ARGV[a + 3])
    redis.call('SADD', KEYS[k + 2], ARGV[a + 4])
    if ARGV[a + 2] ~= '' then
      redis.call('ZADD', KEYS[1], ARGV[a + 2], ARGV[a + 1])
    end
    added = added + 1
  end
end
redis.call('SET', KEYS[2], ARGV[1])
return added
";

/// Loaded once per process; `invoke` falls back to `EVAL` after a server restart.
static ENQUEUE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(ENQUEUE_LUA));

/// KEYS: due set. ARGV: now ms, until ms, then due members. A member still due (at or before
/// now) moves to `until` and counts as claimed (1); any other (claimed elsewhere since it was
/// read, or settled) is not (0).
const CLAIM_LUA: &str = r"
local out = {}
for i = 3, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) <= tonumber(ARGV[1]) then
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[i])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
";

static CLAIM: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(CLAIM_LUA));

/// The due-set member of a job.
fn due_member(endpoint_id: &str, msg_id: &str) -> String {
    format!("{endpoint_id}|{msg_id}")
}

/// `text` with the glob characters of a Redis `MATCH` pattern escaped, so it matches itself.
fn glob_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn due_score(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

impl RedisStore {
    fn job_key(&self, endpoint_id: &str, msg_id: &str) -> String {
        self.key(&format!("delivery:{endpoint_id}:{msg_id}"))
    }

    fn log_key(&self, endpoint_id: &str) -> String {
        self.key(&format!("delivery_log:{endpoint_id}"))
    }

    fn msg_key(&self, msg_id: &str) -> String {
        self.key(&format!("delivery_msg:{msg_id}"))
    }

    /// `MGET` of job keys, in order; missing jobs are `None`.
    async fn load_jobs(&self, keys: Vec<String>) -> Result<Vec<Option<DeliveryJob>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let raws: Vec<Option<Vec<u8>>> = self
            .run(|mut c| async move { redis::cmd("MGET").arg(keys).query_async(&mut c).await })
            .await?;
        raws.into_iter()
            .map(|raw| raw.map(|r| decode(&r)).transpose())
            .collect()
    }

    pub(super) async fn get_dispatch_cursor(&self) -> Result<Option<String>, StoreError> {
        let key = self.key("dispatch_cursor");
        self.run(|mut c| async move { c.get(key).await }).await
    }

    pub(super) async fn enqueue(
        &self,
        jobs: Vec<DeliveryJob>,
        cursor: &str,
    ) -> Result<(), StoreError> {
        let mut invocation = ENQUEUE.prepare_invoke();
        invocation
            .key(self.key("delivery_due"))
            .key(self.key("dispatch_cursor"))
            .arg(cursor);
        for job in &jobs {
            let score = match job.state {
                DeliveryState::Pending => due_score(job.due_at).to_string(),
                DeliveryState::Delivered | DeliveryState::Failed => String::new(),
            };
            invocation
                .key(self.job_key(&job.endpoint_id, &job.msg_id))
                .key(self.log_key(&job.endpoint_id))
                .key(self.msg_key(&job.msg_id))
                .arg(encode(job)?)
                .arg(due_member(&job.endpoint_id, &job.msg_id))
                .arg(score)
                .arg(&job.msg_id)
                .arg(&job.endpoint_id);
        }
        self.run(|mut c| async move { invocation.invoke_async::<i64>(&mut c).await })
            .await?;
        Ok(())
    }

    /// Due jobs except those `skip` names: the index is read a page at a time until `limit`
    /// jobs are taken or `max_skipped` passed over, then those are loaded in one `MGET`.
    pub(super) async fn due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        max_skipped: usize,
        skip: &SkipDue<'_>,
    ) -> Result<Vec<DeliveryJob>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now_ms = due_score(now);
        let page = limit.max(256);
        let mut keys = Vec::new();
        let (mut offset, mut skipped) = (0, 0);
        loop {
            let due = self.key("delivery_due");
            let members: Vec<String> = self
                .run(|mut c| async move {
                    redis::cmd("ZRANGEBYSCORE")
                        .arg(due)
                        .arg("-inf")
                        .arg(now_ms)
                        .arg("LIMIT")
                        .arg(offset)
                        .arg(page)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            for m in &members {
                if keys.len() == limit || skipped >= max_skipped {
                    break;
                }
                let (endpoint, msg) = m
                    .split_once('|')
                    .ok_or_else(|| StoreError::Corrupt(format!("due member {m:?}")))?;
                if skip(endpoint, msg) {
                    skipped += 1;
                } else {
                    keys.push(self.job_key(endpoint, msg));
                }
            }
            if keys.len() == limit || skipped >= max_skipped || members.len() < page {
                break;
            }
            offset += page;
        }
        // Index and jobs are read in two round trips: drop what an update finished in between.
        Ok(self
            .load_jobs(keys)
            .await?
            .into_iter()
            .flatten()
            .filter(|j| j.state == DeliveryState::Pending && due_score(j.due_at) <= now_ms)
            .collect())
    }

    pub(super) async fn claim(
        &self,
        jobs: &[(&str, &str)],
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = CLAIM.prepare_invoke();
        invocation
            .key(self.key("delivery_due"))
            .arg(due_score(now))
            .arg(due_score(until));
        for (endpoint, msg) in jobs {
            invocation.arg(due_member(endpoint, msg));
        }
        let claimed: Vec<i64> = self
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        Ok(claimed.into_iter().map(|c| c == 1).collect())
    }

    pub(super) async fn earliest_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let due = self.key("delivery_due");
        let first: Vec<(String, f64)> = self
            .run(|mut c| async move { c.zrange_withscores(due, 0, 0).await })
            .await?;
        let Some((_, score)) = first.first() else {
            return Ok(None);
        };
        DateTime::from_timestamp_millis(*score as i64)
            .map(Some)
            .ok_or_else(|| StoreError::Corrupt(format!("due score {score}")))
    }

    /// Writes `jobs` in one `MULTI`/`EXEC` (one round trip), in order.
    pub(super) async fn update(&self, jobs: &[DeliveryJob]) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let due = self.key("delivery_due");
        let mut pipe = redis::pipe();
        pipe.atomic();
        for job in jobs {
            let member = due_member(&job.endpoint_id, &job.msg_id);
            pipe.set(self.job_key(&job.endpoint_id, &job.msg_id), encode(job)?)
                .ignore();
            // Idempotent, and they make an update of a never-enqueued job complete.
            pipe.zadd(self.log_key(&job.endpoint_id), &job.msg_id, 0)
                .ignore();
            pipe.sadd(self.msg_key(&job.msg_id), &job.endpoint_id)
                .ignore();
            match job.state {
                DeliveryState::Pending => pipe.zadd(&due, member, due_score(job.due_at)).ignore(),
                DeliveryState::Delivered | DeliveryState::Failed => {
                    pipe.zrem(&due, member).ignore()
                }
            };
        }
        self.run(|mut c| async move { pipe.query_async::<()>(&mut c).await })
            .await
    }

    pub(super) async fn load_job(
        &self,
        endpoint_id: &str,
        msg_id: &str,
    ) -> Result<Option<DeliveryJob>, StoreError> {
        let key = self.job_key(endpoint_id, msg_id);
        let raw: Option<Vec<u8>> = self.run(|mut c| async move { c.get(key).await }).await?;
        raw.map(|r| decode(&r)).transpose()
    }

    pub(super) async fn of_message(&self, msg_id: &str) -> Result<Vec<DeliveryJob>, StoreError> {
        let set = self.msg_key(msg_id);
        let mut endpoints: Vec<String> = self
            .run(|mut c| async move { c.smembers(set).await })
            .await?;
        // Endpoint ids are ULIDs: sorted means oldest endpoint first, as the embedded store.
        endpoints.sort();
        let keys = endpoints.iter().map(|e| self.job_key(e, msg_id)).collect();
        Ok(self.load_jobs(keys).await?.into_iter().flatten().collect())
    }

    pub(super) async fn endpoint_log(
        &self,
        endpoint_id: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeliveryJob>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let upper = before.map_or_else(|| "+".to_string(), |b| format!("({b}"));
        let log = self.log_key(endpoint_id);
        let ids: Vec<String> = self
            .run(|mut c| async move {
                redis::cmd("ZREVRANGEBYLEX")
                    .arg(log)
                    .arg(upper)
                    .arg("-")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let keys = ids.iter().map(|m| self.job_key(endpoint_id, m)).collect();
        Ok(self.load_jobs(keys).await?.into_iter().flatten().collect())
    }

    /// The smallest msg id among `endpoint_id`'s members of the due set. `ZSCAN` with a pattern
    /// walks the set in pages on the server and sends back only this endpoint's members, so
    /// neither side holds the whole set and no single command blocks Redis for long.
    pub(super) async fn oldest_pending(
        &self,
        endpoint_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let due = self.key("delivery_due");
        let prefix = format!("{endpoint_id}|");
        let pattern = format!("{}*", glob_escaped(&prefix));
        let mut oldest: Option<String> = None;
        let mut cursor: u64 = 0;
        loop {
            let (next, page): (u64, Vec<(String, f64)>) = self
                .run(|mut c| {
                    let mut scan = redis::cmd("ZSCAN");
                    scan.arg(&due)
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000);
                    async move { scan.query_async(&mut c).await }
                })
                .await?;
            for (member, _) in &page {
                if let Some(msg) = member.strip_prefix(&prefix)
                    && oldest.as_deref().is_none_or(|o| msg < o)
                {
                    oldest = Some(msg.to_string());
                }
            }
            if next == 0 {
                return Ok(oldest);
            }
            cursor = next;
        }
    }

    pub(super) async fn backlog(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let due = self.key("delivery_due");
        let members: Vec<String> = self
            .run(|mut c| async move { c.zrange(due, 0, -1).await })
            .await?;
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        for member in &members {
            let (endpoint, _) = member
                .split_once('|')
                .ok_or_else(|| StoreError::Corrupt(format!("due member {member:?}")))?;
            *out.entry(endpoint.to_string()).or_default() += 1;
        }
        Ok(out)
    }
}
