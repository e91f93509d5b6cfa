//! Rate limits shared by the nodes (CONTRACT §8 limits a caller, not a caller per node): the
//! GCRA that one node runs in memory, run in Redis, so every node draws on one allowance.

use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Cluster;
use crate::store::StoreError;

/// GCRA. KEYS: the caller's key. ARGV: now (ms), emission interval (ms per request), burst.
/// Answers `{allowed 0|1, remaining, wait ms}`. The key holds the theoretical arrival time and
/// expires once the allowance is whole again.
const GCRA_LUA: &str = r"
local now, emission, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local tolerance = emission * burst
local next_tat = tat + emission
if next_tat - tolerance > now then
  return {0, 0, math.ceil(next_tat - tolerance - now)}
end
redis.call('SET', KEYS[1], next_tat, 'PX', math.ceil(next_tat - now) + 1000)
return {1, math.floor((tolerance - (next_tat - now)) / emission), 0}
";

static GCRA: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(GCRA_LUA));

/// What the shared allowance said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    /// Taken; this many more fit in the burst now.
    Allowed { remaining: u32 },
    /// Over the limit: the next request fits after this long.
    Limited { wait: Duration },
}

impl Cluster {
    /// Takes one request from the allowance `name` (a burst of `burst`, one more every
    /// `per_request`), shared by every node; `Ok(None)` when single (the node's own limiter
    /// decides), `Err` when Redis did not answer.
    pub async fn take_allowance(
        &self,
        name: &str,
        per_request: Duration,
        burst: u32,
    ) -> Result<Option<Allowance>, StoreError> {
        let Some(key) = self.shared_key(&format!("ratelimit:{name}")) else {
            return Ok(None);
        };
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let args = [
            now_ms.to_string(),
            per_request.as_millis().max(1).to_string(),
            burst.max(1).to_string(),
        ];
        let (allowed, remaining, wait_ms): (u8, u32, u64) = self.eval(&GCRA, &[key], &args).await?;
        Ok(Some(if allowed == 1 {
            Allowance::Allowed { remaining }
        } else {
            Allowance::Limited {
                wait: Duration::from_millis(wait_ms),
            }
        }))
    }
}
