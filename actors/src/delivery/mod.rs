//! Outgoing webhooks (CONTRACT §5): [`endpoint`]s and their [`pattern`]s, durable [`job`]s,
//! the [`pool`] (dispatcher + factory of workers) that sends them with the [`sender`]
//! ([`signing`], [`ssrf`] guard) and stores their attempts in batches ([`recorder`]), and
//! [`retry`] timing; on the embedded store the pool runs on a [`runtime`] of its own. The
//! automated-fix executor's requests ([`fix`]) go through the same pool; endpoint secrets are
//! encrypted at rest by [`sealing`].

pub mod endpoint;
pub mod fix;
pub mod job;
pub mod pattern;
pub mod pool;
mod recorder;
pub mod retry;
pub mod runtime;
pub mod sealing;
pub mod sender;
pub mod signing;
pub mod ssrf;

pub use endpoint::{Endpoint, EndpointStatus};
pub use job::{Attempt, DeliveryJob, DeliveryState};
pub use pattern::EventPattern;
