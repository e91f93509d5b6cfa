//! The `ReviewRoom` actor: one per room. It numbers the room's events, keeps their history (in
//! memory for resume, in the store across restarts), holds the pending reviews and their
//! claims, and fans frames out to its members' bounded outgoing buffers.
//!
//! Everything that must not interleave runs in this actor's handler: a join builds its welcome
//! and replay and becomes a member in one message, so no event falls between snapshot and live
//! stream. Review decisions run in a spawned task (they wait for the case actor); their answer
//! comes back as a message.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};

use super::cluster::{self, FromOwner, RemoteSide, ToOwner};
use super::protocol::{self, CLOSE_TOO_SLOW, ClientFrame, ClientRequest};
use super::{Counted, RoomSettings};
use crate::case::{CaseDirectory, CaseError, ReviewDecision, lifecycle};
use crate::clock::SharedClock;
use crate::cluster::Cluster;
use crate::cluster::link::{Received, Subscription};
use crate::domain::{Event, EventKind, ReviewId, ReviewStatus, rfc3339};
use crate::store::{RoomEntry, RoomMeta, SharedStore, StoreError};
use crate::telemetry::ActorMetrics;

/// A connection's id within its room.
pub type ConnId = u64;

/// Why the room closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kick {
    pub code: u16,
    pub reason: &'static str,
}

/// A reviewer joining: where to send frames, how to close it, and where to resume.
#[derive(Debug)]
pub struct JoinRequest {
    pub reviewer: String,
    /// Resume after this seq (with `epoch`).
    pub since: Option<u64>,
    pub epoch: Option<String>,
    /// Live frames (bounded: when full the connection is kicked with 4008).
    pub tx: mpsc::Sender<Bytes>,
    pub kick: oneshot::Sender<Kick>,
}

/// What a joining connection sends first: the welcome, then the replayed events.
#[derive(Debug)]
pub struct Joined {
    pub conn: ConnId,
    pub welcome: Bytes,
    pub replay: Vec<Bytes>,
}

/// A room's counters, for operations.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoomInfo {
    pub room: String,
    pub epoch: String,
    pub seq: u64,
    pub connections: usize,
    pub reviewers: Vec<String>,
    pub pending: usize,
    pub claims: usize,
    /// True on a node relaying its reviewers to the node that runs the room (which reports
    /// the room's seq, pending reviews and claims; a relay reports only its connections).
    pub relay: bool,
}

/// Messages of a room.
#[derive(Debug)]
pub enum RoomMsg {
    Join(Box<JoinRequest>, RpcReplyPort<Joined>),
    Leave(ConnId),
    Client(ConnId, ClientFrame),
    /// The events of one commit routed to this room, in order.
    Publish(Vec<Arc<Event>>),
    /// The answer to a client frame, computed elsewhere.
    Answer(ConnId, Bytes),
    /// Lapse expired claims.
    Tick,
    /// Who holds the claim on a review, if anyone (HTTP review actions respect claims).
    ClaimHolder(ReviewId, RpcReplyPort<Option<String>>),
    /// Reload the pending reviews from the store (after the bus lagged).
    Resync,
    Info(RpcReplyPort<RoomInfo>),
    /// What another node sent the room (its relay, or a node with events for it).
    Remote(ToOwner),
}

/// What a room needs.
#[derive(Clone)]
pub struct RoomArgs {
    pub name: String,
    pub settings: RoomSettings,
    pub store: SharedStore,
    /// When nodes share the store, this room's owner serves reviewers on other nodes too.
    pub cluster: Cluster,
    pub cases: CaseDirectory,
    pub clock: SharedClock,
    pub metrics: ActorMetrics,
    pub counters: Arc<super::RoomCounters>,
}

pub struct ReviewRoom;

struct Claim {
    reviewer: String,
    conn: ConnId,
    expires_at: DateTime<Utc>,
}

struct PendingReview {
    summary: Map<String, Value>,
    claim: Option<Claim>,
}

impl PendingReview {
    fn claim_holder(&self, now: DateTime<Utc>) -> Option<&Claim> {
        self.claim.as_ref().filter(|c| c.expires_at > now)
    }

    fn summary(&self, now: DateTime<Utc>) -> Value {
        let mut summary = self.summary.clone();
        let claim = self.claim_holder(now);
        summary.insert("claimed_by".into(), json!(claim.map(|c| &c.reviewer)));
        summary.insert(
            "claim_expires_at".into(),
            json!(claim.map(|c| rfc3339(c.expires_at))),
        );
        Value::Object(summary)
    }
}

