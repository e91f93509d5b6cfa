//! The triage rule book: parsed from `config/triage_rules.toml` and validated once. The file's
//! header comment documents its shape; `classify` turns a description into a classification.
//!
//! Every keyword of every rule (and of the escalation section) is compiled into one
//! [`KeywordIndex`] and every rule pattern into one [`PatternIndex`], so that scoring a text
//! costs one pass over it for the keywords and one for the patterns, however many rules there
//! are; the rules then only read the scans.

mod classify;

use serde::Deserialize;

use super::TriageError;
use super::text::{KeywordIndex, KeywordIndexBuilder, KeywordScan, KeywordSet, tagify};
use crate::domain::{Category, Complexity, Priority, ResolutionPath};
pub(crate) use classify::{PatternIndex, PatternIndexBuilder, PatternList, PatternScan};

/// Name used for the rules file in error messages.
pub(crate) const RULES_FILE: &str = "triage_rules.toml";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    scoring: Scoring,
    #[serde(default)]
    escalation: EscalationFile,
    #[serde(default, rename = "rule")]
    rules: Vec<RuleFile>,
}

/// Tunables of the scoring; every field has a default so the section may be omitted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Scoring {
    keyword_points: f64,
    phrase_points: f64,
    pattern_points: f64,
    min_score: f64,
    saturation: f64,
    confidence_floor: f64,
    confidence_span: f64,
    fallback_confidence: f64,
    self_service_min_confidence: f64,
}

