//! Text normalisation, keyword and pattern matching.

use super::{corpus, reference};
use crate::triage::rules::PatternIndexBuilder;
use crate::triage::text::{KeywordIndexBuilder, KeywordSet, Prepared, lowercase, normalize};
use crate::triage::{BUILTIN_KNOWLEDGE_BASE, BUILTIN_RULES};

/// The words each keyword of `keywords` finds in `text`, in list order.
fn found(keywords: &[&str], text: &str) -> Vec<String> {
    let (set, index) = one_set(keywords);
    set.matches(&index.scan(&Prepared::new(text)))
        .into_iter()
        .map(|(_, s)| s)
        .collect()
}

fn one_set(keywords: &[&str]) -> (KeywordSet, crate::triage::text::KeywordIndex) {
    let mut builder = KeywordIndexBuilder::default();
    let owned: Vec<String> = keywords.iter().map(|k| k.to_string()).collect();
    let set = builder.set(&owned).expect("valid keywords");
    (set, builder.build().expect("index builds"))
}

#[test]
fn normalize_collapses_punctuation() {
    assert_eq!(normalize("  API-Key: INVALID!! "), "api key invalid");
    assert_eq!(normalize("can't log-in"), "can t log in");
    assert_eq!(normalize("err_cert_date_invalid"), "err_cert_date_invalid");
    // "İ" lowercases to "i" and a combining dot, which is not a letter: a word break.
    assert_eq!(normalize("Grüße, İSTANBUL — ΣΑΣ"), "grüße i stanbul σασ");
}

#[test]
fn fast_normalising_and_lowercasing_agree_with_the_plain_definitions() {
    let tricky = [
        "ΣΑΣ ΟΔΟΣ. Σ ΑΣ' aΣb Σ",
        "İstanbul KELVIN \u{212a} ǅ ﬁle ẞ Straße",
        "mixed: ASCII, then é, then ASCII again — and 🙂 at the end",
        "a\u{301}\u{300}b __x__ 1\u{2002}2",
        "ÀÉÎÕÜ àéîõü ΑΒΓ абв АБВ",
    ];
    let corpus = corpus::descriptions(BUILTIN_RULES, BUILTIN_KNOWLEDGE_BASE);
    for text in corpus.iter().map(String::as_str).chain(tricky) {
        assert_eq!(normalize(text), reference::normalize(text), "{text:?}");
        assert_eq!(lowercase(text), text.to_lowercase(), "{text:?}");
    }
}

#[test]
fn keywords_match_whole_words_and_prefixes() {
    assert_eq!(
        found(
            &["certificat*", "dns", "api key"],
            "Our certificates broke; the API-key works. No DNSSEC here."
        ),
        vec!["certificates".to_string(), "api key".to_string()]
    );
}

#[test]
fn a_prefix_keyword_reports_its_leftmost_occurrence() {
    assert_eq!(
        found(
            &["cert*", "log in*"],
            "certs, then cert, then certificates; log into, log in"
        ),
        vec!["certs".to_string(), "log into".to_string()]
    );
}

#[test]
fn keywords_shared_between_sets_are_matched_for_each() {
    let mut builder = KeywordIndexBuilder::default();
    let a = builder.set(&["ssl".into(), "tls".into()]).expect("valid");
    let b = builder.set(&["tls".into(), "ssl*".into()]).expect("valid");
    let index = builder.build().expect("index builds");
    let prepared = Prepared::new("TLS handshake, sslv3");
    let scan = index.scan(&prepared);
    let words = |set: &KeywordSet| -> Vec<String> {
        set.matches(&scan).into_iter().map(|(_, s)| s).collect()
    };
    assert_eq!(words(&a), vec!["tls".to_string()]);
    assert_eq!(words(&b), vec!["tls".to_string(), "sslv3".to_string()]);
    assert!(a.any(&scan) && b.any(&scan));
}

#[test]
fn empty_keyword_is_rejected() {
    let mut builder = KeywordIndexBuilder::default();
    assert!(builder.set(&["--".into()]).is_err());
    assert!(builder.set(&["a*b".into()]).is_err());
}

#[test]
fn keywords_match_at_the_edges_of_the_text() {
    assert_eq!(
        found(&["ssl", "expired*"], "SSL expired"),
        vec!["ssl".to_string(), "expired".to_string()]
    );
    let (set, index) = one_set(&["ssl", "expired*"]);
    assert!(!set.any(&index.scan(&Prepared::new("tls"))));
}

#[test]
fn patterns_report_their_first_non_blank_match() {
    let mut builder = PatternIndexBuilder::default();
    let list = builder
        .list(&[
            r"\b50[23]\b".into(),
            r"\s+".into(),
            "x*".into(),
            "gate\\s+way".into(),
        ])
        .expect("valid patterns");
    assert!(builder.list(&["(unclosed".into()]).is_err());
    let index = builder.build();
    let text = "error 502 then 503 from the gate \n   way";
    let scan = index.scan(text);
    assert_eq!(
        list.matches(&scan),
        vec!["502".to_string(), "gate way".to_string()]
    );
    assert_eq!(list.count(&scan), 2);
}

#[test]
fn word_boundaries_stay_unicode_aware_on_non_ascii_text() {
    let mut builder = PatternIndexBuilder::default();
    let patterns = [
        r"\b500\b",
        r"\bcafé\b",
        r"a\\b",
        r"\b{start}ssl\b{end}",
        r"x\Bz",
    ];
    let lists: Vec<_> = patterns
        .iter()
        .map(|p| builder.list(&[p.to_string()]).expect("valid pattern"))
        .collect();
    let index = builder.build();
    let matched = |text: &str| -> Vec<bool> {
        let scan = index.scan(text);
        lists.iter().map(|l| l.count(&scan) == 1).collect()
    };
    // "é" is a word character: no boundary between it and "500"; "—" is not one.
    assert_eq!(matched("é500 cafés a b ssls x"), vec![false; 5]);
    assert_eq!(
        matched("—500— café! a\\b ssl xxzz"),
        vec![true, true, true, true, true]
    );
}

#[test]
fn an_index_without_keywords_or_patterns_finds_nothing() {
    let mut keywords = KeywordIndexBuilder::default();
    let set = keywords.set(&[]).expect("an empty set is valid");
    let index = keywords.build().expect("an empty index builds");
    assert!(!set.any(&index.scan(&Prepared::new("anything at all"))));
    let mut patterns = PatternIndexBuilder::default();
    let list = patterns.list(&[]).expect("an empty list is valid");
    assert_eq!(list.count(&patterns.build().scan("anything")), 0);
}
