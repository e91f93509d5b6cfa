//! The classifier and the knowledge base give exactly what the reference implementation
//! ([`super::reference`]) gives, on the corpus of [`super::corpus`], for the shipped config and
//! for an edge-case config (overlapping and duplicate keywords, prefixes, patterns that match
//! empty or blank text, scoring points that are not exact binary fractions).

use super::corpus;
use super::reference::Reference;
use crate::domain::{Category, Classification, Environment, Severity};
use crate::triage::{BUILTIN_KNOWLEDGE_BASE, BUILTIN_RULES, Triage, TriageInput};

/// Rules written to stress the matcher rather than to classify well.
const EDGE_RULES: &str = r#"
[scoring]
keyword_points = 0.1
phrase_points = 0.7
pattern_points = 0.3
min_score = 0.2
saturation = 1.3
confidence_floor = 0.2
confidence_span = 0.75
fallback_confidence = 0.11
self_service_min_confidence = 0.45

[escalation]
production_outage_keywords = ["down", "is down", "all users", "outage*", "in"]
production_outage_patterns = ['\b50\d\b', 'x*', '\s+']

[[rule]]
id = "overlap-a"
category = "usage"
subcategory = "login"
priority = "low"
complexity = "simple"
resolution = "self-service"
weight = 0.3
keywords = ["log", "log in", "login*", "in", "log in*", "ssl", "ssl", "café", "straße", "503"]
patterns = ['x*', '\s+', 'log ?in', '(?:)', '^ssl', 'SSL$', '(?-i)SSL']
context = ["users", "all users", "in", "log"]

[[rule]]
id = "overlap-b"
category = "usage"
subcategory = "login"
priority = "high"
complexity = "complex"
resolution = "self-service"
weight = 0.3
keywords = ["in", "log", "cert*", "certificate", "certificates", "err_cert*", "verify my dom*"]
exclude = ["zzz", "lorem ipsum*"]

[[rule]]
id = "tie-with-a"
category = "configuration"
subcategory = "ssl-certificates"
priority = "medium"
complexity = "moderate"
resolution = "collaborative"
keywords = ["ssl", "tls", "x"]
patterns = ['ssl|tls', 'err_cert_[a-z_]+', 'saml.{0,60}(?:signature|certificate)', '\bdig\b.*\b(?:cname|txt|a|mx)\b']
context = ["ssl", "certificat*"]
exclude = ["saml"]

[[rule]]
id = "generic-question"
category = "usage"
subcategory = "how-to"
priority = "low"
complexity = "simple"
resolution = "self-service"
generic = true
keywords = ["how do i", "how", "i", "question"]
patterns = ['\?']

[[rule]]
id = "context-only-evidence"
category = "other"
subcategory = "billing"
priority = "medium"
complexity = "simple"
resolution = "escalate"
weight = 10
keywords = ["refund"]
context = ["in", "log", "ssl", "the"]
"#;

/// A knowledge base whose keywords overlap each other and the edge rules.
const EDGE_KB: &str = r#"
[[solution]]
id = "kb-a"
title = "A"
category = "usage"
subcategory = "login"
keywords = ["log in", "log", "in", "login*", "ssl"]
solution_steps = ["Do it."]
automated_fix_available = false
estimated_time = 5
confidence = 0.77
requires_approval = false
reasoning = "Because. "

[[solution]]
id = "kb-b"
title = "B"
category = "usage"
subcategory = "how-to"
keywords = ["cert*", "certificate", "log in*", "in"]
solution_steps = ["Do that."]
automated_fix_available = true
estimated_time = 7
confidence = 0.9
requires_approval = true
reasoning = "Why not."
"#;

const SEVERITIES: [Option<Severity>; 5] = [
    None,
    Some(Severity::Low),
    Some(Severity::Medium),
    Some(Severity::High),
    Some(Severity::Critical),
];
const ENVIRONMENTS: [Option<Environment>; 4] = [
    None,
    Some(Environment::Production),
    Some(Environment::Staging),
    Some(Environment::Development),
];
const PRODUCTS: [Option<&str>; 4] = [
    None,
    Some("Help Center"),
    Some("SSO connector"),
    Some("Mobile app 🙂"),
];

