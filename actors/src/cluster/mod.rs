//! Several casehub nodes on one Redis (CONTRACT §9): who hosts what, and how nodes talk.
//!
//! A [`Cluster`] is this node's handle. On the embedded store it is single: one process owns
//! the data file, every lease is granted at once and nothing is fenced. On Redis it is shared:
//!
//! - **Leases** name what one node at a time may own: `case:{id}` (the node hosting the case
//!   actor), `room:{name}` (the node running the room's numbering, claims and history),
//!   `fifo:{endpoint}` (the node sending to a FIFO endpoint), `idempotency:{key}` (the node
//!   creating a case for that key). A lease is a Redis key holding this node's token (node id,
//!   a per-run id and a counter, so no two runs ever share one), taken by a script, renewed in
//!   the background every third of `cluster.lease_ttl` while held, and given back with a
//!   compare-and-delete. A renewal that finds the key gone or someone else's announces the lease
//!   as [`lost`](Cluster::lost), and so does a lease whose last renewal is a ttl old (Redis
//!   away): this node then no longer [holds](Cluster::holds) it, even before Redis says so. The
//!   writes of a lease's holder (case commits, room history) carry a [`Fence`], so a node that
//!   lost its lease cannot overwrite a newer owner's data even before it hears of the loss.
//! - **Channels** carry what one node tells another (a release request, a room's frames), over
//!   one pub/sub connection per node ([`link`]).

pub mod link;
mod rate;

pub use rate::Allowance;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Deserialize;
use tokio::sync::broadcast;

use crate::store::{Fence, StoreError};
use link::{Link, Subscription};

/// `[cluster]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// This node's name in leases and channels; empty: a fresh ULID at every start. A node
    /// restarted under the same name takes its own leases back at once instead of waiting for
    /// them to lapse; two running nodes must never share one.
    pub node_id: String,
    /// How long a lease outlives its holder: a node that dies without giving its leases back
    /// holds up its cases and rooms this long.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
}

/// What an attempt to take a lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// This node holds it now (or already did).
    Taken,
    /// Another node holds it.
    HeldBy(String),
}

/// Takes a lease unless another node holds it; returns `""` or the holder's token. ARGV:
/// token, ttl ms, this node's id, this run's token prefix, `1` when this run let the lease
/// lapse. A lease of this node's id from an earlier run is left from before a restart: it is
/// taken over at once. One of this run is taken over only when it was let lapse: otherwise it
/// is a give-back still on its way, and the node that asked for it goes first.
const ACQUIRE_LUA: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder then
  if string.sub(holder, 1, #ARGV[3] + 1) ~= ARGV[3] .. ':' then return holder end
  if string.sub(holder, 1, #ARGV[4]) == ARGV[4] and ARGV[5] ~= '1' then return holder end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ''
";
/// Extends each lease still holding its token; returns 1 or 0 per key.
const RENEW_LUA: &str = r"
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i + 1] then
    redis.call('PEXPIRE', key, ARGV[1])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
";
/// Deletes a lease only if it still holds the token.
const RELEASE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";
/// Leases renewed per script call.
const RENEW_CHUNK: usize = 500;

static ACQUIRE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(ACQUIRE_LUA));
static RENEW: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(RENEW_LUA));
static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(RELEASE_LUA));

/// This node's handle on the cluster. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.inner.node)
            .field("shared", &self.inner.shared.is_some())
            .finish()
    }
}

struct Inner {
    node: String,
    shared: Option<Shared>,
}

struct Shared {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    ttl: Duration,
    link: Link,
    /// Lease name → this node's token and until when it is surely still ours, for every
    /// lease held.
    held: parking_lot::Mutex<HashMap<String, Held>>,
    /// Leases this node let lapse (no longer renewed, not given back), with their token and
    /// since when: given back only if another node asks.
    dormant: parking_lot::Mutex<HashMap<String, (String, std::time::Instant)>>,
    /// `{node}:{run}:`, the start of every token of this run (a ULID per start names the run):
    /// a node restarted under the same id never reuses a token an older process of it may
    /// still hold (and fence with).
    token_prefix: String,
    tokens: AtomicU64,
    lost: broadcast::Sender<String>,
}

/// A lease this node holds.
struct Held {
    token: String,
    /// Its key's expiry as this node last set it, measured from before the request went out
    /// (so never later than Redis's own); past it the lease may be another node's.
    until: std::time::Instant,
}

