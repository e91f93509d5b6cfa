//! Similar-case search.

use uuid::Uuid;

use crate::triage::SimilarCases;
use crate::triage::similar;

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

#[test]
fn similar_cases_rank_the_closest_description_first() {
    let index = SimilarCases::new(100);
    index.record(id(1), "SSL certificate expired on our custom domain");
    index.record(id(2), "Password reset email never arrives");
    index.record(id(3), "Dashboard loads slowly in the afternoon");
    index.record(id(4), "The login page shows an SSL warning");
    assert_eq!(index.len(), 4);

    let found = index.similar("our ssl certificate has expired", 10, None);
    assert_eq!(found.first(), Some(&id(1)));
    assert_eq!(found.get(1), Some(&id(4)));
    assert_eq!(
        found.len(),
        2,
        "only cases sharing a term score above zero: {found:?}"
    );

    assert_eq!(
        index.similar("password reset not arriving", 1, None),
        vec![id(2)]
    );
    assert!(index.similar("zebra", 5, None).is_empty());
    assert!(index.similar("ssl", 0, None).is_empty());
}

#[test]
fn similar_cases_respect_exclude_and_break_ties_by_id() {
    let index = SimilarCases::new(10);
    index.record(id(9), "webhook deliveries failing");
    index.record(id(3), "webhook deliveries failing");
    index.record(id(5), "webhook deliveries failing");
    assert_eq!(
        index.similar("webhook failing", 10, None),
        vec![id(3), id(5), id(9)]
    );
    assert_eq!(
        index.similar("webhook failing", 10, Some(id(5))),
        vec![id(3), id(9)]
    );
}

#[test]
fn similar_cases_evict_the_oldest_beyond_capacity() {
    let index = SimilarCases::new(2);
    index.record(id(1), "printer on fire");
    index.record(id(2), "printer jammed");
    index.record(id(3), "printer offline");
    assert_eq!(index.len(), 2);
    assert_eq!(index.similar("printer", 10, None), vec![id(2), id(3)]);
    assert!(index.similar("fire", 10, None).is_empty());

    // Recording an id again replaces its text instead of adding a second copy.
    index.record(id(3), "scanner offline");
    assert_eq!(index.len(), 2);
    assert_eq!(index.similar("printer", 10, None), vec![id(2)]);

    let none = SimilarCases::new(0);
    none.record(id(1), "anything");
    assert!(none.is_empty());
}

#[test]
fn similar_terms_are_stemmed_and_filtered() {
    assert_eq!(
        similar::terms("The crashes crashed"),
        vec!["crash", "crash"]
    );
    assert_eq!(
        similar::terms("Expired, expires, expiring"),
        vec!["expir"; 3]
    );
    assert_eq!(
        similar::terms("access addresses"),
        vec!["access", "address"]
    );
}
