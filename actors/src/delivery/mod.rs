//! Outgoing webhooks (CONTRACT §5): [`endpoint`]s and their [`pattern`]s, durable [`job`]s,
//! the [`pool`] (dispatcher + factory of workers) that sends them with the [`sender`]
//! ([`signing`], [`ssrf`] guard), and [`retry`] timing.

pub mod endpoint;
pub mod job;
pub mod pattern;
pub mod pool;
pub mod retry;
pub mod sender;
pub mod signing;
pub mod ssrf;

pub use endpoint::{Endpoint, EndpointStatus};
pub use job::{Attempt, DeliveryJob, DeliveryState};
pub use pattern::EventPattern;
