//! The delivery pool's own tokio runtime.
//!
//! A delivery passes through several tasks: the dispatcher reads it, a worker signs and sends it,
//! the HTTP connection's task writes and reads the socket, the recorder stores the attempt. On
//! the server's shared runtime each of those hand-offs can wake another worker thread, and on a
//! machine with few cores the wake-ups and work stealing cost more than the work: a drain on
//! 2 cores spent about a quarter less CPU per delivery with the pool on one thread of its own
//! (BENCHMARKS.md, session 11). So the pool runs on a runtime of `delivery.threads` threads, and
//! HTTP intake keeps the server's runtime to itself. Everything the pool starts lives here: the
//! dispatcher, the factory and its workers, the recorder and the sender's connections.
//!
//! Not on the Redis store: there the pool [`shares`](PoolRuntime::shared) the server's runtime.
//! The Redis connection manager reconnects on the runtime of whichever call noticed the
//! failure, so the pool's calls could move the server's Redis connections onto the pool's
//! thread, and they would end with it.

use ractor::{ActorRef, SpawnErr};
use tokio::runtime::{Builder, Handle, Runtime};

use super::pool::{DeliveryDispatcher, DispatchMsg, PoolContext};

/// Where the pool runs. When it owns its runtime, dropping it stops whatever still runs there
/// without waiting (attempts in flight are abandoned, their jobs stay pending in the store and
/// go again after a restart).
pub struct PoolRuntime {
    handle: Handle,
    /// The pool's own runtime (taken on drop); `None` when it shares the server's.
    runtime: Option<Runtime>,
}

impl std::fmt::Debug for PoolRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolRuntime")
            .field("own", &self.runtime.is_some())
            .field("threads", &self.handle.metrics().num_workers())
            .finish()
    }
}

impl PoolRuntime {
    /// A runtime of `threads` worker threads named `casehub-delivery`.
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let runtime = Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("casehub-delivery")
            .enable_all()
            .build()?;
        Ok(PoolRuntime {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    /// The runtime of the caller (the server's), shared.
    pub fn shared() -> Self {
        PoolRuntime {
            handle: Handle::current(),
            runtime: None,
        }
    }

    /// Starts the pool ([`DeliveryDispatcher::start`]) on this runtime.
    pub async fn start(&self, ctx: PoolContext) -> Result<ActorRef<DispatchMsg>, SpawnErr> {
        self.handle
            .spawn(DeliveryDispatcher::start(ctx))
            .await
            .map_err(|e| SpawnErr::StartupFailed(Box::new(e)))?
    }
}

impl Drop for PoolRuntime {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its tasks end, which is not allowed inside another
        // runtime (the server drops this from one).
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dropping_the_pool_runtime_inside_another_runtime_stops_its_tasks() {
        let pool = PoolRuntime::new(1).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let (started_tx, started) = tokio::sync::oneshot::channel();
        pool.handle.spawn(async move {
            // Held until the runtime drops the task.
            let _held = tx;
            let _ = started_tx.send(std::thread::current().name().map(str::to_string));
            std::future::pending::<()>().await;
        });
        assert_eq!(started.await.unwrap().as_deref(), Some("casehub-delivery"));
        // A plain `Runtime` dropped here panics ("Cannot drop a runtime in a context where
        // blocking is not allowed").
        drop(pool);
        assert_eq!(rx.recv().await, None, "the pending task was dropped");
    }

    #[tokio::test]
    async fn a_shared_pool_runtime_leaves_the_servers_tasks_running_when_dropped() {
        let pool = PoolRuntime::shared();
        let (go_tx, go) = tokio::sync::oneshot::channel::<()>();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        pool.handle.spawn(async move {
            let _ = go.await;
            let _ = tx.send(()).await;
        });
        drop(pool);
        go_tx.send(()).unwrap();
        assert_eq!(rx.recv().await, Some(()), "the task ran on after the drop");
    }
}
