//! Built-in triage: a deterministic, rule-driven classifier, a knowledge base of self-service
//! solutions, and similar-case search.
//!
//! The rules (`config/triage_rules.toml`) and the knowledge base (`config/knowledge_base.toml`)
//! are data, compiled into the binary by [`Triage::builtin`] and validated once at start, so a bad
//! regex or an unknown category fails loudly with the rule's id instead of misrouting cases.
//!
//! Classification policy ([`Triage::classify`]):
//! - every rule is scored on the description and product: keyword points + phrase points +
//!   pattern points (+ context points once something matched), times the rule's weight; a rule
//!   with an `exclude` term scores 0;
//! - the highest score wins, ties going to the rule written first, and `generic` rules (question
//!   forms such as "how do I") only when no other rule matched; below `min_score` the case is
//!   `other/general` with the low `fallback_confidence`;
//! - confidence grows with the winning score and shrinks when a rule of another subcategory
//!   scores close to it; it is rounded to two decimals;
//! - priority is the stronger of the rule's priority and the reported severity, and critical
//!   when the environment is production and the text has outage terms;
//! - the path is `escalate` for critical priority or escalating rules, `self-service` when the
//!   rule offers it, the case is neither complex nor an enhancement and confidence reaches
//!   `self_service_min_confidence`, and `collaborative` otherwise.
//!
//! The same input always gives the same classification: nothing depends on time, randomness or
//! hash-map order.

mod knowledge;
mod rules;
mod similar;
mod text;

#[cfg(test)]
mod tests;

pub use similar::{SimilarCases, Terms};

use crate::domain::{Classification, Environment, Severity, Solution};
use knowledge::KnowledgeBase;
use rules::RuleBook;

/// The rules shipped with casehub.
pub const BUILTIN_RULES: &str = include_str!("../../../config/triage_rules.toml");
/// The knowledge base shipped with casehub.
pub const BUILTIN_KNOWLEDGE_BASE: &str = include_str!("../../../config/knowledge_base.toml");

/// What triage looks at in an intake request.
#[derive(Debug, Clone, Copy)]
pub struct TriageInput<'a> {
    /// The customer's description of the problem.
    pub description: &'a str,
    /// The severity the caller reported, if any.
    pub severity: Option<Severity>,
    /// The product the request is about, if named; matched like the description.
    pub product: Option<&'a str>,
    /// Where the problem happens, if said.
    pub environment: Option<Environment>,
}

/// Why the rules or the knowledge base could not be loaded. Messages name the file and entry.
#[derive(Debug, thiserror::Error)]
pub enum TriageError {
    /// The file is not valid TOML or does not have the expected shape.
    #[error("{file}: {message}")]
    Parse {
        /// Which file (`triage_rules.toml` or `knowledge_base.toml`).
        file: &'static str,
        /// The parser's message, with line and column.
        message: String,
    },
    /// An entry parsed but is not usable.
    #[error("{file}: {entry}: {message}")]
    Invalid {
        /// Which file.
        file: &'static str,
        /// The rule or solution at fault, e.g. `rule "ssl-certificate"` or `[scoring]`.
        entry: String,
        /// What is wrong with it.
        message: String,
    },
}

/// The classifier and knowledge base. Immutable once built: Send + Sync, cheap to share in an
/// `Arc`.
#[derive(Debug)]
pub struct Triage {
    rules: RuleBook,
    knowledge_base: KnowledgeBase,
}

impl Triage {
    /// Parses the rules TOML and the knowledge-base TOML text, validating every entry; the error
    /// names the file and the rule or solution at fault.
    pub fn from_toml(rules: &str, knowledge_base: &str) -> Result<Triage, TriageError> {
        Ok(Triage {
            rules: RuleBook::from_toml(rules)?,
            knowledge_base: KnowledgeBase::from_toml(knowledge_base)?,
        })
    }

    /// The rules and knowledge base shipped in `config/`, compiled into the binary.
    pub fn builtin() -> Result<Triage, TriageError> {
        Triage::from_toml(BUILTIN_RULES, BUILTIN_KNOWLEDGE_BASE)
    }

    /// Classifies a request. Deterministic: the same input gives the same output.
    /// `similar_cases` is left empty for the caller to fill from [`SimilarCases`].
    pub fn classify(&self, input: &TriageInput<'_>) -> Classification {
        self.rules.classify(input)
    }

    /// The best knowledge-base solution for this classification and text (matched on category,
    /// subcategory and keywords), or `None` when nothing fits. The solution's confidence and
    /// reasoning say how well it matched.
    pub fn solution_for(
        &self,
        classification: &Classification,
        description: &str,
    ) -> Option<Solution> {
        self.knowledge_base
            .solution_for(classification, description)
    }

    /// Number of knowledge-base entries.
    pub fn knowledge_base_len(&self) -> usize {
        self.knowledge_base.len()
    }

    /// Number of classification rules.
    pub fn rules_len(&self) -> usize {
        self.rules.len()
    }
}
