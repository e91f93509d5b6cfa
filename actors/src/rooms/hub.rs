//! The rooms' supervisor and the handle the edge uses.
//!
//! `RoomSupervisor` owns the map `room → ReviewRoom` (rooms start on first use: a join, or an
//! event for the room) and restarts a failed room on its next use, from its stored history and
//! pending reviews. A task routes committed events from the bus to their rooms: events naming
//! a review room (`assigned_channel`), and `alert.triggered` to the ops room.
//!
//! When nodes share the store, a room runs where its lease is ([`super::cluster`]): a node
//! that takes the lease runs the `ReviewRoom`; a node whose reviewers join a room running
//! elsewhere runs a `RoomRelay` for them, and events committed here for a room running
//! elsewhere are sent to it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent, call_t};
use tokio::sync::broadcast::error::RecvError;

use super::cluster::{self, ToOwner};
use super::relay::{RelayArgs, RelayMsg, RoomRelay};
use super::room::{ConnId, JoinRequest, Joined, ReviewRoom, RoomArgs, RoomInfo, RoomMsg};
use super::{RoomCounters, RoomSettings};
use crate::bus::EventBus;
use crate::case::CaseDirectory;
use crate::clock::SharedClock;
use crate::cluster::{Acquired, Cluster, Publisher};
use crate::domain::{Event, EventKind, ReviewId};
use crate::store::SharedStore;
use crate::telemetry::{ActorMetrics, Telemetry};

/// How long the edge waits for a room to answer.
const CALL_TIMEOUT_MS: u64 = 10_000;

/// What rooms are built from.
#[derive(Clone)]
pub struct RoomsConfig {
    pub settings: RoomSettings,
    pub store: SharedStore,
    pub cluster: Cluster,
    pub cases: CaseDirectory,
    pub clock: SharedClock,
    pub bus: EventBus,
    pub telemetry: Arc<Telemetry>,
}

/// Errors the edge can meet talking to rooms.
#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    #[error("the room could not be started: {0}")]
    Unavailable(String),
}

/// A room as this node has it: running here, or relayed to the node running it.
#[derive(Clone)]
enum RoomRef {
    Owner(ActorRef<RoomMsg>),
    Relay(ActorRef<RelayMsg>),
}

impl RoomRef {
    fn id(&self) -> ractor::ActorId {
        match self {
            RoomRef::Owner(room) => room.get_id(),
            RoomRef::Relay(relay) => relay.get_id(),
        }
    }

    fn stop(&self) {
        match self {
            RoomRef::Owner(room) => room.stop(None),
            RoomRef::Relay(relay) => relay.stop(None),
        }
    }
}

enum SupervisorMsg {
    /// The room for a joining reviewer (or a claim question): running here or relayed.
    Get(String, RpcReplyPort<Result<RoomRef, String>>),
    /// The room running here for an event, started here if no node runs it; `None` when
    /// another node runs it.
    Owner(
        String,
        RpcReplyPort<Result<Option<ActorRef<RoomMsg>>, String>>,
    ),
    All(RpcReplyPort<Vec<RoomRef>>),
    /// The room's lease was lost: stop running it here.
    LeaseLost(String),
    StopAll(RpcReplyPort<()>),
}

struct RoomSupervisor;

struct SupervisorState {
    config: RoomsConfig,
    room_metrics: ActorMetrics,
    relay_metrics: ActorMetrics,
    counters: Arc<RoomCounters>,
    rooms: HashMap<String, RoomRef>,
}

impl SupervisorState {
    async fn start_owner(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        name: &str,
    ) -> Result<ActorRef<RoomMsg>, String> {
        let args = RoomArgs {
            name: name.to_string(),
            settings: self.config.settings.clone(),
            store: self.config.store.clone(),
            cluster: self.config.cluster.clone(),
            cases: self.config.cases.clone(),
            clock: self.config.clock.clone(),
            metrics: self.room_metrics.clone(),
            counters: self.counters.clone(),
        };
        match Actor::spawn_linked(None, ReviewRoom, args, myself.get_cell()).await {
            Ok((room, _)) => {
                self.rooms
                    .insert(name.to_string(), RoomRef::Owner(room.clone()));
                Ok(room)
            }
            Err(e) => {
                tracing::error!(room = %name, error = %e, "starting a review room failed");
                self.config
                    .cluster
                    .release(&cluster::lease_name(name))
                    .await;
                Err(e.to_string())
            }
        }
    }

