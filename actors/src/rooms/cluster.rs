//! Rooms across nodes (CONTRACT §9: room events reach reviewers connected to any node).
//!
//! One node runs a room: the holder of its lease (`room:{name}`). Its [`ReviewRoom`] numbers the
//! events, keeps the history, the pending reviews, the claims and who is present, exactly as on
//! one node. A reviewer connected to another node joins through that node's [`RoomRelay`],
//! which forwards joins, leaves and reviewer frames to the owner on the room's `to-owner`
//! channel and fans what the owner sends back out to its own connections.
//!
//! The owner sends everything for other nodes on one channel, `from-owner`, from one task, in
//! the order the room produced it, each message numbered: a remote reviewer's welcome and the
//! room's live frames therefore arrive at its relay in room order, as they do on one node, so
//! nothing falls between welcome and live stream and nothing comes twice. A relay that sees a
//! number skipped (pub/sub delivers at most once), another owner, a lost subscription, or the
//! owner falling silent (no heartbeat for [`OWNER_SILENCE`]) cannot promise that any more: it
//! closes its connections with 1012, and reviewers resume with `since` from whichever node
//! runs the room by then.
//!
//! [`ReviewRoom`]: super::room::ReviewRoom
//! [`RoomRelay`]: super::relay::RoomRelay

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::cluster::{Cluster, Publisher};
use crate::domain::Event;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// How often an owner with remote members, and a relay with members, say they are alive.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A relay that hears nothing from its owner this long closes its connections; an owner that
/// hears nothing from a relay this long drops its members.
pub const OWNER_SILENCE: Duration = Duration::from_secs(5);
/// Messages an owner queues for other nodes before it drops (relays then see the gap).
const OUTBOX: usize = 8192;

/// The lease whose holder runs `room`.
pub fn lease_name(room: &str) -> String {
    format!("room:{room}")
}

/// Where relays write to the owner of `room`.
pub fn to_owner(room: &str) -> String {
    format!("room:{room}:to-owner")
}

/// Where the owner of `room` writes to its relays.
pub fn from_owner(room: &str) -> String {
    format!("room:{room}:from-owner")
}

/// What a relay (or any node with news for the room) tells the owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum ToOwner {
    /// A reviewer connected to `node` as its connection `conn`.
    Join {
        node: String,
        conn: u64,
        reviewer: String,
        since: Option<u64>,
        epoch: Option<String>,
    },
    /// That connection closed.
    Leave { node: String, conn: u64 },
    /// A reviewer frame, as the reviewer would send it.
    Client {
        node: String,
        conn: u64,
        frame: String,
    },
    /// Events of one commit on another node that belong to this room.
    Events { events: Vec<Event> },
    /// Who holds the claim on a review (HTTP review actions on another node respect claims).
    ClaimHolder {
        node: String,
        query: u64,
        review_id: String,
    },
    /// The relay on `node` is alive (sent while it serves members): an owner that stops
    /// hearing from a node drops that node's members, so a dead node's reviewers leave
    /// presence and their claims lapse.
    Alive { node: String },
}

impl ToOwner {
    /// The node that sent it, if a relay did.
    pub fn node(&self) -> Option<&str> {
        match self {
            ToOwner::Join { node, .. }
            | ToOwner::Leave { node, .. }
            | ToOwner::Client { node, .. }
            | ToOwner::ClaimHolder { node, .. }
            | ToOwner::Alive { node } => Some(node),
            ToOwner::Events { .. } => None,
        }
    }
}

/// What the owner tells the relays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum FromOwner {
    /// Frames for every member.
    Frames { frames: Vec<String> },
    /// Frames for one member; the first for a joining member is its welcome, then its replay.
    Direct {
        node: String,
        conn: u64,
        frames: Vec<String>,
    },
    /// The answer to a [`ToOwner::ClaimHolder`].
    Answer {
        node: String,
        query: u64,
        holder: Option<String>,
    },
    /// The owner is alive.
    Heartbeat,
    /// The owner stops running the room.
    Closing,
}

/// One numbered message from an owner: `owner` names the room actor (node and start), `n`
/// counts from 1 without gaps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub owner: String,
    pub n: u64,
    pub msg: FromOwner,
}

/// The owner's side: numbers and publishes, in order, what it has for other nodes.
pub struct RemoteSide {
    owner: String,
    next: AtomicU64,
    out: Publisher,
}

impl RemoteSide {
    /// Starts publishing for `room` on `cluster` (a lost message is a gap its relays see).
    pub fn start(cluster: &Cluster, room: &str) -> RemoteSide {
        RemoteSide {
            owner: crate::domain::new_ulid(chrono::Utc::now()).to_string(),
            next: AtomicU64::new(1),
            out: cluster.publisher(&from_owner(room), OUTBOX),
        }
    }

    /// Queues `msg` for the relays (numbered; a full queue drops it, which relays notice).
    pub fn send(&self, msg: FromOwner) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let envelope = Envelope {
            owner: self.owner.clone(),
            n,
            msg,
        };
        let Ok(payload) = serde_json::to_vec(&envelope) else {
            return;
        };
        if !self.out.send(payload) {
            tracing::warn!("room messages to other nodes backed up; relays will resynchronise");
        }
    }

    /// Frames for every remote member.
    pub fn frames(&self, frames: &[Bytes]) {
        self.send(FromOwner::Frames {
            frames: frames.iter().map(text).collect(),
        });
    }

    /// Frames for one remote member.
    pub fn direct(&self, node: &str, conn: u64, frames: &[Bytes]) {
        self.send(FromOwner::Direct {
            node: node.to_string(),
            conn,
            frames: frames.iter().map(text).collect(),
        });
    }
}

fn text(frame: &Bytes) -> String {
    String::from_utf8_lossy(frame).into_owned()
}
