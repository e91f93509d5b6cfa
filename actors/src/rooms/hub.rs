//! The rooms' supervisor and the handle the edge uses.
//!
//! `RoomSupervisor` owns the map `room → ReviewRoom` (rooms start on first use: a join, or an
//! event for the room) and restarts a failed room on its next use, from its stored history and
//! pending reviews. A task routes committed events from the bus to their rooms: events naming
//! a review room (`assigned_channel`), and `alert.triggered` to the ops room.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent, call_t};
use tokio::sync::broadcast::error::RecvError;

use super::room::{JoinRequest, Joined, ReviewRoom, RoomArgs, RoomInfo, RoomMsg};
use super::{RoomCounters, RoomSettings};
use crate::bus::EventBus;
use crate::case::CaseDirectory;
use crate::clock::SharedClock;
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

enum SupervisorMsg {
    Get(String, RpcReplyPort<Result<ActorRef<RoomMsg>, String>>),
    All(RpcReplyPort<Vec<ActorRef<RoomMsg>>>),
    StopAll(RpcReplyPort<()>),
}

struct RoomSupervisor;

struct SupervisorState {
    config: RoomsConfig,
    room_metrics: ActorMetrics,
    counters: Arc<RoomCounters>,
    rooms: HashMap<String, ActorRef<RoomMsg>>,
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
        Ok(SupervisorState {
            config,
            room_metrics,
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
                let args = RoomArgs {
                    name: name.clone(),
                    settings: state.config.settings.clone(),
                    store: state.config.store.clone(),
                    cases: state.config.cases.clone(),
                    clock: state.config.clock.clone(),
                    metrics: state.room_metrics.clone(),
                    counters: state.counters.clone(),
                };
                match Actor::spawn_linked(None, ReviewRoom, args, myself.get_cell()).await {
                    Ok((room, _)) => {
                        state.rooms.insert(name, room.clone());
                        let _ = reply.send(Ok(room));
                    }
                    Err(e) => {
                        tracing::error!(room = %name, error = %e, "starting a review room failed");
                        let _ = reply.send(Err(e.to_string()));
                    }
                }
            }
            SupervisorMsg::All(reply) => {
                let _ = reply.send(state.rooms.values().cloned().collect());
            }
            SupervisorMsg::StopAll(reply) => {
                for (_, room) in state.rooms.drain() {
                    let _ = room.stop_and_wait(None, Some(Duration::from_secs(5))).await;
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
        let name = state
            .rooms
            .iter()
            .find(|(_, room)| room.get_id() == id)
            .map(|(name, _)| name.clone());
        if let Some(name) = name {
            state.rooms.remove(&name);
            if let Some(error) = failure {
                tracing::error!(room = %name, %error, "review room failed; it restarts on next use");
                state.room_metrics.failed(&format_args!("room:{name}"));
                state.room_metrics.stopped(&format_args!("room:{name}"));
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
    metrics: ActorMetrics,
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
        let mut events = config.bus.subscribe();
        let settings = config.settings.clone();
        let (supervisor, _) =
            Actor::spawn(None, RoomSupervisor, (config, counters.clone())).await?;
        let hub = RoomHub {
            supervisor,
            settings,
            counters,
            metrics,
        };
        let router = hub.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(batch) => {
                        // One message per room with its events of this commit, in order, so
                        // the room fans them out together.
                        let mut by_room: Vec<(String, Vec<Arc<Event>>)> = Vec::new();
                        for event in batch.iter() {
                            let Some(room) = room_of(event, &router.settings) else {
                                continue;
                            };
                            match by_room.iter_mut().find(|(name, _)| *name == room) {
                                Some((_, events)) => events.push(event.clone()),
                                None => by_room.push((room, vec![event.clone()])),
                            }
                        }
                        for (room, events) in by_room {
                            match router.room(&room).await {
                                Ok(actor) => router.send(&actor, RoomMsg::Publish(events)),
                                Err(e) => {
                                    tracing::warn!(%room, error = %e, "room events not routed")
                                }
                            }
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "rooms lagged behind the event bus; resyncing");
                        router.counters.resyncs.inc();
                        for room in router.rooms().await {
                            router.send(&room, RoomMsg::Resync);
                        }
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
        Ok(hub)
    }

    /// The room settings in force.
    pub fn settings(&self) -> &RoomSettings {
        &self.settings
    }

    fn send(&self, room: &ActorRef<RoomMsg>, msg: RoomMsg) {
        self.metrics.queued();
        if room.cast(msg).is_err() {
            self.metrics.mailbox.dec();
        }
    }

    async fn room(&self, name: &str) -> Result<ActorRef<RoomMsg>, RoomError> {
        let name = name.to_string();
        call_t!(self.supervisor, SupervisorMsg::Get, CALL_TIMEOUT_MS, name)
            .map_err(|e| RoomError::Unavailable(e.to_string()))?
            .map_err(RoomError::Unavailable)
    }

    async fn rooms(&self) -> Vec<ActorRef<RoomMsg>> {
        call_t!(self.supervisor, SupervisorMsg::All, CALL_TIMEOUT_MS).unwrap_or_default()
    }

    /// Joins `room`: the connection becomes a member and gets its welcome and replay.
    pub async fn join(&self, room: &str, request: JoinRequest) -> Result<Membership, RoomError> {
        let actor = self.room(room).await?;
        self.metrics.queued();
        let joined = call_t!(actor, RoomMsg::Join, CALL_TIMEOUT_MS, Box::new(request))
            .map_err(|e| RoomError::Unavailable(e.to_string()))?;
        Ok(Membership {
            conn: joined.conn,
            room: actor,
            metrics: self.metrics.clone(),
            joined: Some(joined),
        })
    }

    /// Who holds the claim on `review_id` in `room`, if anyone.
    pub async fn claim_holder(
        &self,
        room: &str,
        review_id: &ReviewId,
    ) -> Result<Option<String>, RoomError> {
        let actor = self.room(room).await?;
        self.metrics.queued();
        call_t!(
            actor,
            RoomMsg::ClaimHolder,
            CALL_TIMEOUT_MS,
            review_id.clone()
        )
        .map_err(|e| RoomError::Unavailable(e.to_string()))
    }

    /// Every running room's counters.
    pub async fn info(&self) -> Vec<RoomInfo> {
        let mut out = Vec::new();
        for room in self.rooms().await {
            self.metrics.queued();
            if let Ok(info) = call_t!(room, RoomMsg::Info, CALL_TIMEOUT_MS) {
                out.push(info);
            }
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
    conn: super::room::ConnId,
    room: ActorRef<RoomMsg>,
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
        let sent = self.room.cast(RoomMsg::Client(self.conn, frame)).is_ok();
        if !sent {
            self.metrics.mailbox.dec();
        }
        sent
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.metrics.queued();
        if self.room.cast(RoomMsg::Leave(self.conn)).is_err() {
            self.metrics.mailbox.dec();
        }
    }
}