    async fn start_relay(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        name: &str,
    ) -> Result<RoomRef, String> {
        let args = RelayArgs {
            name: name.to_string(),
            settings: self.config.settings.clone(),
            cluster: self.config.cluster.clone(),
            metrics: self.relay_metrics.clone(),
            counters: self.counters.clone(),
        };
        let (relay, _) = Actor::spawn_linked(None, RoomRelay, args, myself.get_cell())
            .await
            .map_err(|e| e.to_string())?;
        let room = RoomRef::Relay(relay);
        self.rooms.insert(name.to_string(), room.clone());
        Ok(room)
    }

    /// Whether this node may run `name`: always when single; when shared, if it takes the
    /// room's lease.
    async fn may_run(&self, name: &str) -> Result<bool, String> {
        match self
            .config
            .cluster
            .acquire(&cluster::lease_name(name))
            .await
        {
            Ok(Acquired::Taken) => Ok(true),
            Ok(Acquired::HeldBy(_)) => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Actor for RoomSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = (RoomsConfig, Arc<RoomCounters>);

    async fn pre_start(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        (config, counters): Self::Arguments,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let room_metrics = config.telemetry.actor("review_room");
        let relay_metrics = config.telemetry.actor("room_relay");
        Ok(SupervisorState {
            config,
            room_metrics,
            relay_metrics,
            counters,
            rooms: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Get(name, reply) => {
                if let Some(room) = state.rooms.get(&name) {
                    let _ = reply.send(Ok(room.clone()));
                    return Ok(());
                }
                let room = match state.may_run(&name).await {
                    Ok(true) => state.start_owner(&myself, &name).await.map(RoomRef::Owner),
                    Ok(false) => state.start_relay(&myself, &name).await,
                    Err(e) => Err(e),
                };
                let _ = reply.send(room);
            }
            SupervisorMsg::Owner(name, reply) => {
                let answer = match state.rooms.get(&name) {
                    Some(RoomRef::Owner(room)) => Ok(Some(room.clone())),
                    Some(RoomRef::Relay(_)) => Ok(None),
                    None => match state.may_run(&name).await {
                        Ok(true) => state.start_owner(&myself, &name).await.map(Some),
                        Ok(false) => Ok(None),
                        Err(e) => Err(e),
                    },
                };
                let _ = reply.send(answer);
            }
            SupervisorMsg::All(reply) => {
                let _ = reply.send(state.rooms.values().cloned().collect());
            }
            SupervisorMsg::LeaseLost(name) => {
                if let Some(room @ RoomRef::Owner(_)) = state.rooms.get(&name) {
                    tracing::warn!(room = %name, "room lease lost; another node may run it now");
                    room.stop();
                }
            }
            SupervisorMsg::StopAll(reply) => {
                for (_, room) in state.rooms.drain() {
                    let _ = match room {
                        RoomRef::Owner(room) => {
                            room.stop_and_wait(None, Some(Duration::from_secs(5))).await
                        }
                        RoomRef::Relay(relay) => {
                            relay
                                .stop_and_wait(None, Some(Duration::from_secs(5)))
                                .await
                        }
                    };
                }
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        // A room that stopped or failed leaves the map; its next use starts it again from the
        // store. Its connections see their channel close and reconnect with `since`.
        let (cell, failure) = match &event {
            SupervisionEvent::ActorTerminated(cell, _, _) => (cell, None),
            SupervisionEvent::ActorFailed(cell, e) => (cell, Some(e.to_string())),
            _ => return Ok(()),
        };
        let id = cell.get_id();
        let found = state
            .rooms
            .iter()
            .find(|(_, room)| room.id() == id)
            .map(|(name, room)| (name.clone(), matches!(room, RoomRef::Owner(_))));
        if let Some((name, owner)) = found {
            state.rooms.remove(&name);
            if let Some(error) = failure {
                tracing::error!(room = %name, %error, "review room failed; it restarts on next use");
                let metrics = if owner {
                    &state.room_metrics
                } else {
                    &state.relay_metrics
                };
                metrics.failed(&format_args!("room:{name}"));
                metrics.stopped(&format_args!("room:{name}"));
                if owner {
                    // A failed room did not give its lease back.
                    state
                        .config
                        .cluster
                        .release(&cluster::lease_name(&name))
                        .await;
                }
            }
        }
        Ok(())
    }
}

/// The edge's handle on the rooms. Cheap to clone.
#[derive(Clone)]
pub struct RoomHub {
    supervisor: ActorRef<SupervisorMsg>,
    settings: RoomSettings,
    counters: Arc<RoomCounters>,
    /// Of the rooms this node runs, and of its relays (each counts its own mailbox).
    metrics: ActorMetrics,
    relay_metrics: ActorMetrics,
}

impl std::fmt::Debug for RoomHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomHub").finish_non_exhaustive()
    }
}

/// The room an event belongs to, if any.
fn room_of(event: &Event, settings: &RoomSettings) -> Option<String> {
    if event.event == EventKind::AlertTriggered {
        return Some(settings.ops_room.clone());
    }
    match event.event {
        EventKind::ReviewRequested
        | EventKind::ReviewCompleted
        | EventKind::CaseUpdated
        | EventKind::CaseEscalated => event.data["assigned_channel"]
            .as_str()
            .map(|c| c.trim_start_matches('#').to_string())
            .filter(|room| crate::routing::valid_room(room)),
        _ => None,
    }
}

impl RoomHub {
    /// Starts the supervisor and the task routing bus events to rooms.
    pub async fn start(config: RoomsConfig) -> Result<Self, ractor::SpawnErr> {
        let counters = Arc::new(RoomCounters::register(&config.telemetry));
        let metrics = config.telemetry.actor("review_room");
        let relay_metrics = config.telemetry.actor("room_relay");
        let mut events = config.bus.subscribe();
        let mut lost = config.cluster.lost();
        let cluster = config.cluster.clone();
        let settings = config.settings.clone();
        let (supervisor, _) =
            Actor::spawn(None, RoomSupervisor, (config, counters.clone())).await?;
        let hub = RoomHub {
            supervisor,
            settings,
            counters,
            metrics,
            relay_metrics,
        };
        let router = hub.clone();
        tokio::spawn(async move {
            // Events for rooms running on other nodes, one ordered publisher per room.
            let mut elsewhere: HashMap<String, Publisher> = HashMap::new();
            loop {
                match events.recv().await {
                    Ok(batch) => router.route(&batch, &cluster, &mut elsewhere).await,
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "rooms lagged behind the event bus; resyncing");
                        router.counters.resyncs.inc();
                        for room in router.rooms().await {
                            if let RoomRef::Owner(room) = room {
                                router.send(&room, RoomMsg::Resync);
                            }
                        }
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
        let supervisor = hub.supervisor.clone();
        tokio::spawn(async move {
            loop {
                match lost.recv().await {
                    Ok(name) => {
                        if let Some(room) = name.strip_prefix("room:")
                            && supervisor
                                .cast(SupervisorMsg::LeaseLost(room.to_string()))
                                .is_err()
                        {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                }
            }
        });
        Ok(hub)
    }

    /// Hands one commit's events to their rooms: one message per room, in order, so a room
    /// fans them out together; a room running on another node gets them over its channel.
    async fn route(
        &self,
        batch: &[Arc<Event>],
        cluster: &Cluster,
        elsewhere: &mut HashMap<String, Publisher>,
    ) {
        let mut by_room: Vec<(String, Vec<Arc<Event>>)> = Vec::new();
        for event in batch {
            let Some(room) = room_of(event, &self.settings) else {
                continue;
            };
            match by_room.iter_mut().find(|(name, _)| *name == room) {
                Some((_, events)) => events.push(event.clone()),
                None => by_room.push((room, vec![event.clone()])),
            }
        }
        for (room, events) in by_room {
            let owner = call_t!(
                self.supervisor,
                SupervisorMsg::Owner,
                CALL_TIMEOUT_MS,
                room.clone()
            );
            match owner {
                Ok(Ok(Some(actor))) => self.send(&actor, RoomMsg::Publish(events)),
                Ok(Ok(None)) => {
                    let msg = ToOwner::Events {
                        events: events.iter().map(|e| (**e).clone()).collect(),
                    };
                    let publisher = elsewhere
                        .entry(room.clone())
                        .or_insert_with(|| cluster.publisher(&cluster::to_owner(&room), 1024));
                    let sent = serde_json::to_vec(&msg).is_ok_and(|p| publisher.send(p));
                    if !sent {
                        tracing::warn!(%room, "room events for another node dropped");
                    }
                }
                Ok(Err(e)) => tracing::warn!(%room, error = %e, "room events not routed"),
                Err(e) => tracing::warn!(%room, error = %e, "room events not routed"),
            }
        }
    }

    /// The room settings in force.
    pub fn settings(&self) -> &RoomSettings {
        &self.settings
    }

    /// The metrics of the actor behind `room` (its mailbox counts what is sent to it).
    fn metrics_of(&self, room: &RoomRef) -> &ActorMetrics {
        match room {
            RoomRef::Owner(_) => &self.metrics,
            RoomRef::Relay(_) => &self.relay_metrics,
        }
    }

    fn send(&self, room: &ActorRef<RoomMsg>, msg: RoomMsg) {
        self.metrics.queued();
        if room.cast(msg).is_err() {
            self.metrics.mailbox.dec();
        }
    }

    async fn room(&self, name: &str) -> Result<RoomRef, RoomError> {
        let name = name.to_string();
        call_t!(self.supervisor, SupervisorMsg::Get, CALL_TIMEOUT_MS, name)
            .map_err(|e| RoomError::Unavailable(e.to_string()))?
            .map_err(RoomError::Unavailable)
    }

    async fn rooms(&self) -> Vec<RoomRef> {
        call_t!(self.supervisor, SupervisorMsg::All, CALL_TIMEOUT_MS).unwrap_or_default()
    }

    /// Joins `room`: the connection becomes a member and gets its welcome and replay.
    pub async fn join(&self, room: &str, request: JoinRequest) -> Result<Membership, RoomError> {
        let target = self.room(room).await?;
        let metrics = self.metrics_of(&target).clone();
        metrics.queued();
        let unavailable = |e: String| RoomError::Unavailable(e);
        let joined = match &target {
            RoomRef::Owner(actor) => {
                call_t!(actor, RoomMsg::Join, CALL_TIMEOUT_MS, Box::new(request))
                    .map_err(|e| unavailable(e.to_string()))?
            }
            RoomRef::Relay(relay) => {
                call_t!(relay, RelayMsg::Join, CALL_TIMEOUT_MS, Box::new(request))
                    .map_err(|e| unavailable(e.to_string()))?
                    .map_err(unavailable)?
            }
        };
        Ok(Membership {
            conn: joined.conn,
            room: target,
            metrics,
            joined: Some(joined),
        })
    }

    /// Who holds the claim on `review_id` in `room`, if anyone.
    pub async fn claim_holder(
        &self,
        room: &str,
        review_id: &ReviewId,
    ) -> Result<Option<String>, RoomError> {
        let target = self.room(room).await?;
        self.metrics_of(&target).queued();
        let unavailable = |e: String| RoomError::Unavailable(e);
        match &target {
            RoomRef::Owner(actor) => call_t!(
                actor,
                RoomMsg::ClaimHolder,
                CALL_TIMEOUT_MS,
                review_id.clone()
            )
            .map_err(|e| unavailable(e.to_string())),
            RoomRef::Relay(relay) => call_t!(
                relay,
                RelayMsg::ClaimHolder,
                CALL_TIMEOUT_MS,
                review_id.clone()
            )
            .map_err(|e| unavailable(e.to_string()))?
            .map_err(unavailable),
        }
    }

    /// Every room's counters on this node (rooms it runs, and rooms it relays).
    pub async fn info(&self) -> Vec<RoomInfo> {
        let mut out = Vec::new();
        for room in self.rooms().await {
            self.metrics_of(&room).queued();
            let info = match &room {
                RoomRef::Owner(actor) => call_t!(actor, RoomMsg::Info, CALL_TIMEOUT_MS).ok(),
                RoomRef::Relay(relay) => call_t!(relay, RelayMsg::Info, CALL_TIMEOUT_MS).ok(),
            };
            out.extend(info);
        }
        out.sort_by(|a, b| a.room.cmp(&b.room));
        out
    }

    /// Stops every room and the supervisor, waiting for them.
    pub async fn shutdown(&self) {
        let _ = call_t!(self.supervisor, SupervisorMsg::StopAll, CALL_TIMEOUT_MS);
        let _ = self
            .supervisor
            .stop_and_wait(None, Some(Duration::from_secs(5)))
            .await;
    }
}

/// A connection's place in a room. Dropping it leaves the room (claims lapse, presence
/// updates), whatever ended the connection.
pub struct Membership {
    conn: ConnId,
    room: RoomRef,
    metrics: ActorMetrics,
    joined: Option<Joined>,
}

impl Membership {
    /// The welcome and the replayed events, once.
    pub fn take_joined(&mut self) -> Option<Joined> {
        self.joined.take()
    }

    /// Hands a reviewer's frame to the room.
    pub fn client(&self, frame: super::protocol::ClientFrame) -> bool {
        self.metrics.queued();
        let sent = match &self.room {
            RoomRef::Owner(room) => room.cast(RoomMsg::Client(self.conn, frame)).is_ok(),
            RoomRef::Relay(relay) => relay.cast(RelayMsg::Client(self.conn, frame)).is_ok(),
        };
        if !sent {
            self.metrics.mailbox.dec();
        }
        sent
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.metrics.queued();
        let sent = match &self.room {
            RoomRef::Owner(room) => room.cast(RoomMsg::Leave(self.conn)).is_ok(),
            RoomRef::Relay(relay) => relay.cast(RelayMsg::Leave(self.conn)).is_ok(),
        };
        if !sent {
            self.metrics.mailbox.dec();
        }
    }
}