struct Member {
    reviewer: String,
    link: Link,
}

/// Where a member's frames go.
enum Link {
    /// A connection on this node: its bounded buffer, and how to close it.
    Local {
        tx: mpsc::Sender<Bytes>,
        kick: Option<oneshot::Sender<Kick>>,
        _counted: Counted,
    },
    /// A connection on another node, served by that node's relay (which bounds and closes it).
    Remote { node: String, conn: u64 },
}

pub struct RoomState {
    args: RoomArgs,
    epoch: String,
    seq: u64,
    /// The retained history, oldest first (at most `settings.history`).
    history: VecDeque<(u64, Bytes)>,
    pending: BTreeMap<String, PendingReview>,
    members: HashMap<ConnId, Member>,
    /// Connections per reviewer (presence is per reviewer).
    presence: BTreeMap<String, usize>,
    next_conn: ConnId,
    /// Appends events to the stored history behind the live fan-out.
    writer: Option<HistoryWriter>,
    /// Members whose buffer overflowed or closed, to be removed after the current fan-out.
    dropped: Vec<ConnId>,
    /// When nodes share the store: what this room sends to other nodes' relays.
    remote: Option<RemoteSide>,
    /// Remote members by (node, the relay's connection id).
    remote_members: HashMap<(String, u64), ConnId>,
    /// The task handing other nodes' messages to this room.
    inbound: Option<tokio::task::JoinHandle<()>>,
    /// When the relays last heard from this room.
    heard_at: Instant,
    /// When this room last heard from each node with remote members.
    relays_heard: HashMap<String, Instant>,
}

/// Loads the pending reviews of `room` with what reviewers see of them.
async fn load_pending(
    store: &SharedStore,
    room: &str,
) -> Result<BTreeMap<String, PendingReview>, StoreError> {
    let mut pending = BTreeMap::new();
    for id in store.pending_reviews(room).await? {
        let Some(review) = store.load_review(&id).await? else {
            continue;
        };
        if review.status != ReviewStatus::Pending || review.room != room {
            continue;
        }
        let Some(case) = store.load_case(review.case_id).await? else {
            continue;
        };
        // A review replaced without a decision lingers in the index; the case knows.
        if case.review.as_ref().map(|r| &r.review_id) != Some(&review.review_id) {
            continue;
        }
        if let Value::Object(summary) = lifecycle::review_summary(&case, &review) {
            pending.insert(
                id.as_str().to_string(),
                PendingReview {
                    summary,
                    claim: None,
                },
            );
        }
    }
    Ok(pending)
}