impl Default for Scoring {
    fn default() -> Self {
        Scoring {
            keyword_points: 1.0,
            phrase_points: 1.5,
            pattern_points: 2.0,
            min_score: 1.0,
            saturation: 2.5,
            confidence_floor: 0.25,
            confidence_span: 0.70,
            fallback_confidence: 0.15,
            self_service_min_confidence: 0.5,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct EscalationFile {
    production_outage_keywords: Vec<String>,
    production_outage_patterns: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    id: String,
    category: String,
    subcategory: String,
    priority: String,
    complexity: String,
    resolution: String,
    #[serde(default = "default_weight")]
    weight: f64,
    #[serde(default)]
    generic: bool,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    patterns: Vec<String>,
    #[serde(default)]
    context: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
}

fn default_weight() -> f64 {
    1.0
}

/// One validated rule.
#[derive(Debug)]
struct Rule {
    id: String,
    category: Category,
    subcategory: String,
    priority: Priority,
    complexity: Complexity,
    resolution: ResolutionPath,
    weight: f64,
    /// Matches the form of a request ("how do I") rather than its subject: wins only when no
    /// specific rule matched, and never lowers a specific rule's confidence.
    generic: bool,
    keywords: KeywordSet,
    patterns: PatternList,
    context: KeywordSet,
    exclude: KeywordSet,
    tags: Vec<String>,
}

/// What one rule scored on one description; the terms behind it are only worked out for the
/// winner ([`Rule::terms`]).
struct Hit {
    rule: usize,
    score: f64,
}

/// What the scans found in one description: everything a rule is scored on.
struct Evidence<'t> {
    keywords: KeywordScan<'t>,
    patterns: PatternScan<'t>,
}

/// The validated rule book.
#[derive(Debug)]
pub(crate) struct RuleBook {
    scoring: Scoring,
    outage_keywords: KeywordSet,
    outage_patterns: PatternList,
    rules: Vec<Rule>,
    /// Every keyword, context, exclude and outage keyword.
    keyword_index: KeywordIndex,
    /// Every pattern, the outage patterns included.
    pattern_index: PatternIndex,
}

fn invalid(entry: impl Into<String>, message: impl Into<String>) -> TriageError {
    TriageError::Invalid {
        file: RULES_FILE,
        entry: entry.into(),
        message: message.into(),
    }
}

/// Parses a closed-vocabulary field, naming the choices when the value is not one of them.
pub(crate) fn parse_choice<T>(
    value: &str,
    field: &str,
    parse: fn(&str) -> Option<T>,
    choices: fn() -> String,
) -> Result<T, String> {
    parse(value).ok_or_else(|| format!("unknown {field} {value:?} (expected {})", choices()))
}

/// True for a non-empty kebab-case name (`ssl-certificates`).
pub(crate) fn is_kebab(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

impl Rule {
    fn compile(
        raw: RuleFile,
        keywords: &mut KeywordIndexBuilder,
        patterns: &mut PatternIndexBuilder,
    ) -> Result<Rule, String> {
        if !is_kebab(&raw.id) {
            return Err("id must be non-empty kebab-case".into());
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
        let priority = parse_choice(
            &raw.priority,
            "priority",
            Priority::parse,
            Priority::choices,
        )?;
        let complexity = parse_choice(
            &raw.complexity,
            "complexity",
            Complexity::parse,
            Complexity::choices,
        )?;
        let resolution = parse_choice(
            &raw.resolution,
            "resolution",
            ResolutionPath::parse,
            ResolutionPath::choices,
        )?;
        if !(raw.weight.is_finite() && raw.weight > 0.0 && raw.weight <= 10.0) {
            return Err(format!("weight {} must be in (0, 10]", raw.weight));
        }
        if raw.keywords.is_empty() && raw.patterns.is_empty() {
            return Err("needs at least one keyword or pattern".into());
        }
        if let Some(tag) = raw.tags.iter().find(|t| !is_kebab(t)) {
            return Err(format!("tag {tag:?} must be kebab-case"));
        }
        Ok(Rule {
            keywords: keywords.set(&raw.keywords)?,
            patterns: patterns.list(&raw.patterns)?,
            context: keywords.set(&raw.context)?,
            exclude: keywords.set(&raw.exclude)?,
            id: raw.id,
            category,
            subcategory: raw.subcategory,
            priority,
            complexity,
            resolution,
            weight: raw.weight,
            generic: raw.generic,
            tags: raw.tags,
        })
    }

    /// The rule's score on `evidence`: keyword and phrase points, pattern points and, once
    /// something matched, context points, times the weight; 0 when an exclude term occurs.
    /// Points are added one at a time in the order they always were (keywords, patterns, context,
    /// each in list order): floating-point sums depend on the order, and scores must not move.
    fn score(&self, evidence: &Evidence<'_>, scoring: &Scoring) -> f64 {
        if self.exclude.any(&evidence.keywords) {
            return 0.0;
        }
        let mut points = 0.0;
        for keyword in self.keywords.matched(&evidence.keywords) {
            points += scoring.keyword_points(keyword.is_phrase);
        }
        for _ in 0..self.patterns.count(&evidence.patterns) {
            points += scoring.pattern_points;
        }
        // Context terms only strengthen a rule that matched on its own evidence.
        if points > 0.0 {
            for keyword in self.context.matched(&evidence.keywords) {
                points += scoring.keyword_points(keyword.is_phrase);
            }
        }
        points * self.weight
    }

    /// The terms the rule matched (keywords, then pattern texts and context terms not already
    /// listed) and the tags of the matched keywords, for a rule that scored above 0.
    fn terms(&self, evidence: &Evidence<'_>) -> (Vec<String>, Vec<String>) {
        let mut terms = Vec::new();
        let mut keyword_tags = Vec::new();
        for (_, found) in self.keywords.matches(&evidence.keywords) {
            keyword_tags.push(tagify(&found));
            terms.push(found);
        }
        for found in self.patterns.matches(&evidence.patterns) {
            if !terms.contains(&found) {
                terms.push(found);
            }
        }
        for (_, found) in self.context.matches(&evidence.keywords) {
            if !terms.contains(&found) {
                terms.push(found);
            }
        }
        (terms, keyword_tags)
    }
}

impl Scoring {
    /// Points for one matched keyword: a phrase is stronger evidence than a word.
    fn keyword_points(&self, phrase: bool) -> f64 {
        if phrase {
            self.phrase_points
        } else {
            self.keyword_points
        }
    }

    fn validate(&self) -> Result<(), String> {
        let fields = [
            ("keyword_points", self.keyword_points, 0.0, 100.0),
            ("phrase_points", self.phrase_points, 0.0, 100.0),
            ("pattern_points", self.pattern_points, 0.0, 100.0),
            ("min_score", self.min_score, 0.0, 100.0),
            ("saturation", self.saturation, 0.01, 100.0),
            ("confidence_floor", self.confidence_floor, 0.0, 1.0),
            ("confidence_span", self.confidence_span, 0.0, 1.0),
            ("fallback_confidence", self.fallback_confidence, 0.0, 1.0),
            (
                "self_service_min_confidence",
                self.self_service_min_confidence,
                0.0,
                1.0,
            ),
        ];
        for (name, value, lo, hi) in fields {
            if !(value.is_finite() && value >= lo && value <= hi) {
                return Err(format!("{name} = {value} must be in [{lo}, {hi}]"));
            }
        }
        if self.confidence_floor + self.confidence_span > 1.0 {
            return Err("confidence_floor + confidence_span must not exceed 1".into());
        }
        Ok(())
    }

    /// Confidence from the winning score and the best score of a different subcategory:
    /// a strong match saturates towards `floor + span`, a close runner-up takes up to 40% off.
    fn confidence(&self, best: f64, runner_up: f64) -> f64 {
        let strength = 1.0 - (-best / self.saturation).exp();
        let separation = if best > 0.0 {
            ((best - runner_up) / best).clamp(0.0, 1.0)
        } else {
            0.0
        };
        round2(self.confidence_floor + self.confidence_span * strength * (0.6 + 0.4 * separation))
    }
}

/// Rounds to two decimals, as the contract shows confidences.
pub(crate) fn round2(x: f64) -> f64 {
    ((x * 100.0).round() / 100.0).clamp(0.0, 1.0)
}

impl RuleBook {
    /// Parses and validates the rules file; errors name the rule at fault.
    pub fn from_toml(text: &str) -> Result<RuleBook, TriageError> {
        let file: RulesFile = toml::from_str(text).map_err(|e| TriageError::Parse {
            file: RULES_FILE,
            message: e.to_string(),
        })?;
        file.scoring
            .validate()
            .map_err(|m| invalid("[scoring]", m))?;
        let mut keywords = KeywordIndexBuilder::default();
        let mut patterns = PatternIndexBuilder::default();
        let outage_keywords = keywords
            .set(&file.escalation.production_outage_keywords)
            .map_err(|m| invalid("[escalation]", m))?;
        let outage_patterns = patterns
            .list(&file.escalation.production_outage_patterns)
            .map_err(|m| invalid("[escalation]", m))?;
        if file.rules.is_empty() {
            return Err(invalid("[[rule]]", "the file defines no rules"));
        }
        let mut rules: Vec<Rule> = Vec::with_capacity(file.rules.len());
        for (n, raw) in file.rules.into_iter().enumerate() {
            let entry = if raw.id.is_empty() {
                format!("rule #{}", n + 1)
            } else {
                format!("rule {:?}", raw.id)
            };
            if rules.iter().any(|r| r.id == raw.id) {
                return Err(invalid(entry, "duplicate id"));
            }
            let rule = Rule::compile(raw, &mut keywords, &mut patterns);
            rules.push(rule.map_err(|m| invalid(entry, m))?);
        }
        Ok(RuleBook {
            scoring: file.scoring,
            outage_keywords,
            outage_patterns,
            rules,
            keyword_index: keywords.build().map_err(|m| invalid("[[rule]]", m))?,
            pattern_index: patterns.build(),
        })
    }

    /// Category and subcategory of every rule whose default path is self-service.
    #[cfg(test)]
    pub fn self_service_subcategories(&self) -> Vec<(Category, String)> {
        self.rules
            .iter()
            .filter(|r| r.resolution == ResolutionPath::SelfService)
            .map(|r| (r.category, r.subcategory.clone()))
            .collect()
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }
}
