//! casehub: a realtime support hub.
//!
//! Support requests arrive over HTTP; each case becomes a supervised actor (see the
//! `casehub-actors` crate) that triages it, offers self-service or escalates it to human review,
//! and records every step as an event in a durable outbox.
//!
//! This crate is the edge: [`settings`] (layered configuration), [`auth`] (API keys, link tokens,
//! reviewer JWTs), [`limits`] (per-caller rate limits), [`extract`] and [`error`] (the contract's
//! validation and error envelope), [`routes`] (one module per route group) and [`app`]
//! (`Application::build` binds — port 0 in tests — and `run_until` serves and drains).

pub mod app;
pub mod auth;
pub mod cli;
pub mod error;
pub mod extract;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod settings;
pub mod state;
pub mod tail;
pub mod telemetry;
pub mod ws;

pub use app::Application;
pub use settings::Settings;

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown requested");
}
