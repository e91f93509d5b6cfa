//! Similar-case search: Okapi BM25 over the descriptions of the most recent cases.
//!
//! The index is a bounded window: recording case `capacity + 1` evicts the oldest. Statistics
//! (document frequencies, average length) always describe exactly the cases in the window, so
//! scores do not drift as cases come and go. An inverted index means a query touches only the
//! postings of its own terms, never the whole window through hashing.

use std::cmp::Ordering;
use std::collections::VecDeque;

use foldhash::HashMap;

use parking_lot::RwLock;
use uuid::Uuid;

/// BM25 term-frequency saturation.
const K1: f64 = 1.2;
/// BM25 length normalisation.
const B: f64 = 0.75;
/// A query scores at most this many of the newest postings of each term. A term present in more
/// cases than this is common (low idf) and the newest cases are the most relevant ones, so this
/// bounds the cost of a query during an incident, when many descriptions share every term.
const MAX_POSTINGS_PER_TERM: usize = 128;

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

/// A description as the index sees it, tokenised once for both the query that triages a case
/// and the record that indexes it afterwards.
#[derive(Debug, Clone)]
pub struct Terms {
    /// Every term, in text order (repeats kept: they are the term frequencies).
    words: Vec<String>,
}

impl Terms {
    /// The terms of `text` (see [`terms`]).
    pub fn of(text: &str) -> Self {
        Terms { words: terms(text) }
    }

    /// Distinct terms in sorted order with how often each occurs.
    fn counted(&self) -> Vec<(&str, u32)> {
        let mut sorted: Vec<&str> = self.words.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        let mut counted: Vec<(&str, u32)> = Vec::with_capacity(sorted.len());
        for term in sorted {
            match counted.last_mut() {
                Some((last, n)) if *last == term => *n += 1,
                _ => counted.push((term, 1)),
            }
        }
        counted
    }
}

/// One indexed case.
struct Doc {
    seq: u64,
    id: Uuid,
    /// Distinct terms, for unindexing.
    terms: Vec<String>,
    len: usize,
}

/// One posting: a document (by sequence number) containing a term, with its frequency.
#[derive(Clone, Copy)]
struct Posting {
    seq: u64,
    tf: u32,
    /// Length of the document, in terms.
    len: u32,
}

/// The window as an inverted index; always consistent with itself.
///
/// Documents get increasing sequence numbers, so every postings list is in sequence order and
/// evicting the oldest document pops the front of each of its lists. A query walks only the
/// postings of its own terms and accumulates scores in a dense array indexed by sequence.
#[derive(Default)]
struct Index {
    docs: VecDeque<Doc>,
    postings: HashMap<String, VecDeque<Posting>>,
    by_id: HashMap<Uuid, u64>,
    next_seq: u64,
    total_len: usize,
}

impl Index {
    fn position(&self, seq: u64) -> Option<usize> {
        // Sequence numbers are dense unless a case was recorded again (which leaves a gap), so
        // the offset from the front is almost always the position itself.
        let guess = usize::try_from(seq.checked_sub(self.docs.front()?.seq)?).ok()?;
        if self.docs.get(guess).is_some_and(|d| d.seq == seq) {
            return Some(guess);
        }
        self.docs.binary_search_by_key(&seq, |d| d.seq).ok()
    }

    fn remove_at(&mut self, position: usize) {
        let Some(doc) = self.docs.remove(position) else {
            return;
        };
        self.total_len -= doc.len;
        self.by_id.remove(&doc.id);
        for term in &doc.terms {
            let Some(list) = self.postings.get_mut(term) else {
                continue;
            };
            if list.front().is_some_and(|p| p.seq == doc.seq) {
                list.pop_front();
            } else if let Ok(i) = list.binary_search_by_key(&doc.seq, |p| p.seq) {
                list.remove(i);
            }
            if list.is_empty() {
                self.postings.remove(term);
            }
        }
    }
}