impl Actor for ReviewRoom {
    type Msg = RoomMsg;
    type State = RoomState;
    type Arguments = RoomArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<RoomMsg>,
        args: RoomArgs,
    ) -> Result<RoomState, ActorProcessingErr> {
        let store = &args.store;
        let keep = args.settings.history;
        let new_epoch = || crate::domain::new_ulid(args.clock.now()).to_string();
        // A room still marked open was cut off (a crash): events it sent may never have reached
        // its history, so that history cannot promise a gapless resume. A new epoch makes every
        // `since` from before reset instead.
        let (epoch, seq, history) = match store.room_meta(&args.name).await? {
            Some(meta) if !meta.open => {
                let history = store
                    .room_history(&args.name, meta.seq.saturating_sub(keep as u64), keep)
                    .await?
                    .into_iter()
                    .map(|e| (e.seq, Bytes::from(e.frame)))
                    .collect();
                (meta.epoch, meta.seq, history)
            }
            Some(meta) => {
                tracing::warn!(room = %args.name, "room was not closed cleanly; starting a new history epoch");
                (new_epoch(), meta.seq, VecDeque::new())
            }
            None => (new_epoch(), 0, VecDeque::new()),
        };
        let meta = RoomMeta {
            epoch: epoch.clone(),
            seq,
            open: true,
        };
        // The hub took the room's lease before starting it; every history write carries it.
        append_fenced(store, &args.cluster, &args.name, &meta, &[], keep).await?;
        let writer = HistoryWriter::start(&args, epoch.clone());
        // Listening before reading the pending reviews: a review another node commits
        // meanwhile is either read or heard (or both; it is not repeated).
        let subscription = args.cluster.subscribe(&cluster::to_owner(&args.name)).await;
        let pending = load_pending(store, &args.name).await?;
        let (remote, inbound) = match subscription {
            Some(subscription) => (
                Some(RemoteSide::start(&args.cluster, &args.name)),
                Some(tokio::spawn(receive_remote(
                    subscription,
                    myself.clone(),
                    args.metrics.clone(),
                ))),
            ),
            None => (None, None),
        };
        // Claims lapse on a wall-clock sweep; the time they are compared with is the clock's.
        let sweep = args.settings.claim_sweep();
        let ticker = myself.clone();
        let tick_metrics = args.metrics.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(sweep);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                tick_metrics.queued();
                if ticker.cast(RoomMsg::Tick).is_err() {
                    return;
                }
            }
        });
        args.metrics.spawned(&format_args!("room:{}", args.name));
        Ok(RoomState {
            args,
            epoch,
            seq,
            history,
            writer: Some(writer),
            pending,
            members: HashMap::new(),
            presence: BTreeMap::new(),
            next_conn: 1,
            dropped: Vec::new(),
            remote,
            remote_members: HashMap::new(),
            inbound,
            heard_at: Instant::now(),
            relays_heard: HashMap::new(),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<RoomMsg>,
        state: &mut RoomState,
    ) -> Result<(), ActorProcessingErr> {
        // Other nodes' reviewers reconnect to whichever node runs the room next.
        if let Some(inbound) = state.inbound.take() {
            inbound.abort();
        }
        if let Some(remote) = &state.remote {
            remote.send(FromOwner::Closing);
        }
        // Write what is queued, then mark the history closed cleanly (same epoch next time).
        // If any of it could not be written, the room stays marked open, so its next start
        // begins a new epoch rather than promise resumes from a history with a hole in it.
        // A room that lost its lease writes nothing more (the fence refuses it): the history
        // is its successor's now.
        if let Some(writer) = state.writer.take() {
            if writer.finish().await {
                let meta = RoomMeta {
                    epoch: state.epoch.clone(),
                    seq: state.seq,
                    open: false,
                };
                let keep = state.args.settings.history;
                let args = &state.args;
                if let Err(e) =
                    append_fenced(&args.store, &args.cluster, &args.name, &meta, &[], keep).await
                {
                    tracing::warn!(room = %state.args.name, error = %e, "closing the room history failed");
                }
            } else {
                tracing::warn!(room = %state.args.name, "room history incomplete; the next start begins a new epoch");
            }
        }
        // Only now may another node run the room: its history is as complete as it gets.
        state
            .args
            .cluster
            .release(&cluster::lease_name(&state.args.name))
            .await;
        count_stopped(state);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<RoomMsg>,
        msg: RoomMsg,
        state: &mut RoomState,
    ) -> Result<(), ActorProcessingErr> {
        let started = Instant::now();
        state.args.metrics.mailbox.dec();
        match msg {
            RoomMsg::Join(request, reply) => {
                let joined = state.join(*request);
                let _ = reply.send(joined);
            }
            RoomMsg::Leave(conn) => state.leave(conn, "disconnected").await,
            RoomMsg::Client(conn, frame) => state.client(&myself, conn, frame).await,
            RoomMsg::Publish(events) => state.publish_events(&events).await,
            RoomMsg::Answer(conn, frame) => state.send_to(conn, frame),
            RoomMsg::Tick => {
                state.expire_claims().await;
                state.heartbeat();
                state.drop_silent_relays().await;
            }
            RoomMsg::Remote(msg) => state.remote_message(&myself, msg).await,
            RoomMsg::ClaimHolder(id, reply) => {
                let _ = reply.send(state.claim_holder(id.as_str()));
            }
            RoomMsg::Resync => state.resync().await,
            RoomMsg::Info(reply) => {
                let _ = reply.send(state.info());
            }
        }
        state.settle().await;
        state.args.metrics.handled(started.elapsed());
        Ok(())
    }
}

impl RoomState {
    fn info(&self) -> RoomInfo {
        let now = self.args.clock.now();
        RoomInfo {
            room: self.args.name.clone(),
            epoch: self.epoch.clone(),
            seq: self.seq,
            connections: self
                .members
                .values()
                .filter(|m| matches!(m.link, Link::Local { .. }))
                .count(),
            reviewers: self.presence.keys().cloned().collect(),
            pending: self.pending.len(),
            claims: self
                .pending
                .values()
                .filter(|p| p.claim_holder(now).is_some())
                .count(),
            relay: false,
        }
    }

    /// The pending list, oldest request first.
    fn pending_list(&self) -> Vec<Value> {
        let now = self.args.clock.now();
        let mut list: Vec<Value> = self.pending.values().map(|p| p.summary(now)).collect();
        list.sort_by(|a, b| {
            let key = |v: &Value| {
                (
                    v["requested_at"].as_str().unwrap_or_default().to_string(),
                    v["review_id"].as_str().unwrap_or_default().to_string(),
                )
            };
            key(a).cmp(&key(b))
        });
        list
    }

