//! The knowledge base and the validation of both config files.

use super::{input, triage};
use crate::domain::Category;
use crate::triage::knowledge::KnowledgeBase;
use crate::triage::rules::RuleBook;
use crate::triage::{BUILTIN_KNOWLEDGE_BASE, BUILTIN_RULES, Triage, TriageError};

const MINIMAL_KB: &str = r#"
[[solution]]
id = "kb-x"
title = "X"
category = "usage"
subcategory = "login"
keywords = ["login"]
solution_steps = ["Do it."]
automated_fix_available = false
estimated_time = 5
confidence = 0.5
requires_approval = false
reasoning = "Because."
"#;

#[test]
fn builtin_knowledge_base_spans_all_categories() {
    let t = triage();
    assert!(
        t.knowledge_base_len() >= 24,
        "only {} entries",
        t.knowledge_base_len()
    );
    let kb = KnowledgeBase::from_toml(BUILTIN_KNOWLEDGE_BASE).expect("builtin kb");
    for category in Category::ALL {
        let n = kb
            .index()
            .iter()
            .filter(|e| e.category == *category)
            .count();
        assert!(n >= 2, "{category}: only {n} entries");
    }
    for row in kb.index() {
        assert!(
            (3..=7).contains(&row.steps),
            "{}: {} steps",
            row.id,
            row.steps
        );
    }
}

#[test]
fn every_knowledge_base_entry_is_reachable_from_its_keywords() {
    let t = triage();
    let kb = KnowledgeBase::from_toml(BUILTIN_KNOWLEDGE_BASE).expect("builtin kb");
    for row in kb.index() {
        let description = row.keywords.join(", ").replace('*', "");
        let c = t.classify(&input(&description));
        assert_eq!(
            (c.category, c.subcategory.as_str()),
            (row.category, row.subcategory.as_str()),
            "{}: {description:?} -> {}",
            row.id,
            c.reasoning
        );
        let solution = t.solution_for(&c, &description);
        assert_eq!(
            solution.as_ref().map(|s| s.id.as_str()),
            Some(row.id.as_str()),
            "{description:?}"
        );
        let solution = solution.expect("checked above");
        assert!(solution.confidence > 0.0 && solution.confidence <= 1.0);
        assert!(
            !solution.references.is_empty(),
            "{} has no references",
            row.id
        );
        assert!(
            solution
                .references
                .iter()
                .all(|r| r.url.starts_with("https://docs.casehub.example/"))
        );
    }
}

#[test]
fn every_self_service_rule_has_a_knowledge_base_entry() {
    let rules = RuleBook::from_toml(BUILTIN_RULES).expect("builtin rules");
    let kb = KnowledgeBase::from_toml(BUILTIN_KNOWLEDGE_BASE).expect("builtin kb");
    let index = kb.index();
    for (category, subcategory) in rules.self_service_subcategories() {
        assert!(
            index
                .iter()
                .any(|e| e.category == category && e.subcategory == subcategory),
            "self-service rule {category}/{subcategory} has no knowledge-base entry"
        );
    }
}

#[test]
fn solution_for_matches_on_category_and_keywords() {
    let t = triage();
    let text = "Page loads slowly on dashboard";
    let c = t.classify(&input(text));
    let s = t.solution_for(&c, text).expect("performance solution");
    assert_eq!(s.id, "kb-perf-cache-flush");
    assert!(s.automated_fix_available);
    assert!(
        s.reasoning.contains("defect/performance"),
        "{}",
        s.reasoning
    );

    // Same subcategory, the keywords pick between entries.
    let text = "Webhook signature mismatch: our HMAC never equals the header";
    let c = t.classify(&input(text));
    assert_eq!(
        t.solution_for(&c, text).map(|s| s.id),
        Some("kb-webhook-signature".to_string())
    );
}

#[test]
fn from_toml_rejects_a_bad_regex_naming_the_rule() {
    let rules = r#"
[[rule]]
id = "broken-pattern"
category = "defect"
subcategory = "crash"
priority = "high"
complexity = "simple"
resolution = "collaborative"
patterns = ['(unclosed']
"#;
    let err = Triage::from_toml(rules, MINIMAL_KB)
        .expect_err("bad regex")
        .to_string();
    assert!(
        err.contains("broken-pattern") && err.contains("regex"),
        "{err}"
    );
}

#[test]
fn from_toml_rejects_an_unknown_category_naming_the_entry() {
    let rules = r#"
[[rule]]
id = "weird"
category = "security"
subcategory = "x"
priority = "high"
complexity = "simple"
resolution = "escalate"
keywords = ["x"]
"#;
    let err = Triage::from_toml(rules, MINIMAL_KB)
        .expect_err("unknown category")
        .to_string();
    assert!(
        err.contains("\"weird\"") && err.contains("unknown category"),
        "{err}"
    );

    let kb = MINIMAL_KB.replace("category = \"usage\"", "category = \"sales\"");
    let err = Triage::from_toml(BUILTIN_RULES, &kb)
        .expect_err("unknown category")
        .to_string();
    assert!(
        err.contains("knowledge_base.toml") && err.contains("\"kb-x\""),
        "{err}"
    );
}

#[test]
fn from_toml_rejects_other_invalid_entries() {
    let kb = MINIMAL_KB.replace("solution_steps = [\"Do it.\"]", "solution_steps = []");
    let err = Triage::from_toml(BUILTIN_RULES, &kb)
        .expect_err("empty steps")
        .to_string();
    assert!(
        err.contains("kb-x") && err.contains("solution_steps"),
        "{err}"
    );

    let twice = format!("{MINIMAL_KB}{MINIMAL_KB}");
    let err = Triage::from_toml(BUILTIN_RULES, &twice)
        .expect_err("duplicate")
        .to_string();
    assert!(err.contains("duplicate"), "{err}");

    let err = Triage::from_toml("[[rule]]\nid = 3", MINIMAL_KB).expect_err("not a rule");
    assert!(
        matches!(
            err,
            TriageError::Parse {
                file: "triage_rules.toml",
                ..
            }
        ),
        "{err}"
    );

    let err =
        Triage::from_toml("[scoring]\nsaturation = -1.0\n", MINIMAL_KB).expect_err("bad scoring");
    assert!(err.to_string().contains("saturation"), "{err}");
}
