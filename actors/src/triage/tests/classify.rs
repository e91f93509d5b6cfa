//! Classification by the built-in rules.

use std::collections::BTreeSet;

use super::{input, triage};
use crate::domain::{Category, Complexity, Environment, Priority, ResolutionPath, Severity};
use crate::triage::{Triage, TriageInput};

#[test]
fn builtin_loads_with_enough_rules() {
    let t = triage();
    assert!(t.rules_len() >= 30, "only {} rules", t.rules_len());
}

#[test]
fn classification_is_deterministic() {
    let t = triage();
    let i = TriageInput {
        description: "Our SSL certificate expired and browsers say the site is not secure",
        severity: Some(Severity::High),
        product: Some("Help Center"),
        environment: Some(Environment::Production),
    };
    let first = t.classify(&i);
    for _ in 0..5 {
        assert_eq!(t.classify(&i), first);
    }
    assert_eq!(
        Triage::builtin().map(|t2| t2.classify(&i)).ok(),
        Some(first)
    );
}

#[rustfmt::skip]
const REPRESENTATIVE: &[(&str, Category, &str)] = &[
    ("Our SSL certificate expired yesterday, Chrome shows NET::ERR_CERT_DATE_INVALID", Category::Configuration, "ssl-certificates"),
    ("The CNAME for help.acme.com is set but the custom domain still says not verified", Category::Configuration, "dns"),
    ("Login issues with SSO: Okta returns Invalid SAML response, audience mismatch", Category::Configuration, "sso-saml"),
    ("Every request with our API key returns 401 unauthorized since this morning", Category::Configuration, "api-keys"),
    ("Our webhook endpoint was disabled and we are not receiving events anymore", Category::Configuration, "webhooks"),
    ("Emails sent to our customers land in spam, do we need SPF or DKIM?", Category::Configuration, "email-delivery"),
    ("Unable to reset password", Category::Usage, "password-reset"),
    ("I lost my phone and can't get a 2FA code from my authenticator", Category::Usage, "mfa"),
    ("Our sync job gets HTTP 429 too many requests after a few minutes", Category::Usage, "rate-limits"),
    ("Page loads slowly on dashboard", Category::Defect, "performance"),
    ("The app crashes with a white screen when I open a case, console shows Uncaught TypeError", Category::Defect, "crash"),
    ("I accidentally deleted a project, how do I restore it?", Category::Usage, "restore-deleted"),
    ("CSV import failed: 120 rows rejected because of the column mapping", Category::Setup, "data-import"),
    ("The docker container of the agent exits with code 1 during install", Category::Setup, "installation"),
    ("Slack integration got disconnected, token revoked, how do we reconnect?", Category::Setup, "integration"),
    ("Feature request: it would be nice to have a Kanban board view", Category::Enhancement, "feature-request"),
    ("Do you integrate with ServiceNow? A native integration would help us", Category::Enhancement, "integration-request"),
    ("I was charged twice for my subscription this month, please refund", Category::Other, "billing"),
    ("We leaked an API key in a public GitHub repository", Category::Other, "security"),
    ("We need a signed DPA and your GDPR subprocessor list", Category::Other, "compliance"),
    ("Our integration with Salesforce stopped syncing contacts", Category::Setup, "integration"),
    ("We want to migrate 20k tickets from Zendesk", Category::Setup, "data-import"),
    ("Where can I find the invoice for last month?", Category::Other, "billing"),
    ("How do I change the language of the agent console?", Category::Usage, "how-to"),
    ("Whole team lost access after the Okta certificate rotation, SAML signature invalid", Category::Configuration, "sso-saml"),
    ("The mobile app freezes when I upload an attachment", Category::Defect, "crash"),
];

#[test]
fn representative_descriptions_land_in_their_subcategory() {
    let t = triage();
    for &(description, category, subcategory) in REPRESENTATIVE {
        let c = t.classify(&input(description));
        assert_eq!(
            (c.category, c.subcategory.as_str()),
            (category, subcategory),
            "{description:?} -> {}",
            c.reasoning
        );
        assert!(
            c.confidence >= 0.45,
            "{description:?}: confidence {}",
            c.confidence
        );
        assert!(!c.tags.is_empty());
        assert!(c.similar_cases.is_empty());
    }
}