    fn join(&mut self, request: JoinRequest) -> Joined {
        let JoinRequest {
            reviewer,
            since,
            epoch,
            tx,
            kick,
        } = request;
        let link = Link::Local {
            tx,
            kick: Some(kick),
            _counted: Counted::new(&self.args.counters.connections),
        };
        self.admit(reviewer, since, epoch.as_deref(), link)
    }

    /// Makes a member of a connection (here or on another node): its welcome and replay, built
    /// in the same handler that adds it, so no event falls between them and the live stream.
    fn admit(
        &mut self,
        reviewer: String,
        since: Option<u64>,
        epoch: Option<&str>,
        link: Link,
    ) -> Joined {
        let conn = self.next_conn;
        self.next_conn += 1;
        let oldest = self.history.front().map_or(self.seq + 1, |(seq, _)| *seq);
        let resumable = match (since, epoch) {
            (Some(since), Some(epoch)) => {
                epoch == self.epoch && since <= self.seq && since + 1 >= oldest
            }
            _ => false,
        };
        let reset = since.is_some() && !resumable;
        let replay: Vec<Bytes> = match since {
            Some(since) if resumable => self
                .history
                .iter()
                .filter(|(seq, _)| *seq > since)
                .map(|(_, frame)| frame.clone())
                .collect(),
            _ => Vec::new(),
        };
        let first = {
            let count = self.presence.entry(reviewer.clone()).or_insert(0);
            *count += 1;
            *count == 1
        };
        if first {
            self.broadcast(protocol::presence(true, &reviewer));
        }
        let welcome = json!({
            "type": "welcome",
            "room": self.args.name,
            "reviewer": reviewer,
            "epoch": self.epoch,
            "seq": self.seq,
            "reset": reset,
            "replayed": replay.len(),
            "pending": self.pending_list(),
            "presence": self.presence.keys().collect::<Vec<_>>(),
            "claim_ttl_seconds": self.args.settings.claim_ttl.as_secs(),
        });
        if let Link::Remote { node, conn: remote } = &link {
            self.remote_members.insert((node.clone(), *remote), conn);
        }
        self.members.insert(conn, Member { reviewer, link });
        Joined {
            conn,
            welcome: Bytes::from(welcome.to_string()),
            replay,
        }
    }

    /// Who holds the claim on `review_id`, if anyone.
    fn claim_holder(&self, review_id: &str) -> Option<String> {
        let now = self.args.clock.now();
        self.pending
            .get(review_id)
            .and_then(|p| p.claim_holder(now))
            .map(|c| c.reviewer.clone())
    }

    /// Tells the relays this room is alive, when any of them serves a member.
    fn heartbeat(&mut self) {
        let Some(remote) = &self.remote else { return };
        if !self.remote_members.is_empty() && self.heard_at.elapsed() >= cluster::HEARTBEAT {
            remote.send(FromOwner::Heartbeat);
            self.heard_at = Instant::now();
        }
    }

    /// Drops the members of nodes not heard from for [`cluster::OWNER_SILENCE`] (a dead
    /// node's reviewers leave; their claims lapse).
    async fn drop_silent_relays(&mut self) {
        let silent: Vec<String> = self
            .relays_heard
            .iter()
            .filter(|(_, heard)| heard.elapsed() >= cluster::OWNER_SILENCE)
            .map(|(node, _)| node.clone())
            .collect();
        for node in silent {
            self.relays_heard.remove(&node);
            let gone: Vec<ConnId> = self
                .remote_members
                .iter()
                .filter(|((n, _), _)| *n == node)
                .map(|(_, conn)| *conn)
                .collect();
            if !gone.is_empty() {
                tracing::warn!(room = %self.args.name, %node, members = gone.len(), "a node fell silent; dropping its reviewers");
            }
            for conn in gone {
                self.leave(conn, "disconnected").await;
            }
        }
    }

