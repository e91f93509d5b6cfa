//! The support domain: cases, reviews, events and the values they are made of.

mod case;
mod enums;
mod event;
mod ids;

pub use case::*;
pub use enums::*;
pub use event::*;
pub use ids::*;

use chrono::{DateTime, SecondsFormat, Utc};

/// RFC 3339 UTC with `Z` and millisecond precision, the contract's timestamp form.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}
