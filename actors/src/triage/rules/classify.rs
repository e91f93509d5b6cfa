//! Scoring a description against the rule book and turning the winner into a classification
//! (the policy is described in the triage module docs).
//!
//! The text is normalised and lowercased once, scanned once for all keywords (a
//! [`crate::triage::text::KeywordIndex`]) and once for all patterns (a [`PatternIndex`], defined
//! here as only the rules have patterns); every rule is scored from those scans, and the matched
//! terms (for the reasoning and tags) are only worked out for the winning rule.

use std::ops::Range;

use regex::{Regex, RegexSet};

use super::round2;
use super::{Evidence, Hit, Rule, RuleBook};
use crate::domain::{
    Category, Classification, Complexity, Environment, Priority, ResolutionPath, Severity,
};
use crate::triage::TriageInput;
use crate::triage::text::{Prepared, lowercase};

impl RuleBook {
    /// Scores every rule and builds the classification (see the module docs for the policy).
    pub fn classify(&self, input: &TriageInput<'_>) -> Classification {
        let raw = format!("{}\n{}", input.description, input.product.unwrap_or(""));
        let lowered = lowercase(&raw);
        let prepared = Prepared::new(&raw);
        let evidence = Evidence {
            keywords: self.keyword_index.scan(&prepared),
            patterns: self.pattern_index.scan(&lowered),
        };

        let hits: Vec<Hit> = self
            .rules
            .iter()
            .enumerate()
            .map(|(rule, r)| Hit {
                rule,
                score: r.score(&evidence, &self.scoring),
            })
            .collect();
        // Specific rules first, generic ones only when no specific rule reached min_score.
        // Strictly greater wins, so ties go to the rule written first.
        let pick = |generic: bool| {
            hits.iter()
                .filter(|h| self.rules.get(h.rule).is_some_and(|r| r.generic == generic))
                .fold(None::<&Hit>, |best, h| match best {
                    Some(b) if b.score >= h.score => Some(b),
                    _ if h.score >= self.scoring.min_score && h.score > 0.0 => Some(h),
                    _ => best,
                })
        };
        let best = pick(false).or_else(|| pick(true));

        // A production outage is production with outage terms; the terms are not even looked
        // for elsewhere, as they change nothing there.
        let mut outage_terms: Vec<String> = Vec::new();
        if input.environment == Some(Environment::Production) {
            let keywords = self.outage_keywords.matches(&evidence.keywords);
            outage_terms.extend(keywords.into_iter().map(|(_, found)| found));
            outage_terms.extend(self.outage_patterns.matches(&evidence.patterns));
        }

        match best.and_then(|h| self.rules.get(h.rule).map(|r| (h, r))) {
            Some((hit, rule)) => self.matched(input, &hits, hit, rule, &evidence, &outage_terms),
            None => self.fallback(input.severity, &outage_terms),
        }
    }

    /// The classification for the winning rule; `outage_terms` is empty unless the request is
    /// a production outage.
    fn matched(
        &self,
        input: &TriageInput<'_>,
        hits: &[Hit],
        hit: &Hit,
        rule: &Rule,
        evidence: &Evidence<'_>,
        outage_terms: &[String],
    ) -> Classification {
        let production_outage = !outage_terms.is_empty();
        let (terms, keyword_tags) = rule.terms(evidence);
        let runner_up = hits
            .iter()
            .filter_map(|h| self.rules.get(h.rule).map(|r| (h, r)))
            .filter(|(_, r)| r.category != rule.category || r.subcategory != rule.subcategory)
            .filter(|(_, r)| rule.generic || !r.generic)
            .map(|(h, _)| h.score)
            .fold(0.0, f64::max);
        let confidence = self.scoring.confidence(hit.score, runner_up);
        let (priority, priority_why) = priority_for(
            rule.priority,
            input.severity,
            production_outage,
            outage_terms,
        );

        let (path, path_why) = self.path_for(rule, priority, confidence);

        let mut tags: Vec<String> = Vec::new();
        for tag in rule.tags.iter().chain(keyword_tags.iter()) {
            if !tags.contains(tag) {
                tags.push(tag.clone());
            }
        }
        if production_outage && !tags.iter().any(|t| t == "production-outage") {
            tags.push("production-outage".into());
        }

        let reasoning = format!(
            "Matched rule \"{}\" ({}/{}) on {}, confidence {confidence:.2}. Priority {priority}: {priority_why}. Path {path}: {path_why}.",
            rule.id,
            rule.category,
            rule.subcategory,
            quoted(&terms),
        );
        Classification {
            category: rule.category,
            subcategory: rule.subcategory.clone(),
            priority,
            confidence,
            estimated_complexity: rule.complexity,
            resolution_path: path,
            suggested_resolution_path: path,
            reasoning,
            tags,
            similar_cases: Vec::new(),
        }
    }

