//! `RoomRelay`: a room's stand-in on a node that does not run it ([`super::cluster`] explains
//! the arrangement). It keeps this node's connections to the room and nothing else: the owner
//! numbers, welcomes, claims and decides; the relay forwards what its reviewers send and fans
//! out what the owner sends, closing a connection that reads too slowly (4008) as the room
//! would. When it can no longer promise a gapless stream (a skipped message, another owner, a
//! silent owner) it closes its connections with 1012 and stops; reviewers resume with `since`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::{mpsc, oneshot};

use super::cluster::{self, Envelope, FromOwner, OWNER_SILENCE, ToOwner};
use super::protocol::{CLOSE_TOO_SLOW, ClientFrame};
use super::room::{ConnId, JoinRequest, Joined, Kick, RoomInfo};
use super::{Counted, RoomCounters, RoomSettings};
use crate::cluster::link::Received;
use crate::cluster::{Cluster, Publisher};
use crate::domain::ReviewId;
use crate::telemetry::ActorMetrics;

/// Close code when a relay hands its connections back (the room moved, or its stream broke).
pub const CLOSE_RESTART: u16 = 1012;
/// How often a join not yet welcomed is asked again, and how long it may take in all.
const JOIN_RETRY: Duration = Duration::from_millis(500);
const JOIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a claim question may wait for the owner.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// A relay with no connection and no question stops after this long.
const IDLE: Duration = Duration::from_secs(30);
/// How often the relay looks at its timers.
const TICK: Duration = Duration::from_millis(250);

/// Messages of a relay.
#[derive(Debug)]
pub enum RelayMsg {
    Join(Box<JoinRequest>, RpcReplyPort<Result<Joined, String>>),
    Leave(ConnId),
    Client(ConnId, ClientFrame),
    /// What arrived on the owner's channel.
    FromOwner(Received),
    /// Who holds the claim on a review, asked of the owner.
    ClaimHolder(ReviewId, ClaimReply),
    Tick,
    Info(RpcReplyPort<RoomInfo>),
}

/// What a relay needs.
#[derive(Clone)]
pub struct RelayArgs {
    pub name: String,
    pub settings: RoomSettings,
    pub cluster: Cluster,
    pub metrics: ActorMetrics,
    pub counters: std::sync::Arc<RoomCounters>,
}

pub struct RoomRelay;

/// The answer port of a claim question.
type ClaimReply = RpcReplyPort<Result<Option<String>, String>>;

/// A join waiting for its welcome.
struct Joining {
    reply: RpcReplyPort<Result<Joined, String>>,
    since: Option<u64>,
    epoch: Option<String>,
    started: Instant,
    asked: Instant,
}

struct Member {
    reviewer: String,
    tx: mpsc::Sender<Bytes>,
    kick: Option<oneshot::Sender<Kick>>,
    /// `Some` until the owner's welcome arrived.
    joining: Option<Joining>,
    _counted: Counted,
}

pub struct RelayState {
    args: RelayArgs,
    members: HashMap<ConnId, Member>,
    next_conn: ConnId,
    /// The owner whose numbered stream this relay follows, and the last number seen.
    owner: Option<String>,
    last_n: u64,
    heard: Instant,
    /// Claim questions waiting for the owner, with when they were asked.
    queries: HashMap<u64, (ClaimReply, Instant)>,
    next_query: u64,
    idle_since: Instant,
    inbound: Option<tokio::task::JoinHandle<()>>,
    /// To the owner, in order (a join must not overtake its own leave).
    out: Publisher,
    /// When this relay last told the owner it is alive.
    said_alive: Instant,
}

