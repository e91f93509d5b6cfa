//! The in-process event bus: committed events fan out to rooms, the dispatcher and monitors.
//!
//! One message is the events of one commit, in order ([`Batch`]), so a subscriber can act on
//! them together: a room fans an escalation's `case.escalated` and `review.requested` out in
//! one pass, and each connection writes both at once.
//!
//! Events are published only after they are durable in the outbox, so the bus may drop events
//! for a subscriber that lags ([`tokio::sync::broadcast`] semantics) without losing anything:
//! durable consumers read the outbox, live consumers resynchronise from the store.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::domain::Event;

/// Bus capacity per subscriber (in commits) before it lags.
const CAPACITY: usize = 4096;

/// The events one commit recorded, in recording order.
pub type Batch = Arc<[Arc<Event>]>;

/// Cheap-clone publisher/subscriber handle.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Batch>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// A bus with no subscribers.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        EventBus { tx }
    }

    /// Publishes the events of one commit as one batch (nothing for none); having no
    /// subscriber is fine.
    pub fn publish(&self, events: impl IntoIterator<Item = Event>) {
        let batch: Batch = events.into_iter().map(Arc::new).collect();
        if !batch.is_empty() {
            let _ = self.tx.send(batch);
        }
    }

    /// A new subscription, starting with the next published event.
    pub fn subscribe(&self) -> broadcast::Receiver<Batch> {
        self.tx.subscribe()
    }
}