#[test]
fn classification_fields_are_consistent() {
    let t = triage();
    let c = t.classify(&input(
        "Our SSL certificate expired and the site says not secure: x509 certificate has expired",
    ));
    assert_eq!(c.resolution_path, c.suggested_resolution_path);
    assert_eq!(c.resolution_path, ResolutionPath::SelfService);
    assert_eq!(c.estimated_complexity, Complexity::Simple);
    assert_eq!(c.confidence, (c.confidence * 100.0).round() / 100.0);
    assert!(
        c.confidence > 0.7 && c.confidence <= 1.0,
        "{}",
        c.confidence
    );
    assert!(c.reasoning.contains("\"certificate\""), "{}", c.reasoning);
    assert!(c.tags.contains(&"ssl".to_string()), "{:?}", c.tags);
    assert!(
        c.tags.contains(&"certificate-expired".to_string()),
        "{:?}",
        c.tags
    );
    let unique: BTreeSet<_> = c.tags.iter().collect();
    assert_eq!(unique.len(), c.tags.len(), "duplicate tags: {:?}", c.tags);
}

#[test]
fn severity_raises_priority_but_never_lowers_it() {
    let t = triage();
    let text = "Where can I find the documentation on how to export a report?";
    let base = t.classify(&input(text));
    assert_eq!(base.priority, Priority::Low);
    let high = t.classify(&TriageInput {
        severity: Some(Severity::High),
        ..input(text)
    });
    assert_eq!(high.priority, Priority::High);
    assert!(high.reasoning.contains("severity"), "{}", high.reasoning);

    let ssl = "SSL certificate expired on our custom domain";
    let low = t.classify(&TriageInput {
        severity: Some(Severity::Low),
        ..input(ssl)
    });
    assert_eq!(low.priority, Priority::High);
}

#[test]
fn critical_priority_escalates() {
    let t = triage();
    let c = t.classify(&TriageInput {
        severity: Some(Severity::Critical),
        ..input("Unable to reset password")
    });
    assert_eq!(c.priority, Priority::Critical);
    assert_eq!(c.resolution_path, ResolutionPath::Escalate);

    let outage = t.classify(&TriageInput {
        environment: Some(Environment::Production),
        ..input("The dashboard is down for all users, everything returns 503")
    });
    assert_eq!(outage.priority, Priority::Critical);
    assert_eq!(outage.resolution_path, ResolutionPath::Escalate);
    assert!(outage.tags.contains(&"production-outage".to_string()));

    let slow = "Page loads slowly on dashboard for all users";
    let staging = t.classify(&TriageInput {
        environment: Some(Environment::Staging),
        ..input(slow)
    });
    assert_ne!(staging.priority, Priority::Critical);
    let production = t.classify(&TriageInput {
        environment: Some(Environment::Production),
        ..input(slow)
    });
    assert_eq!(production.priority, Priority::Critical);
}

#[test]
fn escalating_rules_escalate_without_severity() {
    let t = triage();
    for text in [
        "Our account was hacked, there is a suspicious login from an unknown IP",
        "Half of our contacts are missing, looks like data loss after the sync",
    ] {
        let c = t.classify(&input(text));
        assert_eq!(
            c.resolution_path,
            ResolutionPath::Escalate,
            "{text}: {}",
            c.reasoning
        );
    }
}

#[test]
fn enhancements_and_complex_cases_are_collaborative() {
    let t = triage();
    let c = t.classify(&input(
        "Feature request: please add dark mode to the mobile app",
    ));
    assert_eq!(c.category, Category::Enhancement);
    assert_eq!(c.resolution_path, ResolutionPath::Collaborative);
}

#[test]
fn gibberish_falls_back_to_other_with_low_confidence() {
    let t = triage();
    for text in [
        "asdf qwerty zxcv lorem ipsum",
        "",
        "🙂🙂🙂",
        "blorp the fizzbin wibbles",
    ] {
        let c = t.classify(&input(text));
        assert_eq!(
            (c.category, c.subcategory.as_str()),
            (Category::Other, "general"),
            "{text:?}"
        );
        assert!(c.confidence < 0.3, "{}", c.confidence);
        assert_eq!(c.resolution_path, ResolutionPath::Collaborative);
        assert!(t.solution_for(&c, text).is_none());
    }
    let low = t.classify(&TriageInput {
        severity: Some(Severity::Low),
        ..input("blorp")
    });
    assert_eq!(low.priority, Priority::Low);
    let critical = t.classify(&TriageInput {
        severity: Some(Severity::Critical),
        ..input("blorp")
    });
    assert_eq!(critical.resolution_path, ResolutionPath::Escalate);
}
