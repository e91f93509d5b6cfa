//! Similar-case search: Okapi BM25 over the descriptions of the most recent cases.
//!
//! The index is a bounded window: recording case `capacity + 1` evicts the oldest. Statistics
//! (document frequencies, average length) always describe exactly the cases in the window, so
//! scores do not drift as cases come and go. A query scans the window, which is linear in
//! `capacity` and cheap at the sizes a support hub keeps (a few thousand short texts).

use std::cmp::Ordering;
use std::collections::{HashMap, VecDeque};

use parking_lot::RwLock;
use uuid::Uuid;

/// BM25 term-frequency saturation.
const K1: f64 = 1.2;
/// BM25 length normalisation.
const B: f64 = 0.75;

/// Words too common in support requests to say anything about similarity.
const STOP_WORDS: &[&str] = &[
    "a", "about", "after", "again", "all", "am", "an", "and", "any", "are", "as", "at", "be",
    "been", "before", "being", "but", "by", "can", "could", "did", "do", "does", "for", "from",
    "had", "has", "have", "he", "her", "here", "hi", "his", "how", "i", "if", "in", "into", "is",
    "it", "its", "just", "me", "my", "of", "on", "or", "our", "please", "she", "so", "some",
    "than", "thanks", "that", "the", "their", "them", "then", "there", "these", "they", "this",
    "to", "us", "was", "we", "were", "what", "when", "which", "while", "who", "why", "will",
    "with", "would", "you", "your",
];

/// Strips common English inflections so "crashes", "crashed" and "crashing" meet as "crash".
/// Deliberately light: it only has to treat a query and a document the same way.
fn stem(word: &str) -> &str {
    let mut w = word;
    for suffix in ["ing", "ed", "es", "s"] {
        if let Some(stripped) = w.strip_suffix(suffix) {
            if suffix == "s" && stripped.ends_with('s') {
                break; // "access", "address"
            }
            if stripped.chars().count() >= 3 {
                w = stripped;
                break;
            }
        }
    }
    match w.strip_suffix('e') {
        Some(stripped) if stripped.chars().count() >= 3 => stripped,
        _ => w,
    }
}

/// Lowercased, stemmed terms of `text`, without stop words and one-letter tokens.
pub(crate) fn terms(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| t.chars().count() > 1 && !STOP_WORDS.contains(t))
        .map(|t| stem(t).to_string())
        .collect()
}

/// One indexed case.
struct Doc {
    id: Uuid,
    /// Term frequencies.
    tf: HashMap<String, u32>,
    len: usize,
}

/// The window and its statistics; always consistent with each other.
#[derive(Default)]
struct Index {
    docs: VecDeque<Doc>,
    /// Number of documents in the window containing each term.
    df: HashMap<String, usize>,
    total_len: usize,
}

impl Index {
    fn remove_at(&mut self, position: usize) {
        let Some(doc) = self.docs.remove(position) else {
            return;
        };
        self.total_len -= doc.len;
        for term in doc.tf.keys() {
            if let Some(n) = self.df.get_mut(term) {
                *n -= 1;
                if *n == 0 {
                    self.df.remove(term);
                }
            }
        }
    }
}

/// Earlier cases with the most similar descriptions (BM25 over the most recent `capacity`).
///
/// Send + Sync: share one in an `Arc`; queries take a read lock, `record` a write lock.
pub struct SimilarCases {
    capacity: usize,
    index: RwLock<Index>,
}

impl SimilarCases {
    /// An empty index keeping at most `capacity` cases (0 keeps none: `similar` is always empty).
    pub fn new(capacity: usize) -> Self {
        SimilarCases {
            capacity,
            index: RwLock::new(Index::default()),
        }
    }

    /// Adds a case (replacing an earlier text recorded under the same id), evicting the oldest
    /// cases beyond capacity.
    pub fn record(&self, case_id: Uuid, text: &str) {
        if self.capacity == 0 {
            return;
        }
        let mut tf: HashMap<String, u32> = HashMap::new();
        let words = terms(text);
        for term in &words {
            *tf.entry(term.clone()).or_default() += 1;
        }
        let mut index = self.index.write();
        if let Some(position) = index.docs.iter().position(|d| d.id == case_id) {
            index.remove_at(position);
        }
        while index.docs.len() >= self.capacity {
            index.remove_at(0);
        }
        for term in tf.keys() {
            *index.df.entry(term.clone()).or_default() += 1;
        }
        index.total_len += words.len();
        index.docs.push_back(Doc {
            id: case_id,
            tf,
            len: words.len(),
        });
    }

    /// Up to `limit` ids, best first, excluding `exclude`; only cases with a positive score.
    /// Equal scores are ordered by id, so the answer is deterministic.
    pub fn similar(&self, text: &str, limit: usize, exclude: Option<Uuid>) -> Vec<Uuid> {
        if limit == 0 {
            return Vec::new();
        }
        let mut query = terms(text);
        query.sort();
        query.dedup();

        let index = self.index.read();
        let n = index.docs.len() as f64;
        if n == 0.0 || query.is_empty() {
            return Vec::new();
        }
        let avgdl = (index.total_len as f64 / n).max(1.0);
        // Idf per query term, in sorted term order so float sums are reproducible.
        let weights: Vec<(&str, f64)> = query
            .iter()
            .filter_map(|t| {
                let df = *index.df.get(t)? as f64;
                Some((t.as_str(), (1.0 + (n - df + 0.5) / (df + 0.5)).ln()))
            })
            .collect();

        let mut scored: Vec<(f64, Uuid)> = index
            .docs
            .iter()
            .filter(|d| Some(d.id) != exclude)
            .filter_map(|d| {
                let norm = K1 * (1.0 - B + B * d.len as f64 / avgdl);
                let score: f64 = weights
                    .iter()
                    .filter_map(|(t, idf)| {
                        let tf = f64::from(*d.tf.get(*t)?);
                        Some(idf * tf * (K1 + 1.0) / (tf + norm))
                    })
                    .sum();
                (score > 0.0).then_some((score, d.id))
            })
            .collect();
        scored.sort_by(|a, b| match b.0.total_cmp(&a.0) {
            Ordering::Equal => a.1.cmp(&b.1),
            other => other,
        });
        scored.into_iter().take(limit).map(|(_, id)| id).collect()
    }

    /// Number of cases in the window.
    pub fn len(&self) -> usize {
        self.index.read().docs.len()
    }

    /// True when no case is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for SimilarCases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimilarCases")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish()
    }
}
