//! The knowledge base of the reference classifier: `triage/knowledge.rs` as it was before the
//! single-pass matcher, with the parsing kept and the validation left to the real loader.
//! `solution_for` is unchanged on purpose.

use serde::Deserialize;

use super::rules::round2;
use super::text::{KeywordSet, Prepared};
use crate::domain::{Category, Classification, Reference, Solution};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KbFile {
    #[serde(default, rename = "solution")]
    solutions: Vec<EntryFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryFile {
    id: String,
    title: String,
    category: String,
    subcategory: String,
    keywords: Vec<String>,
    solution_steps: Vec<String>,
    #[serde(default)]
    diagnostic_commands: Vec<String>,
    automated_fix_available: bool,
    estimated_time: u32,
    confidence: f64,
    #[serde(default)]
    references: Vec<Reference>,
    #[serde(default)]
    risks: Vec<String>,
    requires_approval: bool,
    reasoning: String,
}

/// One validated entry: the solution it offers and what it is matched on.
#[derive(Debug)]
struct Entry {
    category: Category,
    subcategory: String,
    keywords: KeywordSet,
    solution: Solution,
}

/// The validated knowledge base.
#[derive(Debug)]
pub(crate) struct KnowledgeBase {
    entries: Vec<Entry>,
}

impl Entry {
    fn compile(raw: EntryFile) -> Entry {
        Entry {
            category: Category::parse(&raw.category).expect("valid category"),
            subcategory: raw.subcategory,
            keywords: KeywordSet::new(&raw.keywords).expect("valid keywords"),
            solution: Solution {
                id: raw.id,
                title: raw.title,
                solution_steps: raw.solution_steps,
                diagnostic_commands: raw.diagnostic_commands,
                automated_fix_available: raw.automated_fix_available,
                estimated_time: raw.estimated_time,
                confidence: round2(raw.confidence),
                references: raw.references,
                risks: raw.risks,
                requires_approval: raw.requires_approval,
                reasoning: raw.reasoning,
            },
        }
    }
}

impl KnowledgeBase {
    /// Parses a knowledge base that the real loader accepts.
    pub fn from_toml(text: &str) -> KnowledgeBase {
        let file: KbFile = toml::from_str(text).expect("valid knowledge base");
        KnowledgeBase {
            entries: file.solutions.into_iter().map(Entry::compile).collect(),
        }
    }

    /// The best entry for `classification` and `description`, adapted to this case.
    pub fn solution_for(
        &self,
        classification: &Classification,
        description: &str,
    ) -> Option<Solution> {
        let prepared = Prepared::new(description);
        let mut best: Option<(f64, &Entry, Vec<String>, bool)> = None;
        for entry in self
            .entries
            .iter()
            .filter(|e| e.category == classification.category)
        {
            let matched = entry.keywords.matches(&prepared);
            let same_sub = entry.subcategory == classification.subcategory;
            if !same_sub && matched.len() < 2 {
                continue;
            }
            let keyword_points: f64 = matched
                .iter()
                .map(|(k, _)| if k.is_phrase { 1.5 } else { 1.0 })
                .sum();
            let score = if same_sub { 3.0 } else { 0.0 } + keyword_points;
            if best.as_ref().is_none_or(|(s, ..)| score > *s) {
                let found = matched.into_iter().map(|(_, f)| f).collect();
                best = Some((score, entry, found, same_sub));
            }
        }
        let (_, entry, found, same_sub) = best?;
        let hits = found.len() as f64;
        let factor = if same_sub {
            0.85 + 0.05 * hits.min(3.0)
        } else {
            0.6 + 0.05 * hits.min(4.0)
        };
        let mut solution = entry.solution.clone();
        solution.confidence = round2(entry.solution.confidence * factor);
        let on = if found.is_empty() {
            String::new()
        } else {
            format!(" and the keywords {}", found.join(", "))
        };
        let basis = if same_sub { "subcategory" } else { "category" };
        solution.reasoning = format!(
            "{} Chosen on the {basis} {}/{}{on}.",
            entry.solution.reasoning.trim_end(),
            entry.category,
            entry.subcategory
        );
        Some(solution)
    }
}
