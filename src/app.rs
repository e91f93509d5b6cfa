//! Building and running the server. `Application::build` binds (port 0 works) and wires the
//! actor system; `run_until` serves until the shutdown future resolves, then drains.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::http::HeaderName;
use axum::response::IntoResponse;
use axum::serve::ListenerExt;
use casehub_actors::alerts::{AlertArgs, AlertMonitor};
use casehub_actors::bus::EventBus;
use casehub_actors::case::{CaseContext, CaseDirectory, SupervisorSettings};
use casehub_actors::clock::{SharedClock, SystemClock};
use casehub_actors::cluster::Cluster;
use casehub_actors::delivery::fix::{FixOutcomes, FixRoute};
use casehub_actors::delivery::pool::{DispatchMsg, PoolContext, PoolSettings};
use casehub_actors::delivery::runtime::PoolRuntime;
use casehub_actors::delivery::sealing::{SecretSealer, seal_stored};
use casehub_actors::delivery::sender::Sender;
use casehub_actors::rooms::{RoomHub, RoomsConfig};
use casehub_actors::store::{EmbeddedStore, MeteredStore, RedisStore, SharedStore};
use casehub_actors::telemetry::Telemetry;
use casehub_actors::triage::{SimilarCases, Triage};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::auth::Auth;
use crate::error::ApiError;
use crate::limits::RateLimits;
use crate::metrics::HttpMetrics;
use crate::settings::Settings;
use crate::state::{AppState, Inner};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A bound, wired server, ready to run.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    shutdown_tx: tokio::sync::watch::Sender<bool>,
}

#[derive(Clone, Copy)]
struct MakeCaseRequestId;

impl MakeRequestId for MakeCaseRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let id = casehub_actors::domain::new_request_id(chrono::Utc::now());
        id.parse().ok().map(RequestId::new)
    }
}

fn load_triage(settings: &Settings) -> anyhow::Result<Triage> {
    let t = &settings.triage;
    if t.rules_file.is_empty() && t.knowledge_base_file.is_empty() {
        return Triage::builtin().context("built-in triage rules");
    }
    let read = |path: &str, builtin: &str, key: &str| -> anyhow::Result<String> {
        if path.is_empty() {
            Ok(builtin.to_string())
        } else {
            std::fs::read_to_string(path).with_context(|| format!("{key}: cannot read {path}"))
        }
    };
    let rules = read(
        &t.rules_file,
        casehub_actors::triage::BUILTIN_RULES,
        "triage.rules_file",
    )?;
    let kb = read(
        &t.knowledge_base_file,
        casehub_actors::triage::BUILTIN_KNOWLEDGE_BASE,
        "triage.knowledge_base_file",
    )?;
    Triage::from_toml(&rules, &kb).context("triage.rules_file / triage.knowledge_base_file")
}

