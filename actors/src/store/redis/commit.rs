//! Commits of the Redis store: one Lua script per commit, so the fence check, the outbox
//! positions and the writes are one atomic step.
//!
//! A script rather than `MULTI`/`EXEC` for two reasons: a transaction cannot refuse its writes
//! on a condition (the fence: the case's lease must still be this writer's), and it cannot use
//! a counter it increments (each event's outbox position, `INCR` in commit order, which is what
//! lets a reader resume after the last position it read without missing a later commit).

use std::sync::LazyLock;

use super::{RedisStore, encode, index_member};
use crate::domain::{Event, ReviewStatus};
use crate::store::{Commit, Fence, StoreError};

/// KEYS: fence key (a placeholder without a fence), outbox counter, outbox log, events hash,
/// then one key per write.
/// ARGV: fence mode (`""`, `hold` or `take`), fence token, take ttl ms, event count, then per
/// event its msg id and JSON, then per write its command, argument count and arguments.
/// Refuses with a `FENCED` error (and writes nothing) when the fence does not hold.
const COMMIT_LUA: &str = r"
local mode, token = ARGV[1], ARGV[2]
if mode == 'hold' then
  if redis.call('GET', KEYS[1]) ~= token then
    return redis.error_reply('FENCED the lease is held elsewhere or lapsed')
  end
elseif mode == 'take' then
  if not redis.call('SET', KEYS[1], token, 'NX', 'PX', ARGV[3]) then
    return redis.error_reply('FENCED the lease is held elsewhere')
  end
end
local a = 5
for i = 1, tonumber(ARGV[4]) do
  local position = redis.call('INCR', KEYS[2])
  redis.call('ZADD', KEYS[3], position, ARGV[a])
  redis.call('HSET', KEYS[4], ARGV[a], ARGV[a + 1])
  a = a + 2
end
local k = 5
while a <= #ARGV do
  local n = tonumber(ARGV[a + 1])
  redis.call(ARGV[a], KEYS[k], unpack(ARGV, a + 2, a + 1 + n))
  a = a + 2 + n
  k = k + 1
end
return 'OK'
";

/// Moves a store from before outbox positions: the old outbox (a lex-ordered set of msg ids)
/// gets positions in msg id order, its recording order then. KEYS: old set, counter, new log.
const MIGRATE_LUA: &str = r"
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[3], redis.call('INCR', KEYS[2]), id)
end
redis.call('DEL', KEYS[1])
return #ids
";

static COMMIT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(COMMIT_LUA));
static MIGRATE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(MIGRATE_LUA));

/// One script invocation being built.
struct Writes {
    invocation: redis::ScriptInvocation<'static>,
}

impl Writes {
    fn new(
        store: &RedisStore,
        fence: Option<&Fence>,
        events: &[Event],
    ) -> Result<Self, StoreError> {
        let mut invocation = COMMIT.prepare_invoke();
        let (mode, key, token, ttl) = match fence {
            None => ("", store.key("nofence"), String::new(), 0),
            Some(Fence {
                key,
                token,
                take: None,
            }) => ("hold", key.clone(), token.clone(), 0),
            Some(Fence {
                key,
                token,
                take: Some(ttl),
            }) => ("take", key.clone(), token.clone(), ttl.as_millis().max(1)),
        };
        invocation
            .key(key)
            .key(store.key("outbox_seq"))
            .key(store.key("outbox_log"))
            .key(store.key("events"))
            .arg(mode)
            .arg(token)
            .arg(ttl as u64)
            .arg(events.len());
        for event in events {
            invocation.arg(&event.msg_id).arg(encode(event)?);
        }
        Ok(Writes { invocation })
    }

    fn write(&mut self, command: &str, key: String, args: &[&[u8]]) {
        self.invocation.key(key).arg(command).arg(args.len());
        for arg in args {
            self.invocation.arg(*arg);
        }
    }
}

impl RedisStore {
    /// Writes a snapshot, its review, idempotency record and events in one script.
    pub(super) async fn commit_case(&self, commit: &Commit) -> Result<(), StoreError> {
        let case = &commit.case;
        let id = case.case_id;
        let mut writes = Writes::new(self, commit.fence.as_ref(), &commit.events)?;
        writes.write("SET", self.key(&format!("case:{id}")), &[&encode(case)?]);
        let member = index_member(super::created_us(case.created_at), id);
        writes.write("ZADD", self.key("cases"), &[b"0", member.as_bytes()]);
        if let Some(review) = &case.review {
            writes.write(
                "SET",
                self.key(&format!("review:{}", review.review_id)),
                &[&encode(review)?],
            );
            let op = if review.status == ReviewStatus::Pending {
                "SADD"
            } else {
                "SREM"
            };
            writes.write(
                op,
                self.room_key(&review.room, "pending"),
                &[review.review_id.as_str().as_bytes()],
            );
        }
        if let Some(rec) = &commit.idempotency {
            let at = rec.created_at.timestamp_millis();
            let value = format!("{}|{at}", rec.case_id);
            writes.write(
                "SET",
                self.key(&format!("idem:{}", rec.key)),
                &[value.as_bytes()],
            );
            writes.write(
                "ZADD",
                self.key("idem_index"),
                &[at.to_string().as_bytes(), rec.key.as_bytes()],
            );
        }
        self.invoke(writes).await
    }

    /// Appends events that belong to no case.
    pub(super) async fn commit_events(&self, events: &[Event]) -> Result<(), StoreError> {
        self.invoke(Writes::new(self, None, events)?).await
    }

    async fn invoke(&self, writes: Writes) -> Result<(), StoreError> {
        let invocation = writes.invocation;
        self.run(|mut c| async move { invocation.invoke_async::<()>(&mut c).await })
            .await
    }

    /// Gives the events of a store from before outbox positions their positions (once; a
    /// no-op afterwards).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut invocation = MIGRATE.prepare_invoke();
        invocation
            .key(self.key("outbox"))
            .key(self.key("outbox_seq"))
            .key(self.key("outbox_log"));
        let moved: i64 = self
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        if moved > 0 {
            tracing::info!(events = moved, "moved the outbox to commit-order positions");
        }
        Ok(())
    }
}