    /// Handles what another node sent the room.
    async fn remote_message(&mut self, myself: &ActorRef<RoomMsg>, msg: ToOwner) {
        if let Some(node) = msg.node() {
            self.relays_heard.insert(node.to_string(), Instant::now());
        }
        match msg {
            ToOwner::Alive { .. } => {}
            ToOwner::Join {
                node,
                conn,
                reviewer,
                since,
                epoch,
            } => {
                // A relay asks again until its welcome arrives: a repeat is already served.
                if self.remote_members.contains_key(&(node.clone(), conn)) {
                    return;
                }
                let link = Link::Remote {
                    node: node.clone(),
                    conn,
                };
                let joined = self.admit(reviewer, since, epoch.as_deref(), link);
                let frames: Vec<Bytes> = std::iter::once(joined.welcome)
                    .chain(joined.replay)
                    .collect();
                self.remote_send(|remote| remote.direct(&node, conn, &frames));
            }
            ToOwner::Leave { node, conn } => {
                if let Some(local) = self.remote_members.get(&(node, conn)).copied() {
                    self.leave(local, "disconnected").await;
                }
            }
            ToOwner::Client { node, conn, frame } => {
                let Some(local) = self.remote_members.get(&(node, conn)).copied() else {
                    return;
                };
                match protocol::parse(&frame) {
                    Ok(frame) => self.client(myself, local, frame).await,
                    Err(e) => self.send_to(local, e.frame()),
                }
            }
            ToOwner::Events { events } => {
                let events: Vec<Arc<Event>> = events.into_iter().map(Arc::new).collect();
                self.publish_events(&events).await;
            }
            ToOwner::ClaimHolder {
                node,
                query,
                review_id,
            } => {
                let holder = self.claim_holder(&review_id);
                self.remote_send(|remote| {
                    remote.send(FromOwner::Answer {
                        node,
                        query,
                        holder,
                    })
                });
            }
        }
    }

    /// Sends to the relays (when nodes share the store); counts as a sign of life.
    fn remote_send(&mut self, send: impl FnOnce(&RemoteSide)) {
        if let Some(remote) = &self.remote {
            send(remote);
            self.heard_at = Instant::now();
        }
    }

