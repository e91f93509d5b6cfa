//! Event subscriptions of an endpoint: exact names, `prefix.*` wildcards, or `*`.

use serde::{Deserialize, Serialize};

/// One entry of an endpoint's `events`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum EventPattern {
    /// Every event.
    All,
    /// Every event whose name starts with `prefix.` (`case.*`).
    Prefix(String),
    /// One event name.
    Exact(String),
}

impl EventPattern {
    /// Parses `*`, `name.*` or `name.sub`: lowercase letters, digits, `_` and `.`-separated parts.
    pub fn parse(s: &str) -> Result<Self, String> {
        let part_ok = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        if s == "*" {
            return Ok(EventPattern::All);
        }
        if let Some(prefix) = s.strip_suffix(".*") {
            if prefix.split('.').all(part_ok) {
                return Ok(EventPattern::Prefix(prefix.to_string()));
            }
        } else if s.split('.').all(part_ok) && s.contains('.') {
            return Ok(EventPattern::Exact(s.to_string()));
        }
        Err(format!(
            "{s:?} is not an event name, a prefix.* wildcard or *"
        ))
    }

    /// Whether `event` is subscribed.
    pub fn matches(&self, event: &str) -> bool {
        match self {
            EventPattern::All => true,
            EventPattern::Exact(name) => name == event,
            EventPattern::Prefix(prefix) => event
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.starts_with('.')),
        }
    }
}

impl std::fmt::Display for EventPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventPattern::All => f.write_str("*"),
            EventPattern::Prefix(p) => write!(f, "{p}.*"),
            EventPattern::Exact(e) => f.write_str(e),
        }
    }
}

impl TryFrom<String> for EventPattern {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        EventPattern::parse(&s)
    }
}

impl From<EventPattern> for String {
    fn from(p: EventPattern) -> String {
        p.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_parse_and_match() {
        let all = EventPattern::parse("*").unwrap();
        let case = EventPattern::parse("case.*").unwrap();
        let exact = EventPattern::parse("review.completed").unwrap();
        assert!(all.matches("alert.triggered"));
        assert!(case.matches("case.created") && case.matches("case.resolved"));
        assert!(!case.matches("cases.created") && !case.matches("case"));
        assert!(exact.matches("review.completed") && !exact.matches("review.requested"));
        for bad in [
            "",
            "case",
            "Case.created",
            "case.*.x",
            "*.created",
            "case..x",
            "case.created ",
        ] {
            assert!(EventPattern::parse(bad).is_err(), "{bad:?} accepted");
        }
        let json = serde_json::to_string(&vec![case.clone(), all]).unwrap();
        assert_eq!(json, r#"["case.*","*"]"#);
        let back: Vec<EventPattern> = serde_json::from_str(&json).unwrap();
        assert_eq!(back[0], case);
        assert!(serde_json::from_str::<EventPattern>("\"nope\"").is_err());
    }
}