impl Held {
    fn new(token: String, ttl: Duration, since: std::time::Instant) -> Held {
        Held {
            token,
            until: since + ttl,
        }
    }

    fn valid(&self) -> bool {
        std::time::Instant::now() < self.until
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl Cluster {
    /// One node alone (the embedded store): every lease is this node's.
    pub fn single() -> Cluster {
        Cluster {
            inner: Arc::new(Inner {
                node: crate::domain::new_ulid(chrono::Utc::now()).to_string(),
                shared: None,
            }),
        }
    }

    /// A node sharing the Redis at `url` (keys under `prefix`) with others; connects lazily
    /// and starts the lease renewal and the pub/sub link.
    pub fn shared(
        url: &str,
        prefix: &str,
        timeout: Duration,
        settings: &ClusterSettings,
    ) -> Result<Cluster, StoreError> {
        let client =
            redis::Client::open(url).map_err(|e| unavailable(format!("store.url: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn =
            ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(unavailable)?;
        let node = if settings.node_id.is_empty() {
            crate::domain::new_ulid(chrono::Utc::now()).to_string()
        } else {
            settings.node_id.clone()
        };
        let token_prefix = format!("{node}:{}:", crate::domain::new_ulid(chrono::Utc::now()));
        let cluster = Cluster {
            inner: Arc::new(Inner {
                node,
                shared: Some(Shared {
                    conn,
                    prefix: prefix.to_string(),
                    timeout,
                    ttl: settings.lease_ttl.max(Duration::from_millis(300)),
                    link: Link::start(client, timeout),
                    held: Default::default(),
                    dormant: Default::default(),
                    token_prefix,
                    tokens: AtomicU64::new(1),
                    lost: broadcast::channel(1024).0,
                }),
            }),
        };
        let renewer = Arc::downgrade(&cluster.inner);
        tokio::spawn(async move { renew_loop(renewer).await });
        Ok(cluster)
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// True when other nodes may share the store.
    pub fn is_shared(&self) -> bool {
        self.inner.shared.is_some()
    }

    fn key(shared: &Shared, name: &str) -> String {
        format!("{}lease:{name}", shared.prefix)
    }

    fn new_token(&self, shared: &Shared) -> String {
        let n = shared.tokens.fetch_add(1, Ordering::Relaxed);
        format!("{}{n}", shared.token_prefix)
    }

    /// Takes the lease `name` unless another node holds it (always taken when single).
    pub async fn acquire(&self, name: &str) -> Result<Acquired, StoreError> {
        let Some(shared) = &self.inner.shared else {
            return Ok(Acquired::Taken);
        };
        if shared.held.lock().get(name).is_some_and(Held::valid) {
            return Ok(Acquired::Taken);
        }
        let token = self.new_token(shared);
        let since = std::time::Instant::now();
        let dormant = shared.dormant.lock().contains_key(name);
        let mut script = ACQUIRE.prepare_invoke();
        script
            .key(Self::key(shared, name))
            .arg(&token)
            .arg(shared.ttl.as_millis() as u64)
            .arg(&self.inner.node)
            .arg(&shared.token_prefix)
            .arg(if dormant { "1" } else { "0" });
        let mut conn = shared.conn.clone();
        let holder: String = tokio::time::timeout(shared.timeout, script.invoke_async(&mut conn))
            .await
            .map_err(|_| unavailable("redis did not answer in time"))?
            .map_err(unavailable)?;
        if holder.is_empty() {
            shared.dormant.lock().remove(name);
            shared
                .held
                .lock()
                .insert(name.to_string(), Held::new(token, shared.ttl, since));
            return Ok(Acquired::Taken);
        }
        Ok(Acquired::HeldBy(node_of(&holder).to_string()))
    }

    /// Takes lease `name`, waiting up to `wait` while another node holds it (polling with a
    /// short back-off): a lock across nodes. `Ok(false)` when the wait ran out; an error at
    /// once when Redis cannot be reached (waiting would not help).
    pub async fn acquire_within(&self, name: &str, wait: Duration) -> Result<bool, StoreError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut backoff = Duration::from_millis(2);
        loop {
            if let Acquired::Taken = self.acquire(name).await? {
                return Ok(true);
            }
            if tokio::time::Instant::now() + backoff >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(50));
        }
    }

    /// Whether this node holds `name` (always when single): taken, and renewed within the
    /// ttl.
    pub fn holds(&self, name: &str) -> bool {
        match &self.inner.shared {
            None => true,
            Some(shared) => shared.held.lock().get(name).is_some_and(Held::valid),
        }
    }

    /// Forgets lease `name` if it still has `token`: a write fenced with it was refused, so
    /// another node holds the lease now (the renewal would find out later).
    pub fn forget(&self, name: &str, token: &str) {
        if let Some(shared) = &self.inner.shared {
            let mut held = shared.held.lock();
            if held.get(name).is_some_and(|h| h.token == token) {
                held.remove(name);
            }
        }
    }

    /// The fence a commit under lease `name` carries: `None` when single; refused at once
    /// when shared and the lease is not held.
    pub fn fence(&self, name: &str) -> Result<Option<Fence>, StoreError> {
        let Some(shared) = &self.inner.shared else {
            return Ok(None);
        };
        match shared.held.lock().get(name) {
            Some(held) if held.valid() => Ok(Some(Fence {
                key: Self::key(shared, name),
                token: held.token.clone(),
                take: None,
            })),
            _ => Err(StoreError::Fenced(format!("lease {name} is not held"))),
        }
    }

    /// A fence that takes lease `name` with the commit it guards (a new case, which nobody
    /// else can know yet); [`adopt`](Self::adopt) it once the commit succeeded.
    pub fn fence_to_take(&self, name: &str) -> Option<Fence> {
        let shared = self.inner.shared.as_ref()?;
        Some(Fence {
            key: Self::key(shared, name),
            token: self.new_token(shared),
            take: Some(shared.ttl),
        })
    }

    /// Records a lease taken by a commit's fence as held (and renewed from now on); `since`
    /// is when the commit went out.
    pub fn adopt(&self, name: &str, fence: &Fence, since: std::time::Instant) {
        if let Some(shared) = &self.inner.shared {
            shared.held.lock().insert(
                name.to_string(),
                Held::new(fence.token.clone(), shared.ttl, since),
            );
        }
    }

    /// Gives lease `name` back (if this node holds it).
    pub async fn release(&self, name: &str) {
        self.release_owned(name.to_string()).await
    }

    /// Stops renewing lease `name` without giving it back: it lapses after the ttl unless
    /// this node takes it again (at once: it is its own) or another node asks for it (then
    /// [`release_owned`](Self::release_owned) gives it back). For a lease left often and
    /// rarely wanted elsewhere (a passivated case) this saves a round trip per release.
    pub fn let_lapse(&self, name: &str) {
        let Some(shared) = &self.inner.shared else {
            return;
        };
        if let Some(held) = shared.held.lock().remove(name) {
            shared
                .dormant
                .lock()
                .insert(name.to_string(), (held.token, std::time::Instant::now()));
        }
    }

    /// [`release`](Self::release) as a `'static` future to spawn: the lease is no longer held
    /// from the moment this returns (so nothing here relies on it any more); the future then
    /// deletes the key, unless someone else holds it by then. A lease let lapse is given back
    /// the same way.
    pub fn release_owned(&self, name: String) -> impl Future<Output = ()> + Send + 'static {
        let removed = self.inner.shared.as_ref().and_then(|shared| {
            let held = shared.held.lock().remove(&name).map(|h| h.token);
            let token = held.or_else(|| shared.dormant.lock().remove(&name).map(|(t, _)| t))?;
            Some((
                shared.conn.clone(),
                Self::key(shared, &name),
                token,
                shared.timeout,
            ))
        });
        async move {
            let Some((mut conn, key, token, timeout)) = removed else {
                return;
            };
            let mut script = RELEASE.prepare_invoke();
            script.key(key).arg(token);
            // Not given back in time: it lapses after the ttl.
            let _ = tokio::time::timeout(timeout, script.invoke_async::<i64>(&mut conn)).await;
        }
    }

    /// Leases this node held and lost (by name), as renewals find them gone.
    pub fn lost(&self) -> broadcast::Receiver<String> {
        match &self.inner.shared {
            Some(shared) => shared.lost.subscribe(),
            // Nothing is ever lost: a receiver whose sender is gone.
            None => broadcast::channel(1).1,
        }
    }

    /// The full name of channel `name` (under the key prefix).
    pub fn channel(&self, name: &str) -> String {
        match &self.inner.shared {
            Some(shared) => format!("{}ch:{name}", shared.prefix),
            None => name.to_string(),
        }
    }

    /// Publishes `payload` on channel `name`; `Ok` without effect when single.
    pub async fn publish(&self, name: &str, payload: Vec<u8>) -> Result<(), StoreError> {
        let Some(shared) = &self.inner.shared else {
            return Ok(());
        };
        let channel = self.channel(name);
        let mut conn = shared.conn.clone();
        tokio::time::timeout(
            shared.timeout,
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(payload)
                .query_async::<i64>(&mut conn),
        )
        .await
        .map_err(|_| unavailable("redis did not answer in time"))?
        .map_err(unavailable)?;
        Ok(())
    }

    /// A publisher for channel `name` that keeps order: one task publishes what it is given,
    /// one message after the other, up to `depth` waiting (more are dropped and counted as
    /// lost by the receiver, which numbers or repeats what matters).
    pub fn publisher(&self, name: &str, depth: usize) -> Publisher {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(depth.max(1));
        let cluster = self.clone();
        let channel = name.to_string();
        tokio::spawn(async move {
            while let Some(payload) = rx.recv().await {
                if let Err(e) = cluster.publish(&channel, payload).await {
                    tracing::debug!(%channel, error = %e, "a message to other nodes was lost");
                }
            }
        });
        Publisher { tx }
    }

    /// Subscribes to channel `name` (`None` when single: nobody else publishes).
    pub async fn subscribe(&self, name: &str) -> Option<Subscription> {
        let shared = self.inner.shared.as_ref()?;
        Some(
            shared
                .link
                .subscribe(&self.channel(name), shared.timeout)
                .await,
        )
    }

    /// The name of shared key `name` (under the key prefix), for state all nodes keep
    /// together ([`eval`](Self::eval)); `None` when single.
    pub fn shared_key(&self, name: &str) -> Option<String> {
        let shared = self.inner.shared.as_ref()?;
        Some(format!("{}{name}", shared.prefix))
    }

    /// Runs `script` on the shared Redis with the store's deadline (shared only: when single
    /// there is nobody to share with, and this answers `Unavailable`).
    pub async fn eval<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: &[String],
    ) -> Result<T, StoreError> {
        let Some(shared) = &self.inner.shared else {
            return Err(StoreError::Unavailable("not shared".into()));
        };
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        let mut conn = shared.conn.clone();
        tokio::time::timeout(shared.timeout, invocation.invoke_async(&mut conn))
            .await
            .map_err(|_| unavailable("redis did not answer in time"))?
            .map_err(unavailable)
    }

    /// The lease ttl (how long a dead node's leases hold others up).
    pub fn lease_ttl(&self) -> Duration {
        self.inner
            .shared
            .as_ref()
            .map_or(Duration::ZERO, |shared| shared.ttl)
    }

    /// Gives every lease back, held or let lapse (shutdown), so other nodes take over at once.
    pub async fn release_all(&self) {
        let Some(shared) = &self.inner.shared else {
            return;
        };
        let mut names: Vec<String> = shared.held.lock().keys().cloned().collect();
        names.extend(shared.dormant.lock().keys().cloned());
        for name in names {
            self.release(&name).await;
        }
    }
}

/// The node id in a lease's token (`node:run:n`).
fn node_of(token: &str) -> &str {
    token.split(':').next().unwrap_or(token)
}

/// Publishes on one channel in the order given (see [`Cluster::publisher`]). Dropping it ends
/// its task once what is queued is out.
#[derive(Debug, Clone)]
pub struct Publisher {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
}

impl Publisher {
    /// Queues `payload`; false when the queue is full and it was dropped.
    pub fn send(&self, payload: Vec<u8>) -> bool {
        self.tx.try_send(payload).is_ok()
    }
}

/// Renews every held lease every third of the ttl; announces the ones found lost. Ends when
/// the cluster handle is gone.
async fn renew_loop(inner: std::sync::Weak<Inner>) {
    let period = match inner
        .upgrade()
        .and_then(|i| i.shared.as_ref().map(|s| s.ttl))
    {
        Some(ttl) => ttl / 3,
        None => return,
    };
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let Some(shared) = &inner.shared else { return };
        // Leases let lapse have lapsed by now.
        shared
            .dormant
            .lock()
            .retain(|_, (_, since)| since.elapsed() < shared.ttl);
        // Leases not renewed for a ttl (Redis away) may be someone else's by now.
        let expired: Vec<String> = {
            let mut held = shared.held.lock();
            let expired: Vec<String> = held
                .iter()
                .filter(|(_, h)| !h.valid())
                .map(|(name, _)| name.clone())
                .collect();
            for name in &expired {
                held.remove(name);
            }
            expired
        };
        for name in expired {
            tracing::warn!(lease = %name, "lease not renewed in time; treated as lost");
            let _ = shared.lost.send(name);
        }
        let held: Vec<(String, String)> = shared
            .held
            .lock()
            .iter()
            .map(|(name, h)| (name.clone(), h.token.clone()))
            .collect();
        for chunk in held.chunks(RENEW_CHUNK) {
            let since = std::time::Instant::now();
            let mut script = RENEW.prepare_invoke();
            script.arg(shared.ttl.as_millis() as u64);
            for (name, token) in chunk {
                script.key(Cluster::key(shared, name)).arg(token);
            }
            let mut conn = shared.conn.clone();
            let renewed: Vec<i64> =
                match tokio::time::timeout(shared.timeout, script.invoke_async(&mut conn)).await {
                    Ok(Ok(renewed)) => renewed,
                    // Redis away: try again next period; the leases lapse if it stays away.
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "renewing leases failed");
                        continue;
                    }
                    Err(_) => {
                        tracing::warn!("renewing leases timed out");
                        continue;
                    }
                };
            for ((name, token), ok) in chunk.iter().zip(renewed) {
                if ok == 1 {
                    if let Some(h) = shared.held.lock().get_mut(name)
                        && &h.token == token
                    {
                        h.until = since + shared.ttl;
                    }
                    continue;
                }
                // Lost, unless it was given back (or taken anew) meanwhile.
                let was_ours = {
                    let mut held = shared.held.lock();
                    let same = held.get(name).is_some_and(|h| &h.token == token);
                    if same {
                        held.remove(name);
                    }
                    same
                };
                if was_ours {
                    tracing::warn!(lease = %name, "lease lost");
                    let _ = shared.lost.send(name.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::RedisServer;

    fn node(server: &RedisServer, id: &str) -> Cluster {
        let settings = ClusterSettings {
            node_id: id.into(),
            lease_ttl: Duration::from_millis(600),
        };
        Cluster::shared(&server.url(), "t:", Duration::from_millis(200), &settings).unwrap()
    }

    /// With Redis away a lease cannot be renewed; once its ttl has passed this node no longer
    /// holds it (another node may have taken it) and says so, before Redis can tell it.
    #[tokio::test]
    async fn a_lease_not_renewed_within_its_ttl_is_no_longer_held() {
        let mut server = RedisServer::start();
        let a = node(&server, "a");
        let mut lost = a.lost();
        assert_eq!(a.acquire("x").await.unwrap(), Acquired::Taken);
        assert!(a.holds("x"));
        assert!(a.fence("x").unwrap().is_some());
        server.stop();
        let name = tokio::time::timeout(Duration::from_secs(5), lost.recv())
            .await
            .expect("the lease is announced lost")
            .unwrap();
        assert_eq!(name, "x");
        assert!(!a.holds("x"));
        assert!(matches!(a.fence("x"), Err(StoreError::Fenced(_))));
    }

    /// A node restarted under the same id takes its earlier run's leases over at once, with a
    /// token of its own (the stale run's fence no longer passes). Within one run, a lease let
    /// lapse is taken back at once, while one being given back waits for the give-back.
    #[tokio::test]
    async fn leases_of_one_node_id_across_runs_and_give_backs() {
        let server = RedisServer::start();
        let old = node(&server, "a");
        assert_eq!(old.acquire("x").await.unwrap(), Acquired::Taken);
        let stale = old.fence("x").unwrap().unwrap();
        let new = node(&server, "a");
        assert_eq!(new.acquire("x").await.unwrap(), Acquired::Taken);
        let fresh = new.fence("x").unwrap().unwrap();
        assert_ne!(stale.token, fresh.token, "a token names its run");
        let other = node(&server, "b");
        assert_eq!(
            other.acquire("x").await.unwrap(),
            Acquired::HeldBy("a".into())
        );

        // Let lapse: this run takes it straight back.
        assert_eq!(new.acquire("y").await.unwrap(), Acquired::Taken);
        new.let_lapse("y");
        assert!(!new.holds("y"));
        assert_eq!(new.acquire("y").await.unwrap(), Acquired::Taken);

        // Given back: not ours any more from the moment it is released, and not taken back
        // while the key still has the old token; once it is gone, anyone may take it.
        let give_back = new.release_owned("y".into());
        assert!(!new.holds("y"));
        assert_eq!(
            new.acquire("y").await.unwrap(),
            Acquired::HeldBy("a".into())
        );
        give_back.await;
        assert_eq!(other.acquire("y").await.unwrap(), Acquired::Taken);
    }
}