    /// Removes a member: its claims lapse, and presence updates when it was the reviewer's last
    /// connection.
    async fn leave(&mut self, conn: ConnId, reason: &str) {
        let Some(member) = self.members.remove(&conn) else {
            return;
        };
        if let Link::Remote { node, conn } = &member.link {
            self.remote_members.remove(&(node.clone(), *conn));
        }
        let held: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.claim.as_ref().is_some_and(|c| c.conn == conn))
            .map(|(id, _)| id.clone())
            .collect();
        for id in held {
            self.release(&id, &member.reviewer, reason).await;
        }
        let last = match self.presence.get_mut(&member.reviewer) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                self.presence.remove(&member.reviewer);
                true
            }
            None => false,
        };
        if last {
            self.broadcast(protocol::presence(false, &member.reviewer));
        }
    }

    /// Removes members whose buffers overflowed or closed during a fan-out (which may cause
    /// more events, hence the loop).
    async fn settle(&mut self) {
        while let Some(conn) = self.dropped.pop() {
            self.leave(conn, "disconnected").await;
        }
    }

    /// Queues a frame for one member; a full buffer kicks it with 4008. A member on another
    /// node gets it through its relay, which bounds and closes that connection itself.
    fn send_to(&mut self, conn: ConnId, frame: Bytes) {
        let Some(member) = self.members.get_mut(&conn) else {
            return;
        };
        let (tx, kick) = match &mut member.link {
            Link::Local { tx, kick, .. } => (tx, kick),
            Link::Remote { node, conn } => {
                let (node, conn) = (node.clone(), *conn);
                self.remote_send(|remote| remote.direct(&node, conn, &[frame]));
                return;
            }
        };
        match tx.try_send(frame) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                if let Some(kick) = kick.take() {
                    self.args.counters.slow_closes.inc();
                    tracing::info!(
                        room = %self.args.name,
                        reviewer = %member.reviewer,
                        "closing a slow connection (4008)"
                    );
                    let _ = kick.send(Kick {
                        code: CLOSE_TOO_SLOW,
                        reason: "too slow: outgoing buffer full; resume with since",
                    });
                }
                self.dropped.push(conn);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => self.dropped.push(conn),
        }
    }

    fn broadcast(&mut self, frame: Bytes) {
        self.broadcast_all(std::slice::from_ref(&frame));
    }

    /// Queues `frames` for every member, member by member, so each connection's writer finds
    /// all of them at once and sends them with one flush. A member that cannot take one gets
    /// none of the rest (it is kicked or gone).
    fn broadcast_all(&mut self, frames: &[Bytes]) {
        if frames.is_empty() {
            return;
        }
        let conns: Vec<ConnId> = self
            .members
            .iter()
            .filter(|(_, m)| matches!(m.link, Link::Local { .. }))
            .map(|(conn, _)| *conn)
            .collect();
        for conn in conns {
            for frame in frames {
                self.send_to(conn, frame.clone());
                if self.dropped.last() == Some(&conn) {
                    break;
                }
            }
        }
        // One message for every member on other nodes, however many there are.
        if !self.remote_members.is_empty() {
            self.remote_send(|remote| remote.frames(frames));
        }
    }

    /// Numbers and records one room event and returns its frame; the caller fans it out.
    async fn record(&mut self, name: &str, data: &Value) -> Bytes {
        self.seq += 1;
        let seq = self.seq;
        // Microseconds: the publish time is what receivers measure their lag from.
        let at = self
            .args
            .clock
            .now()
            .to_rfc3339_opts(SecondsFormat::Micros, true);
        let frame = protocol::event(seq, name, data, &at);
        let keep = self.args.settings.history;
        // Live first: resume is served from the in-memory history, and the store's copy (for
        // restarts) is written behind, in order, by the room's history writer. A crash before
        // it is written is caught at the next start (the room is still marked open).
        let shared = Bytes::from(frame.clone());
        self.history.push_back((seq, shared.clone()));
        while self.history.len() > keep {
            self.history.pop_front();
        }
        self.args.counters.events.inc();
        if let Some(writer) = &self.writer {
            writer.append(RoomEntry { seq, frame }).await;
        }
        shared
    }

    /// Numbers, records and fans out one room event.
    async fn publish(&mut self, name: &str, data: &Value) {
        let frame = self.record(name, data).await;
        self.broadcast(frame);
    }

    /// Numbers and records the room's events of one commit, then fans them out together.
    async fn publish_events(&mut self, events: &[Arc<Event>]) {
        let mut frames = Vec::with_capacity(events.len());
        for event in events {
            if let Some(frame) = self.record_event(event).await {
                frames.push(frame);
            }
        }
        self.broadcast_all(&frames);
    }

    /// Applies a committed event to the room (pending reviews) and records its room event;
    /// `None` when it is no news to the room.
    async fn record_event(&mut self, event: &Event) -> Option<Bytes> {
        let data = &event.data;
        let review_id = data["review_id"].as_str().unwrap_or_default().to_string();
        match event.event {
            EventKind::ReviewRequested => {
                if self.pending.contains_key(&review_id) {
                    return None; // already known (loaded from the store while the event was in flight)
                }
                let Value::Object(mut summary) = data.clone() else {
                    return None;
                };
                summary
                    .entry("room")
                    .or_insert_with(|| json!(self.args.name));
                let pending = PendingReview {
                    summary,
                    claim: None,
                };
                let shown = pending.summary(self.args.clock.now());
                self.pending.insert(review_id, pending);
                Some(self.record(event.event.as_str(), &shown).await)
            }
            EventKind::ReviewCompleted => {
                self.pending.remove(&review_id);
                Some(self.record(event.event.as_str(), data).await)
            }
            _ => Some(self.record(event.event.as_str(), data).await),
        }
    }

    async fn release(&mut self, review_id: &str, reviewer: &str, reason: &str) {
        let Some(pending) = self.pending.get_mut(review_id) else {
            return;
        };
        if pending.claim.take().is_none() {
            return;
        }
        let data = json!({
            "review_id": review_id,
            "case_id": pending.summary.get("case_id"),
            "reviewer": reviewer,
            "reason": reason,
        });
        self.publish("review.released", &data).await;
    }

    async fn expire_claims(&mut self) {
        let now = self.args.clock.now();
        let expired: Vec<(String, String)> = self
            .pending
            .iter()
            .filter_map(|(id, p)| {
                p.claim
                    .as_ref()
                    .filter(|c| c.expires_at <= now)
                    .map(|c| (id.clone(), c.reviewer.clone()))
            })
            .collect();
        for (id, reviewer) in expired {
            self.release(&id, &reviewer, "expired").await;
        }
    }

    async fn resync(&mut self) {
        let fresh = match load_pending(&self.args.store, &self.args.name).await {
            Ok(fresh) => fresh,
            Err(e) => {
                tracing::warn!(room = %self.args.name, error = %e, "room resync failed");
                return;
            }
        };
        let gone: Vec<String> = self
            .pending
            .keys()
            .filter(|id| !fresh.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            if let Some(p) = self.pending.remove(&id) {
                let data =
                    json!({"review_id": id, "case_id": p.summary.get("case_id"), "resync": true});
                self.publish("review.completed", &data).await;
            }
        }
        for (id, review) in fresh {
            if !self.pending.contains_key(&id) {
                let shown = review.summary(self.args.clock.now());
                self.pending.insert(id, review);
                self.publish("review.requested", &shown).await;
            }
        }
    }

    async fn client(&mut self, myself: &ActorRef<RoomMsg>, conn: ConnId, frame: ClientFrame) {
        let Some(reviewer) = self.members.get(&conn).map(|m| m.reviewer.clone()) else {
            return;
        };
        let now = self.args.clock.now();
        let id = frame.review_id.as_str().to_string();
        let reference = frame.reference.clone();
        let answer_error =
            |code: &str, message: String| protocol::error(&reference, code, &message);
        let held_by_other = self
            .pending
            .get(&id)
            .and_then(|p| p.claim_holder(now))
            .filter(|c| c.reviewer != reviewer)
            .map(|c| (c.reviewer.clone(), c.expires_at));
        if let Some((holder, until)) = &held_by_other {
            let message = format!(
                "Review {id} is claimed by {holder} until {}",
                rfc3339(*until)
            );
            self.send_to(conn, answer_error("ALREADY_CLAIMED", message));
            return;
        }
        match frame.request {
            ClientRequest::Claim => {
                let ttl = chrono::Duration::from_std(self.args.settings.claim_ttl)
                    .unwrap_or(chrono::Duration::MAX);
                let Some(pending) = self.pending.get_mut(&id) else {
                    let message = format!("No pending review {id} in room {}", self.args.name);
                    self.send_to(conn, answer_error("NOT_FOUND", message));
                    return;
                };
                let expires_at = now + ttl;
                pending.claim = Some(Claim {
                    reviewer: reviewer.clone(),
                    conn,
                    expires_at,
                });
                let data = json!({
                    "review_id": id,
                    "case_id": pending.summary.get("case_id"),
                    "reviewer": reviewer,
                    "expires_at": rfc3339(expires_at),
                });
                self.send_to(conn, protocol::ack(&reference, data.clone()));
                self.publish("review.claimed", &data).await;
            }
            ClientRequest::Release => {
                let holds = self
                    .pending
                    .get(&id)
                    .and_then(|p| p.claim_holder(now))
                    .is_some();
                if !holds {
                    let message = format!("You hold no claim on review {id}");
                    self.send_to(conn, answer_error("INVALID_STATE", message));
                    return;
                }
                self.send_to(
                    conn,
                    protocol::ack(&reference, json!({"review_id": id, "released": true})),
                );
                self.release(&id, &reviewer, "released").await;
            }
            ClientRequest::Act {
                action,
                comments,
                edited_solution,
                edit_reason,
            } => {
                let decision = ReviewDecision {
                    review_id: frame.review_id,
                    action,
                    reviewer,
                    comments,
                    edited_solution,
                    edit_reason,
                };
                let task = DecisionTask {
                    room: self.args.name.clone(),
                    store: self.args.store.clone(),
                    cases: self.args.cases.clone(),
                    timeout: self.args.settings.action_timeout(),
                };
                let myself = myself.clone();
                let metrics = self.args.metrics.clone();
                tokio::spawn(async move {
                    let frame = task.run(decision, &reference).await;
                    metrics.queued();
                    let _ = myself.cast(RoomMsg::Answer(conn, frame));
                });
            }
        }
    }
}

