//! Review rooms (CONTRACT §6): reviewers connected over WebSocket see pending reviews live,
//! claim them and decide them.
//!
//! - [`room`]: the `ReviewRoom` actor, one per room: seq, history, pending reviews, claims,
//!   members with bounded outgoing buffers.
//! - [`hub`]: the rooms' supervisor, the routing of committed events to rooms, and the
//!   [`RoomHub`] handle the edge uses.
//! - [`protocol`]: the frames on the wire.
//! - [`cluster`], [`relay`]: rooms across nodes sharing one store: one node runs a room, the
//!   others relay their reviewers' connections to it.

pub mod cluster;
pub mod hub;
pub mod protocol;
pub mod relay;
pub mod room;
mod settings;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

pub use hub::{Membership, RoomError, RoomHub, RoomsConfig};
pub use room::{JoinRequest, Joined, Kick, RoomInfo};
pub use settings::RoomSettings;

use crate::telemetry::Telemetry;

/// Room counters exposed on `/metrics`.
#[derive(Debug, Default)]
pub struct RoomCounters {
    /// Open reviewer connections.
    pub connections: Gauge,
    /// Room events published.
    pub events: Counter,
    /// Connections closed with 4008 because their outgoing buffer was full.
    pub slow_closes: Counter,
    /// Times the rooms fell behind the event bus and reloaded their pending reviews.
    pub resyncs: Counter,
}

/// One open connection, counted in `room_connections` for as long as it lives: it goes with
/// its member however the room or relay holding it ends (a failed actor runs no `post_stop`).
#[derive(Debug)]
pub(crate) struct Counted(Gauge);

impl Counted {
    pub(crate) fn new(gauge: &Gauge) -> Counted {
        gauge.inc();
        Counted(gauge.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl RoomCounters {
    fn register(telemetry: &Telemetry) -> Self {
        let c = RoomCounters::default();
        telemetry.register(
            "room_connections",
            "Open reviewer WebSocket connections",
            c.connections.clone(),
        );
        telemetry.register("room_events", "Room events published", c.events.clone());
        telemetry.register(
            "room_slow_closes",
            "Reviewer connections closed with 4008 (outgoing buffer full)",
            c.slow_closes.clone(),
        );
        telemetry.register(
            "room_resyncs",
            "Times rooms fell behind the event bus and reloaded pending reviews",
            c.resyncs.clone(),
        );
        c
    }
}
