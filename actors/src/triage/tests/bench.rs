//! A hand-run timing of classification and solution lookup, the new implementation against the
//! reference (the implementation before the single-pass matcher). Ignored by default; run with
//! `cargo test --release -p casehub-actors triage::tests::bench -- --ignored --nocapture`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use super::reference::Reference;
use crate::domain::{Environment, Severity};
use crate::triage::{BUILTIN_KNOWLEDGE_BASE, BUILTIN_RULES, Triage, TriageInput};

/// A typical intake description, about 150 characters.
const SHORT: &str = "Our SSL certificate expired yesterday and Chrome shows NET::ERR_CERT_DATE_INVALID \
                     on help.acme.com, so customers cannot log in to the portal.";

/// Paragraphs a long description is made of: mostly prose, a few terms the rules know.
const PARAGRAPHS: [&str; 4] = [
    "Since the maintenance window on Tuesday several of our agents report that the dashboard \
     takes a long time to open and sometimes shows an error banner. ",
    "We checked the browser console and saw a few warnings but nothing obviously related; \
     the network tab shows requests that wait for a while before they complete. ",
    "Our IT team also rotated the certificate of the identity provider last week, and a \
     handful of users had to log in twice before the redirect worked again. ",
    "Please let us know what further information you need, we can share logs or a HAR file. ",
];

/// About `len` bytes of description, with `extra` appended once in the middle.
fn long_text(len: usize, extra: &str) -> String {
    let mut text = String::with_capacity(len + 200);
    let mut n = 0;
    while text.len() < len {
        text.push_str(PARAGRAPHS[n % PARAGRAPHS.len()]);
        if n == 20 {
            text.push_str(extra);
        }
        n += 1;
    }
    text
}

/// Mean time of `f` over enough runs to take about half a second, after a warm-up.
fn time(mut f: impl FnMut()) -> Duration {
    for _ in 0..20 {
        f();
    }
    let start = Instant::now();
    let mut runs: u32 = 0;
    while start.elapsed() < Duration::from_millis(500) {
        f();
        runs += 1;
    }
    start.elapsed() / runs
}

#[test]
#[ignore = "timing, run by hand in release mode"]
fn classify_timing() {
    let triage = Triage::builtin().expect("builtin config");
    let reference = Reference::from_toml(BUILTIN_RULES, BUILTIN_KNOWLEDGE_BASE);
    let long = long_text(10_000, "");
    let long_unicode = long_text(10_000, "Grüße aus Köln — “quotes” 🙂 ");
    let cases = [
        ("150 chars", SHORT),
        ("10k chars", long.as_str()),
        ("10k chars, non-ASCII", long_unicode.as_str()),
    ];
    for (name, description) in cases {
        let input = TriageInput {
            description,
            severity: Some(Severity::High),
            product: Some("Help Center"),
            environment: Some(Environment::Production),
        };
        let classification = triage.classify(&input);
        assert_eq!(classification, reference.classify(&input));
        let old = time(|| {
            black_box(reference.classify(black_box(&input)));
        });
        let new = time(|| {
            black_box(triage.classify(black_box(&input)));
        });
        let old_kb = time(|| {
            black_box(reference.solution_for(&classification, black_box(description)));
        });
        let new_kb = time(|| {
            black_box(triage.solution_for(&classification, black_box(description)));
        });
        println!(
            "{name} ({} bytes): classify {old:?} -> {new:?}; solution_for {old_kb:?} -> {new_kb:?}",
            description.len()
        );
    }
}
