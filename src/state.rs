//! What every handler shares: settings, the case directory, the store, auth and limits.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ConnectInfo;
use axum::http::Extensions;
use casehub_actors::case::CaseDirectory;
use casehub_actors::store::SharedStore;
use casehub_actors::telemetry::Telemetry;

use crate::auth::Auth;
use crate::limits::RateLimits;
use crate::settings::Settings;

/// Cheap-clone handle to the shared state.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The shared state itself.
pub struct Inner {
    pub settings: Settings,
    pub cases: CaseDirectory,
    pub store: SharedStore,
    /// This node among the nodes sharing the store (single on the embedded store).
    pub cluster: casehub_actors::cluster::Cluster,
    pub auth: Auth,
    pub limits: Arc<RateLimits>,
    pub telemetry: Arc<Telemetry>,
    /// Turns true when shutdown starts; long-lived streams end on it.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// The alert monitor (stopped on shutdown).
    pub alerts: ractor::ActorRef<casehub_actors::alerts::AlertMsg>,
    /// The delivery dispatcher (stopped on shutdown).
    pub dispatcher: ractor::ActorRef<casehub_actors::delivery::pool::DispatchMsg>,
    /// The runtime the delivery pool runs on (stopped when the state is dropped).
    pub delivery_runtime: casehub_actors::delivery::runtime::PoolRuntime,
    /// The review rooms.
    pub rooms: casehub_actors::rooms::RoomHub,
    pub started: Instant,
    /// Serialises concurrent intakes that carry the same idempotency key (per key).
    pub idempotency_locks: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl AppState {
    /// Wraps the shared state.
    pub fn new(inner: Inner) -> Self {
        AppState(Arc::new(inner))
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The peer address the connection came from (the server is served with connect info).
pub fn client_ip(extensions: &Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}
