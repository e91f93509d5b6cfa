//! Room history and the pending-review index of the Redis store (keys in the parent's table).
//!
//! History is a capped stream per room whose entry ids are `0-{seq}`, so `XRANGE` by seq needs
//! no extra index and `MAXLEN` trims it; the append and the room's meta hash go in one script,
//! which first checks the room's lease when nodes share the store: a node that lost the room
//! (stalled past its lease) cannot write into its successor's history.

use std::sync::LazyLock;

use redis::streams::StreamRangeReply;

use super::RedisStore;
use crate::domain::ReviewId;
use crate::store::{Fence, RoomEntry, RoomMeta, StoreError};

/// KEYS: the lease (a placeholder without a fence), history stream, meta hash. ARGV: lease
/// token (`""`: no fence), keep, epoch, seq, open, then per entry its stream id and frame.
const APPEND_LUA: &str = r"
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED the room lease is held elsewhere or lapsed')
end
for i = 6, #ARGV, 2 do
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], ARGV[i], 'f', ARGV[i + 1])
end
redis.call('HSET', KEYS[3], 'epoch', ARGV[3], 'seq', ARGV[4], 'open', ARGV[5])
return 'OK'
";

static APPEND: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(APPEND_LUA));

impl RedisStore {
    pub(super) fn room_key(&self, room: &str, what: &str) -> String {
        self.key(&format!("room:{room}:{what}"))
    }

    pub(super) async fn meta_of_room(&self, room: &str) -> Result<Option<RoomMeta>, StoreError> {
        let key = self.room_key(room, "meta");
        let (epoch, seq, open): (Option<String>, Option<u64>, Option<u8>) = self
            .run(|mut c| async move {
                redis::cmd("HMGET")
                    .arg(key)
                    .arg("epoch")
                    .arg("seq")
                    .arg("open")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(epoch.map(|epoch| RoomMeta {
            epoch,
            seq: seq.unwrap_or(0),
            open: open == Some(1),
        }))
    }

    pub(super) async fn append_to_room(
        &self,
        room: &str,
        meta: &RoomMeta,
        entries: &[RoomEntry],
        keep: usize,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        let mut invocation = APPEND.prepare_invoke();
        let (fence_key, token) = match fence {
            Some(fence) => (fence.key.clone(), fence.token.as_str()),
            None => (self.key("nofence"), ""),
        };
        invocation
            .key(fence_key)
            .key(self.room_key(room, "history"))
            .key(self.room_key(room, "meta"))
            .arg(token)
            .arg(keep)
            .arg(&meta.epoch)
            .arg(meta.seq)
            .arg(u8::from(meta.open));
        for entry in entries {
            invocation.arg(format!("0-{}", entry.seq)).arg(&entry.frame);
        }
        self.run(|mut c| async move { invocation.invoke_async::<()>(&mut c).await })
            .await
    }

    pub(super) async fn room_range(
        &self,
        room: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RoomEntry>, StoreError> {
        let key = self.room_key(room, "history");
        let reply: StreamRangeReply = self
            .run(|mut c| async move {
                redis::cmd("XRANGE")
                    .arg(key)
                    .arg(format!("(0-{after}"))
                    .arg("+")
                    .arg("COUNT")
                    .arg(limit)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        reply
            .ids
            .into_iter()
            .map(|entry| {
                let seq = entry
                    .id
                    .strip_prefix("0-")
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| StoreError::Corrupt(format!("room entry id {}", entry.id)))?;
                let frame: String = entry.get("f").ok_or_else(|| {
                    StoreError::Corrupt(format!("room entry {} has no frame", entry.id))
                })?;
                Ok(RoomEntry { seq, frame })
            })
            .collect()
    }

    pub(super) async fn pending_of_room(&self, room: &str) -> Result<Vec<ReviewId>, StoreError> {
        let key = self.room_key(room, "pending");
        let ids: Vec<String> = self
            .run(|mut c| async move { redis::cmd("SMEMBERS").arg(key).query_async(&mut c).await })
            .await?;
        let mut out = ids
            .iter()
            .map(|id| {
                ReviewId::parse(id).ok_or_else(|| StoreError::Corrupt(format!("review id {id:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Ok(out)
    }
}