impl Actor for RoomRelay {
    type Msg = RelayMsg;
    type State = RelayState;
    type Arguments = RelayArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<RelayMsg>,
        args: RelayArgs,
    ) -> Result<RelayState, ActorProcessingErr> {
        let mut subscription = args
            .cluster
            .subscribe(&cluster::from_owner(&args.name))
            .await
            .ok_or("a relay needs a shared store")?;
        let feed = myself.clone();
        let metrics = args.metrics.clone();
        let inbound = tokio::spawn(async move {
            while let Some(item) = subscription.recv().await {
                metrics.queued();
                if feed.cast(RelayMsg::FromOwner(item)).is_err() {
                    return;
                }
            }
        });
        let ticker = myself.clone();
        let tick_metrics = args.metrics.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(TICK);
            loop {
                interval.tick().await;
                tick_metrics.queued();
                if ticker.cast(RelayMsg::Tick).is_err() {
                    return;
                }
            }
        });
        args.metrics.spawned(&format_args!("relay:{}", args.name));
        let args_out = args.cluster.publisher(&cluster::to_owner(&args.name), 4096);
        Ok(RelayState {
            args,
            members: HashMap::new(),
            next_conn: 1,
            owner: None,
            last_n: 0,
            heard: Instant::now(),
            queries: HashMap::new(),
            next_query: 1,
            idle_since: Instant::now(),
            inbound: Some(inbound),
            out: args_out,
            said_alive: Instant::now(),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<RelayMsg>,
        state: &mut RelayState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(inbound) = state.inbound.take() {
            inbound.abort();
        }
        state.hand_back("relay stopped; resume with since");
        state
            .args
            .metrics
            .stopped(&format_args!("relay:{}", state.args.name));
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<RelayMsg>,
        msg: RelayMsg,
        state: &mut RelayState,
    ) -> Result<(), ActorProcessingErr> {
        let started = Instant::now();
        state.args.metrics.mailbox.dec();
        match msg {
            RelayMsg::Join(request, reply) => state.join(*request, reply),
            RelayMsg::Leave(conn) => state.leave(conn),
            RelayMsg::Client(conn, frame) => {
                if state
                    .members
                    .get(&conn)
                    .is_some_and(|m| m.joining.is_none())
                {
                    state.to_owner(ToOwner::Client {
                        node: state.node(),
                        conn,
                        frame: frame.to_text(),
                    });
                }
            }
            RelayMsg::FromOwner(Received::Gap) => {
                state.reset(&myself, "messages from the room's node were lost");
            }
            RelayMsg::FromOwner(Received::Message(payload)) => {
                match serde_json::from_slice::<Envelope>(&payload) {
                    Ok(envelope) => state.follow(&myself, envelope),
                    Err(e) => tracing::warn!(error = %e, "unreadable room message from its node"),
                }
            }
            RelayMsg::ClaimHolder(review_id, reply) => {
                let query = state.next_query;
                state.next_query += 1;
                state.queries.insert(query, (reply, Instant::now()));
                state.to_owner(ToOwner::ClaimHolder {
                    node: state.node(),
                    query,
                    review_id: review_id.as_str().to_string(),
                });
            }
            RelayMsg::Tick => state.tick(&myself),
            RelayMsg::Info(reply) => {
                let _ = reply.send(state.info());
            }
        }
        state.args.metrics.handled(started.elapsed());
        Ok(())
    }
}

impl RelayState {
    fn node(&self) -> String {
        self.args.cluster.node().to_string()
    }

    fn to_owner(&self, msg: ToOwner) {
        let sent = serde_json::to_vec(&msg).is_ok_and(|payload| self.out.send(payload));
        if !sent {
            tracing::warn!(room = %self.args.name, "a room message to its node was dropped");
        }
    }

    fn join(&mut self, request: JoinRequest, reply: RpcReplyPort<Result<Joined, String>>) {
        let conn = self.next_conn;
        self.next_conn += 1;
        let now = Instant::now();
        let joining = Joining {
            reply,
            since: request.since,
            epoch: request.epoch,
            started: now,
            asked: now,
        };
        self.ask_to_join(conn, &request.reviewer, &joining);
        self.members.insert(
            conn,
            Member {
                reviewer: request.reviewer,
                tx: request.tx,
                kick: Some(request.kick),
                joining: Some(joining),
                _counted: Counted::new(&self.args.counters.connections),
            },
        );
    }