impl Application {
    /// Builds on the wall clock.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// Builds with an injected clock (tests).
    pub async fn build_with_clock(settings: Settings, clock: SharedClock) -> anyhow::Result<Self> {
        let addr = settings.bind_addr()?;
        let telemetry = Arc::new(Telemetry::new());
        let store = MeteredStore::wrap(open_store(&settings).await?, telemetry.clone());
        let cluster = open_cluster(&settings)?;
        let triage = Arc::new(load_triage(&settings)?);
        let similar = Arc::new(SimilarCases::new(settings.triage.similar_cases_window));
        let auth = Auth::new(&settings);
        let bus = EventBus::new();
        let alerts = AlertMonitor::start(AlertArgs {
            settings: settings.alerts.clone(),
            store: store.clone(),
            cluster: cluster.clone(),
            bus: bus.clone(),
            metrics: telemetry.actor("alert_monitor"),
        })
        .await
        .context("starting the alert monitor")?;
        let room_clock = clock.clone();
        let room_bus = bus.clone();
        let ctx = Arc::new(CaseContext {
            store: store.clone(),
            cluster: cluster.clone(),
            triage,
            similar,
            clock,
            links: auth.links.clone(),
            routing: settings.reviews.clone(),
            bus: bus.clone(),
            telemetry: telemetry.clone(),
            metrics: telemetry.actor("case_actor"),
            supervisor_metrics: telemetry.actor("case_supervisor"),
            fix_executor: !settings.delivery.fix_executor_url.is_empty(),
            fault_injection: settings.testing.fault_injection,
        });
        let c = &settings.cases;
        let supervision = SupervisorSettings {
            idle_timeout: c.idle_timeout,
            sweep_interval: c.passivation_sweep,
            max_active: c.max_active.div_ceil(c.shards.max(1)),
            restart_budget: c.restart_budget,
            restart_window: c.restart_window,
            drain_timeout: settings.server.shutdown_timeout,
            lease_wait: settings.server.request_timeout,
        };
        let cases = CaseDirectory::start(
            ctx,
            supervision,
            c.shards,
            settings.server.request_timeout,
            c.max_in_flight,
        )
        .await
        .context("starting the case supervisors")?;
        // The pool starts after the cases: it reports fix outcomes to them.
        let (dispatcher, delivery_runtime) =
            start_delivery(&settings, &store, &cluster, &bus, &telemetry, &cases).await?;
        warm_similar_cases(&store, &cases, settings.triage.similar_cases_window).await;
        let rooms = RoomHub::start(RoomsConfig {
            settings: settings.rooms.clone(),
            store: store.clone(),
            cluster: cluster.clone(),
            cases: cases.clone(),
            clock: room_clock,
            bus: room_bus,
            telemetry: telemetry.clone(),
        })
        .await
        .context("starting the review rooms")?;
        let limits = RateLimits::new(&settings.rate_limits, cluster.clone());
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("server.bind: cannot listen on {addr}"))?;
        let (shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
        let http_metrics = HttpMetrics::register(&telemetry);
        let state = AppState::new(Inner {
            settings,
            cases,
            store,
            cluster,
            auth,
            limits,
            telemetry,
            shutdown,
            alerts,
            dispatcher,
            delivery_runtime,
            rooms,
            started: Instant::now(),
            idempotency_locks: parking_lot::Mutex::new(HashMap::new()),
        });
        let router = crate::routes::router(state.clone(), http_metrics)
            .layer(CatchPanicLayer::custom(|_| {
                tracing::error!("a request handler panicked");
                ApiError::internal().into_response()
            }))
            .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                let id = req
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
            })
            .on_request(())
            .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeCaseRequestId));
        Ok(Application {
            listener,
            router,
            state,
            shutdown_tx,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The shared state (tests inspect it).
    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves; then finishes in-flight requests, drains the case
    /// actors and closes the store.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state.clone();
        let sweeper = tokio::spawn({
            let state = state.clone();
            async move { housekeeping(state).await }
        });
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        tracing::info!(addr = %self.listener.local_addr()?, "casehub listening");
        let shutdown_tx = self.shutdown_tx;
        let shutdown = async move {
            shutdown.await;
            // Streams and sockets end first, so in-flight requests can drain.
            let _ = shutdown_tx.send(true);
        };
        let send_buffer = state.settings.server.tcp_send_buffer;
        let listener = self.listener.tap_io(move |tcp| {
            // Small frames (room events, acks) go out at once rather than waiting for Nagle.
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY not set");
            }
            if send_buffer > 0
                && let Err(e) = socket2::SockRef::from(&*tcp).set_send_buffer_size(send_buffer)
            {
                tracing::debug!(error = %e, "SO_SNDBUF not set");
            }
        });
        axum::serve(listener, service)
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving HTTP")?;
        sweeper.abort();
        tracing::info!("draining case actors");
        let timeout = state.settings.server.shutdown_timeout;
        state.cases.shutdown(timeout).await;
        // Reviewer sockets were told to close (1001) when shutdown began.
        state.rooms.shutdown().await;
        let _ = state.alerts.stop_and_wait(None, Some(timeout)).await;
        // Attempts still in flight are abandoned, not awaited: their jobs stay pending in the
        // store and are sent again after a restart (at-least-once), so a receiver that never
        // answers cannot hold up shutdown.
        let _ = state
            .dispatcher
            .stop_and_wait(None, Some(Duration::from_secs(2)))
            .await;
        // Other nodes sharing the store take over at once instead of after the lease ttl.
        state.cluster.release_all().await;
        state.store.close().await;
        tracing::info!("casehub stopped");
        Ok(())
    }
}

