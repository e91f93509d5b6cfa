//! The in-process event bus: committed events fan out to rooms, the dispatcher and monitors.
//!
//! Events are published only after they are durable in the outbox, so the bus may drop events
//! for a subscriber that lags ([`tokio::sync::broadcast`] semantics) without losing anything:
//! durable consumers read the outbox, live consumers resynchronise from the store.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::domain::Event;

/// Bus capacity per subscriber before it lags.
const CAPACITY: usize = 4096;

/// Cheap-clone publisher/subscriber handle.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<Event>>,
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

    /// Publishes committed events; having no subscriber is fine.
    pub fn publish(&self, events: impl IntoIterator<Item = Event>) {
        for event in events {
            let _ = self.tx.send(Arc::new(event));
        }
    }

    /// A new subscription, starting with the next published event.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}
