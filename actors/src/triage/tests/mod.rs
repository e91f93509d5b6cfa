//! Tests of the built-in rules, the knowledge base, similar-case search and text matching, and
//! the equivalence of the fast classifier with the reference one (`reference`, `equivalence`).

mod bench;
mod classify;
mod corpus;
mod equivalence;
mod knowledge;
mod reference;
mod similar;
mod text;

use std::sync::OnceLock;

use super::*;

/// The built-in triage, built once for all tests (compiling the rules is the slow part).
fn triage() -> &'static Triage {
    static TRIAGE: OnceLock<Triage> = OnceLock::new();
    TRIAGE.get_or_init(|| match Triage::builtin() {
        Ok(t) => t,
        Err(e) => panic!("builtin triage config is invalid: {e}"),
    })
}

fn input(description: &str) -> TriageInput<'_> {
    TriageInput {
        description,
        severity: None,
        product: None,
        environment: None,
    }
}

#[test]
fn triage_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Triage>();
    assert_send_sync::<SimilarCases>();
}