    /// The resolution path and a clause saying why (policy in the triage module docs).
    fn path_for(
        &self,
        rule: &Rule,
        priority: Priority,
        confidence: f64,
    ) -> (ResolutionPath, String) {
        use ResolutionPath::{Collaborative, Escalate, SelfService};
        let (path, why) = if priority == Priority::Critical {
            (Escalate, "critical priority goes straight to a specialist")
        } else if rule.resolution == Escalate {
            (Escalate, "this kind of problem is always escalated")
        } else if rule.resolution == Collaborative {
            (
                Collaborative,
                "this kind of problem needs a specialist's review",
            )
        } else if rule.complexity == Complexity::Complex {
            (Collaborative, "the case is complex")
        } else if rule.category == Category::Enhancement {
            (Collaborative, "enhancements go to product review")
        } else if confidence < self.scoring.self_service_min_confidence {
            let why = format!("confidence {confidence:.2} is too low for self-service");
            return (Collaborative, why);
        } else {
            (SelfService, "the rule offers a documented self-service fix")
        };
        (path, why.to_string())
    }

    /// The classification when no rule matched; `outage_terms` as for [`RuleBook::matched`].
    fn fallback(&self, severity: Option<Severity>, outage_terms: &[String]) -> Classification {
        let production_outage = !outage_terms.is_empty();
        // With nothing to go on, the caller's severity stands as reported, low included.
        let (priority, priority_why) = match severity {
            _ if production_outage => priority_for(Priority::Low, None, true, outage_terms),
            Some(reported) => (
                Priority::from(reported),
                "the reported severity".to_string(),
            ),
            None => (
                Priority::Medium,
                "the default for unclassified requests".to_string(),
            ),
        };
        let path = if priority == Priority::Critical {
            ResolutionPath::Escalate
        } else {
            ResolutionPath::Collaborative
        };
        let mut tags = vec!["unclassified".to_string()];
        if production_outage {
            tags.push("production-outage".into());
        }
        Classification {
            category: Category::Other,
            subcategory: "general".into(),
            priority,
            confidence: round2(self.scoring.fallback_confidence),
            estimated_complexity: Complexity::Moderate,
            resolution_path: path,
            suggested_resolution_path: path,
            reasoning: format!(
                "No triage rule matched strongly enough, so the case is other/general for a person to read. Priority {priority}: {priority_why}. Path {path}."
            ),
            tags,
            similar_cases: Vec::new(),
        }
    }
}

/// Quotes and joins matched terms for a reasoning sentence: `"a", "b" and "c"`.
fn quoted(terms: &[String]) -> String {
    let quoted: Vec<String> = terms.iter().map(|t| format!("\"{t}\"")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// The stronger of the rule's priority and the reported severity; critical for a production
/// outage. Returns the priority and a clause saying why.
fn priority_for(
    base: Priority,
    severity: Option<Severity>,
    production_outage: bool,
    outage_terms: &[String],
) -> (Priority, String) {
    if production_outage {
        let why = format!(
            "production environment with outage terms {}",
            quoted(outage_terms)
        );
        return (Priority::Critical, why);
    }
    match severity.map(Priority::from) {
        Some(reported) if reported.rank() > base.rank() => (
            reported,
            format!("raised from {base} by the reported severity"),
        ),
        _ => (base, "the default for this kind of problem".to_string()),
    }
}

/// Indices into a [`PatternIndex`]: the regexes one rule (or the escalation section) wrote,
/// matched case-insensitively on the lowercased raw text.
#[derive(Debug, Clone, Default)]
pub(crate) struct PatternList {
    slots: Vec<usize>,
}

impl PatternList {
    /// How many of the patterns matched (with a first match that is not blank).
    pub fn count(&self, scan: &PatternScan<'_>) -> usize {
        self.slots
            .iter()
            .filter(|&&s| scan.range(s).is_some())
            .count()
    }

    /// The text each matching pattern found (first match, whitespace collapsed, at most 60
    /// characters), in list order.
    pub fn matches(&self, scan: &PatternScan<'_>) -> Vec<String> {
        self.slots
            .iter()
            .filter_map(|&s| scan.range(s))
            .map(|range| {
                let found = (scan.text.get(range).unwrap_or_default())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                found.chars().take(60).collect()
            })
            .collect()
    }
}

/// Collects the regexes of many pattern lists; [`PatternIndexBuilder::build`] compiles them.
#[derive(Debug, Default)]
pub(crate) struct PatternIndexBuilder {
    regexes: Vec<Regex>,
    /// What the set searches for each regex: the regex without its word boundaries.
    relaxed: Vec<String>,
}

/// Compiles a rule author's pattern as every pattern is matched: case-insensitively.
fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(1 << 20)
        .build()
}

/// `pattern` without its word-boundary assertions (`\b`, `\B`, `\b{start}`, ...). It matches
/// wherever `pattern` matches (an assertion only ever rules matches out), so it can pick the
/// candidates among the patterns; and unlike a Unicode `\b` it never makes the set's DFA give
/// up on non-ASCII text (its fallback is 50 times slower).
fn without_word_boundaries(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        // An escape is two characters; `\b` cannot occur in a class (it is an error there).
        match chars.next() {
            Some('b' | 'B') => {
                if chars.peek() == Some(&'{') {
                    chars.by_ref().find(|&c| c == '}');
                }
            }
            Some(escaped) => {
                out.push('\\');
                out.push(escaped);
            }
            None => out.push('\\'),
        }
    }
    out
}

