//! The alert windows: recent cases per key and the cool-downs, kept where every node sees the
//! same counts. One node keeps them in memory; nodes sharing a Redis keep them there (a sorted
//! set per key, scored by case time, and a cool-down key holding its end), so five cases of one
//! kind raise one alert however they were spread over the nodes.
//!
//! Both count by the cases' own timestamps (the injected clock), never by wall time.

use std::collections::{HashMap, VecDeque};
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::cluster::Cluster;
use crate::store::StoreError;

/// One case seen for one key.
#[derive(Debug, Clone)]
pub struct Seen {
    pub key: String,
    pub case_id: String,
    pub at: DateTime<Utc>,
}

/// When a key alerts.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub threshold: usize,
    pub window: Duration,
    pub cooldown: Duration,
}

/// A key that reached the threshold outside a cool-down (one is started): the index of the
/// observation in the batch, and the cases in its window, oldest first.
pub type Raised = (usize, Vec<String>);

/// Where the windows live.
#[async_trait]
pub trait Windows: Send {
    /// Adds each observation to its key's window, in order, and answers the ones that raise
    /// an alert.
    async fn observe(&mut self, seen: &[Seen], rule: Rule) -> Result<Vec<Raised>, StoreError>;
}

/// The windows for this node's place in the cluster.
pub fn for_cluster(cluster: &Cluster) -> Box<dyn Windows> {
    if cluster.is_shared() {
        Box::new(Shared {
            cluster: cluster.clone(),
        })
    } else {
        Box::new(Local::default())
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// In memory: one node alone.
#[derive(Default)]
pub struct Local {
    windows: HashMap<String, VecDeque<(DateTime<Utc>, String)>>,
    quiet_until: HashMap<String, DateTime<Utc>>,
}

#[async_trait]
impl Windows for Local {
    async fn observe(&mut self, seen: &[Seen], rule: Rule) -> Result<Vec<Raised>, StoreError> {
        let window = chrono::Duration::milliseconds(millis(rule.window));
        let cooldown = chrono::Duration::milliseconds(millis(rule.cooldown));
        let mut raised = Vec::new();
        for (i, s) in seen.iter().enumerate() {
            let recent = self.windows.entry(s.key.clone()).or_default();
            recent.push_back((s.at, s.case_id.clone()));
            while recent.front().is_some_and(|(at, _)| s.at - *at >= window) {
                recent.pop_front();
            }
            let quiet = self
                .quiet_until
                .get(&s.key)
                .is_some_and(|until| s.at < *until);
            if recent.len() < rule.threshold || quiet {
                continue;
            }
            self.quiet_until.insert(s.key.clone(), s.at + cooldown);
            raised.push((i, recent.iter().map(|(_, id)| id.clone()).collect()));
        }
        // Keys whose window emptied would otherwise accumulate.
        self.windows.retain(|_, w| !w.is_empty());
        Ok(raised)
    }
}

/// KEYS: per observation its window set and its cool-down key. ARGV: threshold, window ms,
/// cool-down ms, then per observation case id and time (ms). Answers `{index, {case ids}}` per
/// alert raised. Same rules as [`Local`]: a case at `t` drops those at or before `t - window`;
/// a cool-down ends at `t + cooldown` of the alert that started it.
const OBSERVE_LUA: &str = r"
local threshold, window, cooldown = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local raised = {}
for i = 1, #KEYS / 2 do
  local set, quiet = KEYS[2 * i - 1], KEYS[2 * i]
  local id, at = ARGV[2 + 2 * i], tonumber(ARGV[3 + 2 * i])
  redis.call('ZADD', set, at, id)
  redis.call('ZREMRANGEBYSCORE', set, '-inf', at - window)
  redis.call('PEXPIRE', set, window)
  if redis.call('ZCARD', set) >= threshold then
    local until_ms = tonumber(redis.call('GET', quiet) or '-1')
    if at >= until_ms then
      redis.call('SET', quiet, at + cooldown, 'PX', cooldown + window)
      raised[#raised + 1] = {i - 1, redis.call('ZRANGE', set, 0, -1)}
    end
  end
end
return raised
";

static OBSERVE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(OBSERVE_LUA));

/// In the shared Redis: every node counts into the same windows.
pub struct Shared {
    cluster: Cluster,
}

#[async_trait]
impl Windows for Shared {
    async fn observe(&mut self, seen: &[Seen], rule: Rule) -> Result<Vec<Raised>, StoreError> {
        if seen.is_empty() {
            return Ok(Vec::new());
        }
        let mut keys = Vec::with_capacity(seen.len() * 2);
        let mut args = vec![
            rule.threshold.to_string(),
            millis(rule.window).to_string(),
            millis(rule.cooldown).to_string(),
        ];
        for s in seen {
            let shared = |what: &str| {
                self.cluster
                    .shared_key(&format!("alerts:{what}:{}", s.key))
                    .ok_or_else(|| StoreError::Unavailable("not shared".into()))
            };
            keys.push(shared("window")?);
            keys.push(shared("quiet")?);
            args.push(s.case_id.clone());
            args.push(s.at.timestamp_millis().to_string());
        }
        let raised: Vec<(usize, Vec<String>)> = self.cluster.eval(&OBSERVE, &keys, &args).await?;
        Ok(raised)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(key: &str, at: DateTime<Utc>) -> Seen {
        Seen {
            key: key.into(),
            case_id: uuid::Uuid::new_v4().to_string(),
            at,
        }
    }

    /// Threshold, window and cool-down, one observation at a time.
    async fn follows_the_rule(windows: &mut dyn Windows) {
        let rule = Rule {
            threshold: 3,
            window: Duration::from_secs(600),
            cooldown: Duration::from_secs(600),
        };
        let t0 = Utc::now();
        let min = chrono::Duration::minutes(1);
        async fn count(
            windows: &mut dyn Windows,
            rule: Rule,
            at: DateTime<Utc>,
            key: &str,
        ) -> Vec<Raised> {
            windows.observe(&[seen(key, at)], rule).await.unwrap()
        }
        assert!(count(windows, rule, t0, "a").await.is_empty());
        assert!(count(windows, rule, t0 + min, "a").await.is_empty());
        let raised = count(windows, rule, t0 + min * 2, "a").await;
        assert_eq!(raised.len(), 1);
        assert_eq!(raised[0].1.len(), 3);
        // Cooling down; another key counts on its own.
        assert!(count(windows, rule, t0 + min * 3, "a").await.is_empty());
        assert!(count(windows, rule, t0 + min * 3, "b").await.is_empty());
        // Once the cool-down is over, three more within a window raise again.
        assert!(count(windows, rule, t0 + min * 20, "a").await.is_empty());
        assert!(count(windows, rule, t0 + min * 21, "a").await.is_empty());
        let raised = count(windows, rule, t0 + min * 22, "a").await;
        assert_eq!(raised.len(), 1, "after the cool-down");
        assert_eq!(raised[0].1.len(), 3);
        // Cases spread wider than the window never add up.
        for i in 0..5 {
            assert!(
                count(windows, rule, t0 + min * (i * 11), "c")
                    .await
                    .is_empty()
            );
        }
    }

    #[tokio::test]
    async fn local_windows_follow_the_rule() {
        follows_the_rule(&mut Local::default()).await;
    }

    #[tokio::test]
    async fn shared_windows_follow_the_same_rule_across_nodes() {
        let server = crate::testing::RedisServer::start();
        let settings = crate::cluster::ClusterSettings {
            node_id: String::new(),
            lease_ttl: Duration::from_secs(5),
        };
        let cluster =
            Cluster::shared(&server.url(), "w:", Duration::from_secs(2), &settings).unwrap();
        follows_the_rule(&mut Shared {
            cluster: cluster.clone(),
        })
        .await;
        // Two nodes' cases count together: two here and one there make three.
        let other =
            Cluster::shared(&server.url(), "w:", Duration::from_secs(2), &settings).unwrap();
        let rule = Rule {
            threshold: 3,
            window: Duration::from_secs(600),
            cooldown: Duration::from_secs(600),
        };
        let t0 = Utc::now();
        let mut here = Shared { cluster };
        let mut there = Shared { cluster: other };
        let two = [seen("d", t0), seen("d", t0)];
        assert!(here.observe(&two, rule).await.unwrap().is_empty());
        let raised = there.observe(&[seen("d", t0)], rule).await.unwrap();
        assert_eq!(raised.len(), 1);
        assert_eq!(raised[0].1.len(), 3);
    }
}
