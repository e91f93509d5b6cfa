//! Cases as supervised actors: [`CaseDirectory`] routes to shard [`supervisor`]s, which own the
//! [`actor`]s; [`lifecycle`] holds the pure transition rules.

pub mod actor;
mod command;
mod directory;
pub mod lifecycle;
pub mod supervisor;

pub use command::{CaseError, CaseMsg, CollaborativeRequest, ReviewDecision};
pub use directory::CaseDirectory;
pub use supervisor::SupervisorSettings;

use std::sync::Arc;

use crate::bus::EventBus;
use crate::clock::SharedClock;
use crate::cluster::Cluster;
use crate::domain::CaseId;
use crate::links::LinkSigner;
use crate::routing::ReviewRouting;
use crate::store::SharedStore;
use crate::telemetry::{ActorMetrics, Telemetry};
use crate::triage::{SimilarCases, Triage};

/// What every case actor shares.
#[derive(Debug)]
pub struct CaseContext {
    pub store: SharedStore,
    /// Who else shares the store: a case is hosted by the node holding its lease.
    pub cluster: Cluster,
    pub triage: Arc<Triage>,
    pub similar: Arc<SimilarCases>,
    pub clock: SharedClock,
    pub links: LinkSigner,
    pub routing: ReviewRouting,
    pub bus: EventBus,
    /// The process registry (events and transitions are counted here).
    pub telemetry: Arc<Telemetry>,
    /// Metrics of the case actors (kind `case_actor`).
    pub metrics: ActorMetrics,
    /// Metrics of the shard supervisors (kind `case_supervisor`).
    pub supervisor_metrics: ActorMetrics,
    /// A fix executor is configured: approving a solution with an automated fix sends it there.
    pub fix_executor: bool,
    /// Enables [`CaseMsg::InjectPanic`] (tests only).
    pub fault_injection: bool,
}

/// The name of the lease whose holder hosts case `id` (CONTRACT §9).
pub fn lease_name(id: CaseId) -> String {
    format!("case:{id}")
}

/// The channel on which other nodes ask `node` to hand its cases over.
pub fn release_channel(node: &str) -> String {
    format!("node:{node}:release")
}
