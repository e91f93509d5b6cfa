//! Outgoing webhooks: signatures, event subscriptions and the address guard. The endpoint API,
//! the durable queue and the delivery worker pool build on these.

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