/// Checks the stored endpoint secrets against `delivery.secret_key` (sealing plaintext ones when
/// a key is set), then starts the delivery pool, with the fix executor when one is configured.
async fn start_delivery(
    settings: &Settings,
    store: &SharedStore,
    cluster: &Cluster,
    bus: &EventBus,
    telemetry: &Arc<Telemetry>,
    cases: &CaseDirectory,
) -> anyhow::Result<(ractor::ActorRef<DispatchMsg>, PoolRuntime)> {
    let delivery = &settings.delivery;
    let sealer = SecretSealer::from_base64(delivery.secret_key.expose())
        .map_err(|e| anyhow::anyhow!("delivery.secret_key: {e}"))?;
    if !sealer.enabled() {
        tracing::warn!(
            "delivery.secret_key is empty: webhook endpoint secrets are stored unencrypted"
        );
    }
    let sealed = seal_stored(store, &sealer)
        .await
        .context("delivery.secret_key")?;
    if sealed > 0 {
        tracing::info!(endpoints = sealed, "sealed plaintext endpoint secrets");
    }
    let timeout = Duration::from_millis(delivery.timeout_ms);
    let sender = Sender::new(timeout, delivery.allow_private_targets)
        .map_err(|e| anyhow::anyhow!("delivery: cannot build the HTTP client: {e}"))?;
    let fix = if delivery.fix_executor_url.is_empty() {
        None
    } else {
        let outcomes: Arc<dyn FixOutcomes> = Arc::new(cases.clone());
        let route = FixRoute::new(
            &delivery.fix_executor_url,
            delivery.fix_executor_secret.expose(),
            timeout,
            outcomes,
            chrono::Utc::now(),
        )
        .map_err(|e| anyhow::anyhow!("delivery.fix_executor_url: {e}"))?;
        Some(route)
    };
    let runtime = if settings.store.is_redis() {
        PoolRuntime::shared()
    } else {
        PoolRuntime::new(delivery.threads)
            .context("delivery.threads: cannot start the delivery runtime")?
    };
    let dispatcher = runtime
        .start(PoolContext {
            store: store.clone(),
            cluster: cluster.clone(),
            bus: bus.clone(),
            sender,
            settings: PoolSettings {
                workers: delivery.workers,
                per_endpoint: delivery.per_endpoint_concurrency,
                retry_schedule: delivery.retry_schedule.clone(),
                poll_interval: delivery.poll_interval,
                circuit_threshold: delivery.circuit_threshold,
                circuit_cooldown: delivery.circuit_cooldown,
                disable_after: delivery.disable_after,
                // An attempt takes at most its timeout; the margin covers recording it.
                claim_for: timeout * 2 + Duration::from_secs(5),
            },
            sealer,
            fix,
            dispatcher_metrics: telemetry.actor("delivery_dispatcher"),
            worker_metrics: telemetry.actor("delivery_worker"),
            telemetry: telemetry.clone(),
        })
        .await
        .context("starting the delivery pool")?;
    // Cases left between two steps finish from the store, in the background.
    let resume = cases.clone();
    tokio::spawn(async move {
        match resume.resume_unfinished().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(cases = n, "resumed unfinished cases"),
            Err(e) => tracing::warn!(error = %e, "resuming unfinished cases failed"),
        }
    });
    Ok((dispatcher, runtime))
}

/// The embedded store under `data_dir`, or Redis when `store.url` is set.
/// This node's place among the nodes sharing the store: shared on Redis, single otherwise.
fn open_cluster(settings: &Settings) -> anyhow::Result<Cluster> {
    let s = &settings.store;
    if !s.is_redis() {
        return Ok(Cluster::single());
    }
    let cluster = Cluster::shared(&s.url, &s.key_prefix, s.timeout, &settings.cluster)
        .context("store.url")?;
    tracing::info!(node = %cluster.node(), "cluster node on the shared store");
    Ok(cluster)
}

async fn open_store(settings: &Settings) -> anyhow::Result<SharedStore> {
    let s = &settings.store;
    if s.is_redis() {
        let store = RedisStore::connect(&s.url, &s.key_prefix, s.timeout).context("store.url")?;
        store.migrate().await.context("store.url")?;
        return Ok(Arc::new(store));
    }
    let store = EmbeddedStore::open_with_cache(&s.data_dir, s.durable, s.cache_mb << 20)
        .with_context(|| format!("store.data_dir: {}", s.data_dir.display()))?;
    Ok(store)
}

/// Seeds the similar-case index with the most recent cases.
async fn warm_similar_cases(store: &SharedStore, cases: &CaseDirectory, window: usize) {
    let page = store
        .list_cases(casehub_actors::store::CaseQuery {
            status: None,
            limit: window.max(1),
            cursor: None,
        })
        .await;
    if let Ok(page) = page {
        let similar = &cases.context().similar;
        for case in page.cases.iter().rev() {
            similar.record(case.case_id.0, &case.description);
        }
    }
}

/// Periodic upkeep: forget idle rate-limit keys, purge expired idempotency keys.
async fn housekeeping(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        state.limits.sweep();
        let ttl = chrono::Duration::from_std(state.settings.idempotency.ttl)
            .unwrap_or(chrono::Duration::hours(24));
        if let Err(e) = state
            .store
            .purge_idempotency(chrono::Utc::now() - ttl)
            .await
        {
            tracing::warn!(error = %e, "purging idempotency keys failed");
        }
    }
}