/// A review decision made over the socket, run outside the room's handler.
struct DecisionTask {
    room: String,
    store: SharedStore,
    cases: CaseDirectory,
    timeout: Duration,
}

impl DecisionTask {
    async fn run(self, decision: ReviewDecision, reference: &Value) -> Bytes {
        let review_id = decision.review_id.clone();
        let action = decision.action;
        // The same rules as the HTTP review endpoints: a review of another room is not ours.
        match self.store.load_review(&review_id).await {
            Ok(Some(review)) if review.room == self.room => {}
            Ok(Some(review)) => {
                let message = format!("Review {review_id} belongs to room {}", review.room);
                return protocol::error(reference, "FORBIDDEN", &message);
            }
            Ok(None) => {
                return protocol::error(reference, "NOT_FOUND", "Review not found");
            }
            Err(e) => {
                tracing::warn!(review_id = %review_id, error = %e, "loading a review for a room decision failed");
                let e = CaseError::from(e);
                return protocol::error(reference, e.code(), &e.client_message());
            }
        }
        let outcome = tokio::time::timeout(self.timeout, self.cases.review(decision)).await;
        match outcome {
            Ok(Ok(case)) => protocol::ack(
                reference,
                json!({
                    "review_id": review_id,
                    "case_id": case.case_id,
                    "action": action,
                    "status": case.status,
                }),
            ),
            Ok(Err(e)) => {
                if matches!(e, CaseError::Store(_) | CaseError::Internal) {
                    tracing::warn!(review_id = %review_id, error = %e, "a room decision failed");
                }
                protocol::error(reference, e.code(), &e.client_message())
            }
            Err(_) => protocol::error(
                reference,
                "SERVICE_UNAVAILABLE",
                "The case did not answer in time; retry shortly",
            ),
        }
    }
}