/// Classifications the knowledge base is asked about besides the classifier's own: one per
/// category and subcategory of each entry, so entries are tried on texts that do not name them.
fn kb_classifications(kb_toml: &str) -> Vec<(Category, String)> {
    let kb: toml::Value = toml::from_str(kb_toml).expect("knowledge base parses");
    kb.get("solution")
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let category = Category::parse(e.get("category")?.as_str()?)?;
            Some((category, e.get("subcategory")?.as_str()?.to_string()))
        })
        .collect()
}

/// Compares the new and the reference implementation on every corpus input; returns how many
/// classifications were compared and which rule ids won.
fn compare(rules_toml: &str, kb_toml: &str) -> (usize, Vec<String>) {
    let triage = Triage::from_toml(rules_toml, kb_toml).expect("config loads");
    let reference = Reference::from_toml(rules_toml, kb_toml);
    let descriptions = corpus::descriptions(rules_toml, kb_toml);
    let kb_classes = kb_classifications(kb_toml);
    let mut compared = 0;
    let mut mismatches: Vec<String> = Vec::new();
    let mut winners: Vec<String> = Vec::new();
    for (n, description) in descriptions.iter().enumerate() {
        let inputs = [
            (None, None, None),
            (SEVERITIES[n % 5], ENVIRONMENTS[n % 4], PRODUCTS[n % 4]),
            (
                SEVERITIES[(n / 5) % 5],
                ENVIRONMENTS[1],
                PRODUCTS[(n + 2) % 4],
            ),
        ];
        for (severity, environment, product) in inputs {
            let input = TriageInput {
                description,
                severity,
                product,
                environment,
            };
            let expected = reference.classify(&input);
            let got = triage.classify(&input);
            compared += 1;
            if got != expected {
                mismatches.push(format!("{input:?}\n  new: {got:?}\n  old: {expected:?}"));
            }
            if let Some(rest) = expected.reasoning.strip_prefix("Matched rule \"") {
                winners.extend(rest.split('"').next().map(str::to_string));
            }
            let mut asked: Vec<Classification> = vec![expected];
            if let Some((category, subcategory)) = kb_classes.get(n % kb_classes.len().max(1)) {
                let mut forced = asked[0].clone();
                forced.category = *category;
                forced.subcategory = subcategory.clone();
                asked.push(forced);
            }
            for c in &asked {
                let expected = reference.solution_for(c, description);
                let got = triage.solution_for(c, description);
                if got != expected {
                    mismatches.push(format!(
                        "solution_for({}/{}, {description:?})\n  new: {got:?}\n  old: {expected:?}",
                        c.category, c.subcategory
                    ));
                }
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {compared} inputs differ from the reference; first ones:\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(5)].join("\n")
    );
    winners.sort();
    winners.dedup();
    (compared, winners)
}

#[test]
fn builtin_config_classifies_exactly_like_the_reference() {
    let (compared, winners) = compare(BUILTIN_RULES, BUILTIN_KNOWLEDGE_BASE);
    assert!(compared >= 600, "only {compared} inputs");
    // The corpus is varied enough that every rule wins somewhere.
    let rules: toml::Value = toml::from_str(BUILTIN_RULES).expect("rules parse");
    for rule in rules["rule"].as_array().into_iter().flatten() {
        let id = rule["id"].as_str().unwrap_or_default();
        assert!(winners.iter().any(|w| w == id), "rule {id} never wins");
    }
}

#[test]
fn edge_case_config_classifies_exactly_like_the_reference() {
    let (compared, winners) = compare(EDGE_RULES, EDGE_KB);
    assert!(compared >= 600, "only {compared} inputs");
    assert!(winners.len() >= 4, "winners: {winners:?}");
}

#[test]
fn a_config_without_keywords_classifies_exactly_like_the_reference() {
    let rules = r#"
[[rule]]
id = "only-patterns"
category = "defect"
subcategory = "crash"
priority = "high"
complexity = "moderate"
resolution = "collaborative"
patterns = ['\bcrash(?:es|ed)?\b', 'segfault']
"#;
    let empty_kb = "";
    let triage = Triage::from_toml(rules, empty_kb).expect("config loads");
    let reference = Reference::from_toml(rules, empty_kb);
    for description in ["it crashed", "Crashes. Segfault!", "crashing", ""] {
        let c = triage.classify(&super::input(description));
        assert_eq!(c, reference.classify(&super::input(description)));
        assert_eq!(triage.solution_for(&c, description), None);
    }
}
