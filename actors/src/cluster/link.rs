//! The node's one pub/sub connection to Redis.
//!
//! Channels are subscribed on demand, each by any number of [`Subscription`]s with a bounded
//! queue. Pub/sub delivers at most once, so every subscriber is told when it may have missed
//! messages ([`Received::Gap`]): after the connection was lost and re-established, or when its
//! own queue was full. What a subscriber does about a gap is its own business (a room relay
//! resets its connections; a case release request is simply asked again by its sender).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};

/// Messages queued per subscription before it is told it missed some.
const QUEUE: usize = 1024;
/// Reconnect back-off bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// What a subscription receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// One published message's payload.
    Message(Bytes),
    /// Messages may have been lost since the last one received.
    Gap,
}

/// A channel subscription; dropping it unsubscribes.
pub struct Subscription {
    rx: mpsc::Receiver<Received>,
    id: u64,
    channel: String,
    link: Link,
}

impl Subscription {
    /// The next message or gap; `None` once the link has stopped.
    pub async fn recv(&mut self) -> Option<Received> {
        self.rx.recv().await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.link.tx.send(Command::Unsubscribe(
            std::mem::take(&mut self.channel),
            self.id,
        ));
    }
}

enum Command {
    Subscribe {
        channel: String,
        id: u64,
        tx: mpsc::Sender<Received>,
        /// Answered once the server confirmed the subscription.
        ready: oneshot::Sender<()>,
    },
    Unsubscribe(String, u64),
}

/// Handle on the link task. Cheap to clone.
#[derive(Clone)]
pub struct Link {
    tx: mpsc::UnboundedSender<Command>,
    next_id: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").finish_non_exhaustive()
    }
}

/// A subscriber as the task sees it.
struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Received>,
    /// A message was dropped for it: it gets a gap before the next one.
    lagged: bool,
}

impl Subscriber {
    fn offer(&mut self, item: Received) {
        if self.lagged {
            match self.tx.try_send(Received::Gap) {
                Ok(()) => self.lagged = false,
                Err(_) => return,
            }
        }
        if self.tx.try_send(item).is_err() {
            self.lagged = true;
        }
    }
}

impl Link {
    /// Starts the task; it connects (and reconnects) by itself.
    pub fn start(client: redis::Client, timeout: Duration) -> Link {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(client, timeout, rx));
        Link {
            tx,
            next_id: Default::default(),
        }
    }

    /// Subscribes to `channel`; returns once the server confirmed it (messages published after
    /// that are received), or after `wait` with the subscription still pending (it takes
    /// effect once the link is connected again, announced by a gap).
    pub async fn subscribe(&self, channel: &str, wait: Duration) -> Subscription {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (ready, confirmed) = oneshot::channel();
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = self.tx.send(Command::Subscribe {
            channel: channel.to_string(),
            id,
            tx,
            ready,
        });
        let _ = tokio::time::timeout(wait, confirmed).await;
        Subscription {
            rx,
            id,
            channel: channel.to_string(),
            link: self.clone(),
        }
    }
}

async fn run(
    client: redis::Client,
    timeout: Duration,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut channels: HashMap<String, Vec<Subscriber>> = HashMap::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    let mut backoff = BACKOFF_MIN;
    let mut first = true;
    loop {
        let connected = tokio::time::timeout(timeout, client.get_async_pubsub()).await;
        let Ok(Ok(pubsub)) = connected else {
            if !pause(backoff, &mut commands, &mut channels, &mut waiting).await {
                return;
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
            continue;
        };
        let (mut sink, mut stream) = pubsub.split();
        let names: Vec<String> = channels.keys().cloned().collect();
        if !names.is_empty() && sink.subscribe(&names).await.is_err() {
            tracing::warn!("cluster pub/sub could not subscribe; retrying");
            if !pause(backoff, &mut commands, &mut channels, &mut waiting).await {
                return;
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
            continue;
        }
        let up_since = tokio::time::Instant::now();
        for ready in waiting.drain(..) {
            let _ = ready.send(());
        }
        if !first {
            tracing::info!("cluster pub/sub reconnected");
            for subscriber in channels.values_mut().flatten() {
                subscriber.offer(Received::Gap);
            }
        }
        first = false;
        loop {
            tokio::select! {
                command = commands.recv() => {
                    let Some(command) = command else { return };
                    let outcome = match command {
                        Command::Subscribe { channel, id, tx, ready } => {
                            let new = !channels.contains_key(&channel);
                            channels.entry(channel.clone()).or_default().push(Subscriber { id, tx, lagged: false });
                            let done = if new { sink.subscribe(&channel).await } else { Ok(()) };
                            match done {
                                Ok(()) => { let _ = ready.send(()); Ok(()) }
                                Err(e) => { waiting.push(ready); Err(e) }
                            }
                        }
                        Command::Unsubscribe(channel, id) => {
                            if remove(&mut channels, &channel, id) {
                                sink.unsubscribe(&channel).await
                            } else {
                                Ok(())
                            }
                        }
                    };
                    if let Err(e) = outcome {
                        tracing::warn!(error = %e, "cluster pub/sub command failed; reconnecting");
                        break;
                    }
                }
                message = stream.next() => {
                    let Some(message) = message else {
                        tracing::warn!("cluster pub/sub connection lost; reconnecting");
                        break;
                    };
                    if let Some(subscribers) = channels.get_mut(message.get_channel_name()) {
                        let payload = Bytes::copy_from_slice(message.get_payload_bytes());
                        for subscriber in subscribers {
                            subscriber.offer(Received::Message(payload.clone()));
                        }
                    }
                }
            }
        }
        // A connection that stays up resets the back-off; one that drops at once backs off
        // like a failed connect, so a flapping Redis is not hammered.
        if up_since.elapsed() >= STABLE {
            backoff = BACKOFF_MIN;
        } else {
            if !pause(backoff, &mut commands, &mut channels, &mut waiting).await {
                return;
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

/// How long a connection must stay up for the reconnect back-off to start over.
const STABLE: Duration = Duration::from_secs(5);

/// Waits `backoff` while disconnected, still taking commands (so subscriptions wait for the
/// link); false when every handle is gone.
async fn pause(
    backoff: Duration,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    channels: &mut HashMap<String, Vec<Subscriber>>,
    waiting: &mut Vec<oneshot::Sender<()>>,
) -> bool {
    let deadline = tokio::time::sleep(backoff);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return true,
            command = commands.recv() => match command {
                Some(command) => apply(channels, waiting, command),
                None => return false,
            },
        }
    }
}

/// Applies a command while disconnected: the map changes, the server hears of it on reconnect.
fn apply(
    channels: &mut HashMap<String, Vec<Subscriber>>,
    waiting: &mut Vec<oneshot::Sender<()>>,
    command: Command,
) {
    match command {
        Command::Subscribe {
            channel,
            id,
            tx,
            ready,
        } => {
            channels.entry(channel).or_default().push(Subscriber {
                id,
                tx,
                lagged: false,
            });
            waiting.push(ready);
        }
        Command::Unsubscribe(channel, id) => {
            remove(channels, &channel, id);
        }
    }
}

/// Removes one subscriber; true when it was the channel's last.
fn remove(channels: &mut HashMap<String, Vec<Subscriber>>, channel: &str, id: u64) -> bool {
    let Some(subscribers) = channels.get_mut(channel) else {
        return false;
    };
    subscribers.retain(|s| s.id != id);
    if subscribers.is_empty() {
        channels.remove(channel);
        true
    } else {
        false
    }
}
