//! The reference classifier: the triage scoring as it was before the single-pass matcher
//! (one substring search per keyword, one regex search per pattern, per rule), kept so that
//! [`super::equivalence`] can check that every faster implementation gives exactly the same
//! classifications and solutions. Slow and simple on purpose: change it only when the
//! classification policy itself changes.

mod knowledge;
mod rules;
mod text;

pub(super) use text::normalize;

use crate::domain::{Classification, Solution};
use crate::triage::TriageInput;

/// The reference rule book and knowledge base, parsed from the same TOML as the real ones.
pub(super) struct Reference {
    rules: rules::RuleBook,
    knowledge_base: knowledge::KnowledgeBase,
}

impl Reference {
    /// Parses files that [`crate::triage::Triage::from_toml`] accepts (panics on others).
    pub fn from_toml(rules: &str, knowledge_base: &str) -> Reference {
        Reference {
            rules: rules::RuleBook::from_toml(rules),
            knowledge_base: knowledge::KnowledgeBase::from_toml(knowledge_base),
        }
    }

    /// What [`crate::triage::Triage::classify`] returned before the single-pass matcher.
    pub fn classify(&self, input: &TriageInput<'_>) -> Classification {
        self.rules.classify(input)
    }

    /// What [`crate::triage::Triage::solution_for`] returned before the single-pass matcher.
    pub fn solution_for(
        &self,
        classification: &Classification,
        description: &str,
    ) -> Option<Solution> {
        self.knowledge_base
            .solution_for(classification, description)
    }
}
