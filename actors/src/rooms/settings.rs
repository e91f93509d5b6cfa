//! Review-room settings (`[rooms]`).

use std::time::Duration;

use serde::Deserialize;

/// How rooms keep history, hold claims and treat connections.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomSettings {
    /// Room events kept per room for resume (`since`); older resumes get `reset`.
    pub history: usize,
    /// A claim lapses after this long (or when its holder disconnects).
    #[serde(with = "humantime_serde")]
    pub claim_ttl: Duration,
    /// Frames queued for one connection at most; past it the connection is closed with 4008.
    pub outgoing_buffer: usize,
    /// How often the server pings each connection.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// A connection silent (no frame, no pong) this long is dropped.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Largest frame a reviewer may send, in bytes.
    pub max_frame: usize,
    /// The room `alert.triggered` events go to.
    pub ops_room: String,
}

impl Default for RoomSettings {
    fn default() -> Self {
        RoomSettings {
            history: 1000,
            claim_ttl: Duration::from_secs(600),
            outgoing_buffer: 256,
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            max_frame: 64 * 1024,
            ops_room: "ops".into(),
        }
    }
}

impl RoomSettings {
    /// How often rooms look for lapsed claims.
    pub fn claim_sweep(&self) -> Duration {
        (self.claim_ttl / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }

    /// How long a decision made over the socket may wait for its case.
    pub fn action_timeout(&self) -> Duration {
        Duration::from_secs(10)
    }

    /// Checks every value; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.history == 0 {
            return Err("rooms.history: must be at least 1".into());
        }
        if self.claim_ttl.is_zero() {
            return Err("rooms.claim_ttl: must be positive".into());
        }
        if self.outgoing_buffer < 8 {
            return Err("rooms.outgoing_buffer: must be at least 8 frames".into());
        }
        if self.ping_interval.is_zero() {
            return Err("rooms.ping_interval: must be positive".into());
        }
        if self.idle_timeout <= self.ping_interval {
            return Err("rooms.idle_timeout: must be longer than rooms.ping_interval".into());
        }
        if self.max_frame < 1024 {
            return Err("rooms.max_frame: must be at least 1024 bytes".into());
        }
        if !crate::routing::valid_room(&self.ops_room) {
            return Err(format!(
                "rooms.ops_room: invalid room name {:?}",
                self.ops_room
            ));
        }
        Ok(())
    }
}
