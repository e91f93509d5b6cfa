//! The closed vocabularies of the support domain (seed 000), each parsed once at the edge.

use serde::{Deserialize, Serialize};

/// Declares a string-backed enum with its wire names, `parse`, `as_str` and `ALL`.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $wire)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }

            /// Parses a wire name exactly (case-sensitive, as the contract writes them).
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($wire => Some($name::$variant),)+ _ => None }
            }

            /// The wire names joined by `|`, for error messages.
            pub fn choices() -> String {
                Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join("|")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// How urgent the caller says the problem is.
    Severity { Critical => "critical", High => "high", Medium => "medium", Low => "low" }
);
wire_enum!(
    /// Where the problem happens.
    Environment { Production => "production", Staging => "staging", Development => "development" }
);
wire_enum!(
    /// How the request reached us.
    Channel { Webhook => "webhook", Email => "email", Chat => "chat", Portal => "portal" }
);
wire_enum!(
    /// Triage category.
    Category {
        Configuration => "configuration", Usage => "usage", Setup => "setup",
        Defect => "defect", Enhancement => "enhancement", Other => "other",
    }
);
wire_enum!(
    /// Triage priority.
    Priority { Critical => "critical", High => "high", Medium => "medium", Low => "low" }
);
wire_enum!(
    /// How much work a case is expected to take.
    Complexity { Simple => "simple", Moderate => "moderate", Complex => "complex" }
);
wire_enum!(
    /// Which way triage sends a case.
    ResolutionPath { SelfService => "self-service", Collaborative => "collaborative", Escalate => "escalate" }
);
wire_enum!(
    /// A case's place in the lifecycle (CONTRACT §3).
    CaseStatus {
        New => "new", Triaged => "triaged", InProgress => "in_progress", Executing => "executing",
        PendingReview => "pending_review", Delivering => "delivering", Resolved => "resolved",
        Closed => "closed", Escalated => "escalated",
    }
);
wire_enum!(
    /// How a case was resolved.
    ResolutionType {
        SelfServiceAutomated => "self-service-automated", SelfServiceManual => "self-service-manual",
        Collaborative => "collaborative", Escalated => "escalated",
    }
);
wire_enum!(
    /// How soon a collaborative review is wanted.
    Urgency { Urgent => "urgent", Normal => "normal" }
);
wire_enum!(
    /// What a reviewer did with a review.
    ReviewAction { Approve => "approve", Edit => "edit", Reject => "reject" }
);
wire_enum!(
    /// The customer's answer to a self-service offer.
    Decision { Approve => "approve", Reject => "reject" }
);
wire_enum!(
    /// Where a review stands.
    ReviewStatus { Pending => "pending", Approved => "approved", Edited => "edited", Rejected => "rejected" }
);

impl From<Severity> for Priority {
    fn from(s: Severity) -> Self {
        match s {
            Severity::Critical => Priority::Critical,
            Severity::High => Priority::High,
            Severity::Medium => Priority::Medium,
            Severity::Low => Priority::Low,
        }
    }
}

impl Priority {
    /// Higher is more urgent; used to take the stronger of two priorities.
    pub fn rank(self) -> u8 {
        match self {
            Priority::Critical => 3,
            Priority::High => 2,
            Priority::Medium => 1,
            Priority::Low => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for s in CaseStatus::ALL {
            assert_eq!(CaseStatus::parse(s.as_str()), Some(*s));
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert_eq!(
            ResolutionPath::parse("self-service"),
            Some(ResolutionPath::SelfService)
        );
        assert_eq!(Severity::parse("CRITICAL"), None);
        assert_eq!(Urgency::choices(), "urgent|normal");
    }
}