impl PatternIndexBuilder {
    /// Compiles `patterns` into a list registered with this builder; the error names the
    /// offending pattern.
    pub fn list(&mut self, patterns: &[String]) -> Result<PatternList, String> {
        let mut list = PatternList::default();
        for p in patterns {
            // Compiled alone too: the error names the pattern, and the regex finds the text of
            // a match that the set only reports.
            let regex =
                compile(p).map_err(|e| format!("pattern {p:?} is not a valid regex: {e}"))?;
            // Should the relaxed form not compile (unusual syntax), the set searches the
            // pattern itself: exact too, only slower on non-ASCII text.
            let relaxed = without_word_boundaries(p);
            let relaxed = match compile(&relaxed) {
                Ok(_) => relaxed,
                Err(_) => p.clone(),
            };
            list.slots.push(self.regexes.len());
            self.regexes.push(regex);
            self.relaxed.push(relaxed);
        }
        Ok(list)
    }

    /// Compiles every registered pattern into one set.
    pub fn build(self) -> PatternIndex {
        let limit = (1usize << 20).saturating_mul(self.regexes.len().max(10));
        // A set too large to build is only slower: every regex is then run on its own.
        let set = regex::RegexSetBuilder::new(&self.relaxed)
            .case_insensitive(true)
            .size_limit(limit)
            .build()
            .ok();
        PatternIndex {
            set,
            regexes: self.regexes,
        }
    }
}

/// Every pattern of the lists registered with one builder: each compiled alone, and all of them
/// (without word boundaries) in one `RegexSet` that tells which can match at all.
#[derive(Debug, Clone)]
pub(crate) struct PatternIndex {
    set: Option<RegexSet>,
    regexes: Vec<Regex>,
}

impl PatternIndex {
    /// Finds the patterns that may match `lowered` in one pass of the set, then runs only
    /// those, each for its first match (exactly what running every pattern would find).
    pub fn scan<'t>(&self, lowered: &'t str) -> PatternScan<'t> {
        let mut found = vec![None; self.regexes.len()];
        let mut record = |i: usize| {
            let first = self.regexes.get(i).and_then(|r| r.find(lowered));
            // A blank first match counts as no match, as its collapsed text would be empty.
            if let Some(m) = first.filter(|m| m.as_str().chars().any(|c| !c.is_whitespace())) {
                found[i] = Some(m.range());
            }
        };
        match &self.set {
            Some(set) => set.matches(lowered).into_iter().for_each(&mut record),
            None => (0..self.regexes.len()).for_each(&mut record),
        }
        PatternScan {
            text: lowered,
            found,
        }
    }
}

/// Where each pattern of a [`PatternIndex`] first matched in one lowercased text.
pub(crate) struct PatternScan<'t> {
    text: &'t str,
    /// The first match of each pattern, `None` when it has none or it is blank.
    found: Vec<Option<Range<usize>>>,
}

impl PatternScan<'_> {
    fn range(&self, slot: usize) -> Option<Range<usize>> {
        self.found.get(slot).cloned().flatten()
    }
}
