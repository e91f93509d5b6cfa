//! Turning the reference rule book's scores into a classification: `triage/rules/classify.rs`
//! as it was before the single-pass matcher, unchanged on purpose.

use super::super::text::Prepared;
use super::round2;
use super::{Hit, Rule, RuleBook};
use crate::domain::{
    Category, Classification, Complexity, Environment, Priority, ResolutionPath, Severity,
};
use crate::triage::TriageInput;

impl RuleBook {
    /// Scores every rule and builds the classification (see the module docs for the policy).
    pub fn classify(&self, input: &TriageInput<'_>) -> Classification {
        let raw = format!("{}\n{}", input.description, input.product.unwrap_or(""));
        let lowered = raw.to_lowercase();
        let prepared = Prepared::new(&raw);

        let hits: Vec<Hit> = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| rule.hit(i, &prepared, &lowered, &self.scoring))
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

        let mut outage_terms: Vec<String> = self
            .outage_keywords
            .matches(&prepared)
            .into_iter()
            .map(|(_, found)| found)
            .collect();
        outage_terms.extend(self.outage_patterns.matches(&lowered));
        let production_outage =
            input.environment == Some(Environment::Production) && !outage_terms.is_empty();

        match best.and_then(|h| self.rules.get(h.rule).map(|r| (h, r))) {
            Some((hit, rule)) => {
                self.matched(input, &hits, hit, rule, production_outage, &outage_terms)
            }
            None => self.fallback(input.severity, production_outage, &outage_terms),
        }
    }

    fn matched(
        &self,
        input: &TriageInput<'_>,
        hits: &[Hit],
        hit: &Hit,
        rule: &Rule,
        production_outage: bool,
        outage_terms: &[String],
    ) -> Classification {
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
        for tag in rule.tags.iter().chain(hit.keyword_tags.iter()) {
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
            quoted(&hit.terms),
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

    fn fallback(
        &self,
        severity: Option<Severity>,
        production_outage: bool,
        outage_terms: &[String],
    ) -> Classification {
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
