//! The knowledge base of self-service solutions, parsed from `config/knowledge_base.toml`.
//!
//! An entry is offered for a classification of its category when its subcategory matches, or,
//! failing that, when at least two of its keywords occur in the description. Among candidates the
//! highest score wins (subcategory match 3 points, each keyword 1, each keyword phrase 1.5); ties
//! go to the entry written first.
//!
//! All entries' keywords are compiled into one [`KeywordIndex`], so a lookup scans the
//! description once, and the matched words are only spelled out for the chosen entry.

use serde::Deserialize;

use super::TriageError;
use super::rules::{is_kebab, parse_choice, round2};
use super::text::{KeywordIndex, KeywordIndexBuilder, KeywordSet, Prepared};
use crate::domain::{Category, Classification, Reference, Solution};

/// Name used for the knowledge-base file in error messages.
pub(crate) const KB_FILE: &str = "knowledge_base.toml";

/// Reference kinds seed 000 allows.
const REFERENCE_KINDS: [&str; 3] = ["kb_article", "documentation", "case"];

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

/// What tests need to know about an entry.
#[cfg(test)]
#[derive(Debug, Clone)]
pub(crate) struct KbIndexRow {
    pub id: String,
    pub category: Category,
    pub subcategory: String,
    pub keywords: Vec<String>,
    pub steps: usize,
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
    /// Every entry's keywords.
    index: KeywordIndex,
}

fn non_blank(items: &[String], what: &str) -> Result<(), String> {
    if items.iter().any(|s| s.trim().is_empty()) {
        return Err(format!("{what} must not contain blank strings"));
    }
    Ok(())
}

impl Entry {
    fn compile(raw: EntryFile, keywords: &mut KeywordIndexBuilder) -> Result<Entry, String> {
        if !is_kebab(&raw.id) {
            return Err("id must be non-empty kebab-case".into());
        }
        if raw.title.trim().is_empty() {
            return Err("title is empty".into());
        }
        let category = parse_choice(
            &raw.category,
            "category",
            Category::parse,
            Category::choices,
        )?;
        if !is_kebab(&raw.subcategory) {
            return Err(format!(
                "subcategory {:?} must be kebab-case",
                raw.subcategory
            ));
        }
        if raw.keywords.is_empty() {
            return Err("keywords is empty".into());
        }
        if raw.solution_steps.is_empty() {
            return Err("solution_steps is empty".into());
        }
        non_blank(&raw.solution_steps, "solution_steps")?;
        non_blank(&raw.diagnostic_commands, "diagnostic_commands")?;
        non_blank(&raw.risks, "risks")?;
        if raw.estimated_time == 0 {
            return Err("estimated_time must be at least 1 minute".into());
        }
        if !(raw.confidence.is_finite() && (0.0..=1.0).contains(&raw.confidence)) {
            return Err(format!("confidence {} must be in [0, 1]", raw.confidence));
        }
        if raw.reasoning.trim().is_empty() {
            return Err("reasoning is empty".into());
        }
        for r in &raw.references {
            if !REFERENCE_KINDS.contains(&r.kind.as_str()) {
                return Err(format!(
                    "reference {:?} has unknown type {:?} (expected {})",
                    r.id,
                    r.kind,
                    REFERENCE_KINDS.join("|")
                ));
            }
            if r.id.trim().is_empty() || r.title.trim().is_empty() {
                return Err("a reference has an empty id or title".into());
            }
            if !(r.url.starts_with("https://") || r.url.starts_with("http://")) {
                return Err(format!(
                    "reference {:?} url {:?} is not http(s)",
                    r.id, r.url
                ));
            }
        }
        Ok(Entry {
            category,
            subcategory: raw.subcategory,
            keywords: keywords.set(&raw.keywords)?,
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
        })
    }
}

impl KnowledgeBase {
    /// Parses and validates the knowledge base; errors name the entry at fault.
    pub fn from_toml(text: &str) -> Result<KnowledgeBase, TriageError> {
        let file: KbFile = toml::from_str(text).map_err(|e| TriageError::Parse {
            file: KB_FILE,
            message: e.to_string(),
        })?;
        let mut entries: Vec<Entry> = Vec::with_capacity(file.solutions.len());
        let mut keywords = KeywordIndexBuilder::default();
        for (n, raw) in file.solutions.into_iter().enumerate() {
            let entry = if raw.id.is_empty() {
                format!("solution #{}", n + 1)
            } else {
                format!("solution {:?}", raw.id)
            };
            let invalid = |message: String| TriageError::Invalid {
                file: KB_FILE,
                entry: entry.clone(),
                message,
            };
            if entries.iter().any(|e| e.solution.id == raw.id) {
                return Err(invalid("duplicate id".into()));
            }
            entries.push(Entry::compile(raw, &mut keywords).map_err(invalid)?);
        }
        let index = keywords.build().map_err(|message| TriageError::Invalid {
            file: KB_FILE,
            entry: "[[solution]]".into(),
            message,
        })?;
        Ok(KnowledgeBase { entries, index })
    }

    /// The best entry for `classification` and `description`, adapted to this case.
    pub fn solution_for(
        &self,
        classification: &Classification,
        description: &str,
    ) -> Option<Solution> {
        // The scan is the only costly step: skipped when no entry could be chosen anyway.
        if !(self.entries.iter()).any(|e| e.category == classification.category) {
            return None;
        }
        let prepared = Prepared::new(description);
        let scan = self.index.scan(&prepared);
        let mut best: Option<(f64, &Entry, bool)> = None;
        for entry in self
            .entries
            .iter()
            .filter(|e| e.category == classification.category)
        {
            let same_sub = entry.subcategory == classification.subcategory;
            let mut matched = 0;
            let mut keyword_points = 0.0;
            for keyword in entry.keywords.matched(&scan) {
                matched += 1;
                keyword_points += if keyword.is_phrase { 1.5 } else { 1.0 };
            }
            if !same_sub && matched < 2 {
                continue;
            }
            let score = if same_sub { 3.0 } else { 0.0 } + keyword_points;
            if best.as_ref().is_none_or(|(s, ..)| score > *s) {
                best = Some((score, entry, same_sub));
            }
        }
        let (_, entry, same_sub) = best?;
        let found: Vec<String> = (entry.keywords.matches(&scan).into_iter())
            .map(|(_, f)| f)
            .collect();
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

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Each entry's category, subcategory and keywords, in file order (for tests and tooling).
    #[cfg(test)]
    pub fn index(&self) -> Vec<KbIndexRow> {
        self.entries
            .iter()
            .map(|e| KbIndexRow {
                id: e.solution.id.clone(),
                category: e.category,
                subcategory: e.subcategory.clone(),
                keywords: e.keywords.written().collect(),
                steps: e.solution.solution_steps.len(),
            })
            .collect()
    }
}