/// Per-thread score accumulator of [`SimilarCases::similar`]; all zero between queries.
#[derive(Default)]
struct Scratch {
    scores: Vec<f64>,
    touched: Vec<usize>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
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
        self.record_terms(case_id, &Terms::of(text));
    }

    /// [`SimilarCases::record`] for a text already tokenised.
    pub fn record_terms(&self, case_id: Uuid, terms: &Terms) {
        if self.capacity == 0 {
            return;
        }
        let len = terms.words.len();
        let counted = terms.counted();
        let mut index = self.index.write();
        if let Some(position) = index
            .by_id
            .get(&case_id)
            .copied()
            .and_then(|s| index.position(s))
        {
            index.remove_at(position);
        }
        while index.docs.len() >= self.capacity {
            index.remove_at(0);
        }
        let seq = index.next_seq;
        index.next_seq += 1;
        let mut distinct = Vec::with_capacity(counted.len());
        for (term, n) in counted {
            let posting = Posting {
                seq,
                tf: n,
                len: len as u32,
            };
            match index.postings.get_mut(term) {
                Some(list) => list.push_back(posting),
                None => {
                    index
                        .postings
                        .insert(term.to_string(), VecDeque::from([posting]));
                }
            }
            distinct.push(term.to_string());
        }
        index.total_len += len;
        index.by_id.insert(case_id, seq);
        index.docs.push_back(Doc {
            seq,
            id: case_id,
            terms: distinct,
            len,
        });
    }

    /// Up to `limit` ids, best first, excluding `exclude`; only cases with a positive score.
    /// Equal scores are ordered by id, so the answer is deterministic.
    pub fn similar(&self, text: &str, limit: usize, exclude: Option<Uuid>) -> Vec<Uuid> {
        self.similar_to(&Terms::of(text), limit, exclude)
    }

    /// [`SimilarCases::similar`] for a text already tokenised.
    pub fn similar_to(&self, terms: &Terms, limit: usize, exclude: Option<Uuid>) -> Vec<Uuid> {
        if limit == 0 {
            return Vec::new();
        }
        let query = terms.counted();

        let index = self.index.read();
        if index.docs.is_empty() {
            return Vec::new();
        }
        let n = index.docs.len() as f64;
        let avgdl = (index.total_len as f64 / n).max(1.0);
        // Scores accumulate in a dense per-thread scratch array indexed by sequence offset,
        // reused across queries: only the offsets a query touched are read back and reset, so a
        // query costs O(postings read), never O(window), and allocates nothing once warm. Terms
        // are walked in sorted order so each document's float sum is reproducible.
        let first = index.docs.front().map_or(0, |d| d.seq);
        let window = (index.next_seq - first) as usize;
        let mut scored: Vec<(f64, Uuid)> = Vec::new();
        SCRATCH.with_borrow_mut(|Scratch { scores, touched }| {
            if scores.len() < window {
                scores.resize(window, 0.0);
            }
            // norm(len) = K1 * (1 - B + B * len / avgdl) = fixed + per_len * len.
            let fixed = K1 * (1.0 - B);
            let per_len = K1 * B / avgdl;
            for (term, _) in &query {
                let Some(list) = index.postings.get(*term) else {
                    continue;
                };
                let df = list.len() as f64;
                let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
                let weight = idf * (K1 + 1.0);
                for p in list.iter().rev().take(MAX_POSTINGS_PER_TERM) {
                    let tf = f64::from(p.tf);
                    let offset = (p.seq - first) as usize;
                    if scores[offset] == 0.0 {
                        touched.push(offset);
                    }
                    scores[offset] += weight * tf / (tf + fixed + per_len * f64::from(p.len));
                }
            }
            scored.reserve(touched.len());
            for offset in touched.drain(..) {
                let score = std::mem::take(&mut scores[offset]);
                let Some(position) = index.position(first + offset as u64) else {
                    continue;
                };
                let id = index.docs[position].id;
                if score > 0.0 && Some(id) != exclude {
                    scored.push((score, id));
                }
            }
        });
        let by_rank = |a: &(f64, Uuid), b: &(f64, Uuid)| match b.0.total_cmp(&a.0) {
            Ordering::Equal => a.1.cmp(&b.1),
            other => other,
        };
        if scored.len() > limit {
            scored.select_nth_unstable_by(limit - 1, by_rank);
            scored.truncate(limit);
        }
        scored.sort_by(by_rank);
        scored.into_iter().map(|(_, id)| id).collect()
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