    fn ask_to_join(&self, conn: ConnId, reviewer: &str, joining: &Joining) {
        self.to_owner(ToOwner::Join {
            node: self.node(),
            conn,
            reviewer: reviewer.to_string(),
            since: joining.since,
            epoch: joining.epoch.clone(),
        });
    }

    fn leave(&mut self, conn: ConnId) {
        if self.members.remove(&conn).is_some() {
            self.to_owner(ToOwner::Leave {
                node: self.node(),
                conn,
            });
        }
        if self.members.is_empty() {
            self.idle_since = Instant::now();
        }
    }

    /// Queues a frame for a welcomed member; a full buffer closes it with 4008 (it resumes
    /// with `since`) and tells the owner it left.
    fn send(&mut self, conn: ConnId, frame: Bytes) -> bool {
        let Some(member) = self.members.get_mut(&conn) else {
            return false;
        };
        match member.tx.try_send(frame) {
            Ok(()) => true,
            Err(full_or_closed) => {
                if matches!(full_or_closed, mpsc::error::TrySendError::Full(_))
                    && let Some(kick) = member.kick.take()
                {
                    self.args.counters.slow_closes.inc();
                    let _ = kick.send(Kick {
                        code: CLOSE_TOO_SLOW,
                        reason: "too slow: outgoing buffer full; resume with since",
                    });
                }
                self.leave(conn);
                false
            }
        }
    }

    fn follow(&mut self, myself: &ActorRef<RelayMsg>, envelope: Envelope) {
        match &self.owner {
            Some(owner) if *owner == envelope.owner => {
                if envelope.n != self.last_n + 1 {
                    self.reset(myself, "a message from the room's node was lost");
                    return;
                }
            }
            Some(_) => {
                self.reset(myself, "another node runs the room now");
                return;
            }
            // The first message heard sets where this relay's stream starts.
            None => self.owner = Some(envelope.owner.clone()),
        }
        self.last_n = envelope.n;
        self.heard = Instant::now();
        match envelope.msg {
            FromOwner::Frames { frames } => {
                let welcomed: Vec<ConnId> = self
                    .members
                    .iter()
                    .filter(|(_, m)| m.joining.is_none())
                    .map(|(conn, _)| *conn)
                    .collect();
                let frames: Vec<Bytes> = frames.into_iter().map(Bytes::from).collect();
                for conn in welcomed {
                    for frame in &frames {
                        if !self.send(conn, frame.clone()) {
                            break;
                        }
                    }
                }
            }
            FromOwner::Direct { node, conn, frames } if node == self.args.cluster.node() => {
                let Some(member) = self.members.get_mut(&conn) else {
                    // It left before its welcome came: the owner must forget it too.
                    self.to_owner(ToOwner::Leave {
                        node: self.node(),
                        conn,
                    });
                    return;
                };
                let mut frames = frames.into_iter().map(Bytes::from);
                match member.joining.take() {
                    Some(joining) => {
                        let Some(welcome) = frames.next() else { return };
                        let _ = joining.reply.send(Ok(Joined {
                            conn,
                            welcome,
                            replay: frames.collect(),
                        }));
                    }
                    None => {
                        for frame in frames {
                            if !self.send(conn, frame) {
                                break;
                            }
                        }
                    }
                }
            }
            FromOwner::Answer {
                node,
                query,
                holder,
            } if node == self.args.cluster.node() => {
                if let Some((reply, _)) = self.queries.remove(&query) {
                    let _ = reply.send(Ok(holder));
                }
            }
            FromOwner::Closing => self.reset(myself, "the room's node stopped running it"),
            FromOwner::Direct { .. } | FromOwner::Answer { .. } | FromOwner::Heartbeat => {}
        }
    }

