//! The rule book of the reference classifier: `triage/rules/mod.rs` as it was before the
//! single-pass matcher, with the parsing kept and the validation left to the real loader (the
//! reference only ever reads files that [`crate::triage::Triage::from_toml`] accepts).
//! The scoring (`Rule::hit`, `Scoring::confidence`) is unchanged on purpose.

mod classify;

use serde::Deserialize;

use super::text::{KeywordSet, PatternList, Prepared, tagify};
use crate::domain::{Category, Complexity, Priority, ResolutionPath};

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

/// What one rule found in one description.
struct Hit {
    rule: usize,
    score: f64,
    terms: Vec<String>,
    keyword_tags: Vec<String>,
}

/// The validated rule book.
#[derive(Debug)]
pub(crate) struct RuleBook {
    scoring: Scoring,
    outage_keywords: KeywordSet,
    outage_patterns: PatternList,
    rules: Vec<Rule>,
}

impl Rule {
    fn compile(raw: RuleFile) -> Rule {
        Rule {
            category: Category::parse(&raw.category).expect("valid category"),
            priority: Priority::parse(&raw.priority).expect("valid priority"),
            complexity: Complexity::parse(&raw.complexity).expect("valid complexity"),
            resolution: ResolutionPath::parse(&raw.resolution).expect("valid resolution"),
            keywords: KeywordSet::new(&raw.keywords).expect("valid keywords"),
            patterns: PatternList::new(&raw.patterns).expect("valid patterns"),
            context: KeywordSet::new(&raw.context).expect("valid context"),
            exclude: KeywordSet::new(&raw.exclude).expect("valid exclude"),
            id: raw.id,
            subcategory: raw.subcategory,
            weight: raw.weight,
            generic: raw.generic,
            tags: raw.tags,
        }
    }

    fn hit(&self, index: usize, prepared: &Prepared, lowered: &str, scoring: &Scoring) -> Hit {
        let mut hit = Hit {
            rule: index,
            score: 0.0,
            terms: Vec::new(),
            keyword_tags: Vec::new(),
        };
        if self.exclude.any(prepared) {
            return hit;
        }
        let mut points = 0.0;
        let keyword_points = |phrase: bool| {
            if phrase {
                scoring.phrase_points
            } else {
                scoring.keyword_points
            }
        };
        for (keyword, found) in self.keywords.matches(prepared) {
            points += keyword_points(keyword.is_phrase);
            hit.keyword_tags.push(tagify(&found));
            hit.terms.push(found);
        }
        for found in self.patterns.matches(lowered) {
            points += scoring.pattern_points;
            if !hit.terms.contains(&found) {
                hit.terms.push(found);
            }
        }
        // Context terms only strengthen a rule that matched on its own evidence.
        if points > 0.0 {
            for (keyword, found) in self.context.matches(prepared) {
                points += keyword_points(keyword.is_phrase);
                if !hit.terms.contains(&found) {
                    hit.terms.push(found);
                }
            }
        }
        hit.score = points * self.weight;
        hit
    }
}

impl Scoring {
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
    /// Parses a rules file that the real loader accepts.
    pub fn from_toml(text: &str) -> RuleBook {
        let file: RulesFile = toml::from_str(text).expect("valid rules file");
        RuleBook {
            outage_keywords: KeywordSet::new(&file.escalation.production_outage_keywords)
                .expect("valid outage keywords"),
            outage_patterns: PatternList::new(&file.escalation.production_outage_patterns)
                .expect("valid outage patterns"),
            rules: file.rules.into_iter().map(Rule::compile).collect(),
            scoring: file.scoring,
        }
    }
}