/// The gauges a stopped room no longer counts in.
fn count_stopped(state: &RoomState) {
    state
        .args
        .metrics
        .stopped(&format_args!("room:{}", state.args.name));
}

/// Appends to the room's stored history under its lease (refused once the lease is lost: the
/// history is the next owner's then).
async fn append_fenced(
    store: &SharedStore,
    node: &Cluster,
    room: &str,
    meta: &RoomMeta,
    entries: &[RoomEntry],
    keep: usize,
) -> Result<(), StoreError> {
    let fence = node.fence(&cluster::lease_name(room))?;
    store
        .room_append(room, meta, entries, keep, fence.as_ref())
        .await
}

/// Writes a room's events to the store in order, batching whatever queued up during the
/// previous write, so a slow disk delays the stored copy, never the live fan-out.
struct HistoryWriter {
    /// `None` once finishing.
    tx: Option<mpsc::Sender<RoomEntry>>,
    /// Ends with whether every append was written.
    task: tokio::task::JoinHandle<bool>,
}

impl Drop for HistoryWriter {
    /// A room that failed must not leave its writer appending behind its successor.
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HistoryWriter {
    fn start(args: &RoomArgs, epoch: String) -> Self {
        let keep = args.settings.history;
        let (tx, mut rx) = mpsc::channel::<RoomEntry>(keep.max(64));
        let store = args.store.clone();
        let room = args.name.clone();
        let node = args.cluster.clone();
        let task = tokio::spawn(async move {
            let mut batch = Vec::new();
            let mut all_written = true;
            while rx.recv_many(&mut batch, 256).await > 0 {
                let meta = RoomMeta {
                    epoch: epoch.clone(),
                    seq: batch.last().map_or(0, |e| e.seq),
                    open: true,
                };
                if let Err(e) = append_fenced(&store, &node, &room, &meta, &batch, keep).await {
                    tracing::warn!(%room, events = batch.len(), error = %e, "room history write failed");
                    all_written = false;
                }
                batch.clear();
            }
            all_written
        });
        HistoryWriter { tx: Some(tx), task }
    }

    /// Queues an event; waits only when `history` events are already waiting for the disk.
    async fn append(&self, entry: RoomEntry) {
        let Some(tx) = &self.tx else { return };
        if let Err(mpsc::error::TrySendError::Full(entry)) = tx.try_send(entry) {
            let _ = tx.send(entry).await;
        }
    }

    /// Writes everything queued and stops; true when the stored history is complete (every
    /// append written, in time), the condition for marking the room closed cleanly.
    async fn finish(mut self) -> bool {
        self.tx.take();
        match tokio::time::timeout(Duration::from_secs(10), &mut self.task).await {
            Ok(Ok(all_written)) => all_written,
            Ok(Err(_)) => false,
            Err(_) => {
                tracing::warn!("room history writer did not finish in time");
                false
            }
        }
    }
}

/// Hands other nodes' messages for this room (its `to-owner` channel) to the room, until the
/// room stops. A lost message is asked for again by its sender (a relay repeats a join until
/// its welcome arrives) or, for forwarded events, made up by a [`RoomMsg::Resync`].
async fn receive_remote(
    mut subscription: Subscription,
    room: ActorRef<RoomMsg>,
    metrics: ActorMetrics,
) {
    while let Some(item) = subscription.recv().await {
        let payload = match item {
            Received::Message(payload) => payload,
            // Events other nodes forwarded may be among the lost: read the pending reviews
            // again (what the room knows already is not repeated).
            Received::Gap => {
                metrics.queued();
                if room.cast(RoomMsg::Resync).is_err() {
                    return;
                }
                continue;
            }
        };
        match serde_json::from_slice::<ToOwner>(&payload) {
            Ok(msg) => {
                metrics.queued();
                if room.cast(RoomMsg::Remote(msg)).is_err() {
                    return;
                }
            }
            Err(e) => tracing::warn!(error = %e, "unreadable room message from another node"),
        }
    }
}