    fn tick(&mut self, myself: &ActorRef<RelayMsg>) {
        let now = Instant::now();
        let mut expired = Vec::new();
        let mut ask = Vec::new();
        for (conn, member) in &mut self.members {
            if let Some(joining) = &mut member.joining {
                if now.duration_since(joining.started) >= JOIN_TIMEOUT {
                    expired.push(*conn);
                } else if now.duration_since(joining.asked) >= JOIN_RETRY {
                    joining.asked = now;
                    ask.push(*conn);
                }
            }
        }
        for conn in ask {
            if let Some(member) = self.members.get(&conn)
                && let Some(joining) = &member.joining
            {
                self.ask_to_join(conn, &member.reviewer, joining);
            }
        }
        for conn in expired {
            if let Some(member) = self.members.remove(&conn) {
                if let Some(joining) = member.joining {
                    let _ = joining
                        .reply
                        .send(Err("the room's node did not answer".into()));
                }
                // The owner may have admitted it and only its welcome was lost.
                self.to_owner_leave(conn);
            }
        }
        let timed_out: Vec<u64> = self
            .queries
            .iter()
            .filter(|(_, (_, asked))| now.duration_since(*asked) >= QUERY_TIMEOUT)
            .map(|(query, _)| *query)
            .collect();
        for query in timed_out {
            if let Some((reply, _)) = self.queries.remove(&query) {
                let _ = reply.send(Err("the room's node did not answer".into()));
            }
        }
        let welcomed = self.members.values().any(|m| m.joining.is_none());
        if welcomed && now.duration_since(self.said_alive) >= cluster::HEARTBEAT {
            self.said_alive = now;
            self.to_owner(ToOwner::Alive { node: self.node() });
        }
        if welcomed && now.duration_since(self.heard) >= OWNER_SILENCE {
            self.reset(myself, "the room's node fell silent");
        } else if self.members.is_empty()
            && self.queries.is_empty()
            && now.duration_since(self.idle_since) >= IDLE
        {
            myself.stop(Some("idle".into()));
        }
    }

    /// Gives up on following the owner: every connection is closed (1012; it resumes with
    /// `since` wherever the room runs next), and the relay stops, so the next join asks anew
    /// which node runs the room.
    fn reset(&mut self, myself: &ActorRef<RelayMsg>, why: &str) {
        tracing::info!(room = %self.args.name, reason = why, "room relay resetting its connections");
        self.hand_back("the room moved; resume with since");
        myself.stop(Some(why.to_string()));
    }

    fn hand_back(&mut self, reason: &'static str) {
        let members: Vec<(ConnId, Member)> = self.members.drain().collect();
        for (conn, member) in members {
            match member.joining {
                Some(joining) => {
                    let _ = joining.reply.send(Err(reason.into()));
                }
                None => {
                    if let Some(kick) = member.kick {
                        let _ = kick.send(Kick {
                            code: CLOSE_RESTART,
                            reason,
                        });
                    }
                }
            }
            // The owner forgets it too, if it still runs the room (a member still joining may
            // have been admitted there already).
            self.to_owner_leave(conn);
        }
        for (_, (reply, _)) in self.queries.drain() {
            let _ = reply.send(Err(reason.into()));
        }
    }

    fn to_owner_leave(&self, conn: ConnId) {
        self.to_owner(ToOwner::Leave {
            node: self.node(),
            conn,
        });
    }

    fn info(&self) -> RoomInfo {
        let mut reviewers: Vec<String> =
            self.members.values().map(|m| m.reviewer.clone()).collect();
        reviewers.sort();
        reviewers.dedup();
        RoomInfo {
            room: self.args.name.clone(),
            epoch: String::new(),
            seq: 0,
            connections: self.members.len(),
            reviewers,
            pending: 0,
            claims: 0,
            relay: true,
        }
    }
}
