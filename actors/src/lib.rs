//! casehub's domain and actor system. No HTTP lives here.
//!
//! - [`domain`]: cases, reviews, events and their vocabularies (seed 000's objects).
//! - [`triage`]: the rule-driven classifier, the knowledge base and similar-case search.
//! - [`case`]: one supervised [`case::actor::CaseActor`] per active case, under sharded
//!   supervisors reached through [`case::CaseDirectory`]; passivation and restarts.
//! - [`store`]: the [`store::SnapshotStore`] trait, the embedded (redb) and Redis stores.
//! - [`cluster`]: several nodes on one Redis: leases (who hosts a case, a room, the fan-out)
//!   and the channels nodes talk over.
//! - [`bus`]: committed events fanned out in process.
//! - [`delivery`]: outgoing webhooks: endpoints, the durable delivery queue and the worker pool.
//! - [`alerts`]: the `AlertMonitor` actor; [`telemetry`]: the one metrics registry.
//! - [`links`], [`routing`], [`clock`]: signed links, review-room routing, injectable time.

pub mod alerts;
pub mod bus;
pub mod case;
pub mod clock;
pub mod cluster;
pub mod delivery;
pub mod domain;
pub mod links;
pub mod rooms;
pub mod routing;
pub mod store;
pub mod telemetry;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod triage;
