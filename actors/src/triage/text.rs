//! Text normalisation and whole-word term matching shared by the rules and the knowledge base.
//!
//! Keywords are matched on a normalised copy of the text: lowercased, with every run of
//! characters that are not letters, digits or `_` collapsed to one space. The same treatment of
//! the keyword means the keyword "api key" matches "API-Key", "api key" and "API key:" alike, and
//! only whole words: "dns" does not match "dnssec". A trailing `*` makes the last word a prefix
//! ("certificat*" matches "certificate" and "certificates").
//!
//! Matching is done in one pass per text, not one per keyword: every keyword set is registered
//! with a [`KeywordIndex`] (one Aho-Corasick automaton over all their needles), whose scan the
//! sets then read. A keyword's needle is its words with the surrounding spaces of the padded
//! text, so a needle occurrence *is* a whole-word (or, for a prefix, word-start) match and needs
//! no further boundary check.

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

/// Lowercases `text` and collapses every run of non-word characters into a single space.
pub(crate) fn normalize(text: &str) -> String {
    let padded = padded_normalized(text);
    let inner = padded.get(1..padded.len().saturating_sub(1));
    inner.unwrap_or_default().to_string()
}

/// What each ASCII byte becomes in normalised text: itself lowercased if it is a word character
/// (letter, digit or `_`), a space if not.
static ASCII_NORMAL: [u8; 128] = {
    let mut table = [b' '; 128];
    let mut b = 0;
    while b < 128 {
        let byte = b as u8;
        if byte.is_ascii_alphanumeric() || byte == b'_' {
            table[b] = byte.to_ascii_lowercase();
        }
        b += 1;
    }
    table
};

/// How many bytes `bytes` starts with that are ASCII. Checked a chunk at a time: a byte-by-byte
/// search took a third of the whole normalisation.
fn ascii_prefix_len(bytes: &[u8]) -> usize {
    let mut len = 0;
    for chunk in bytes.chunks(32) {
        if !chunk.is_ascii() {
            return len + chunk.iter().take_while(|b| b.is_ascii()).count();
        }
        len += chunk.len();
    }
    len
}

/// `text.to_lowercase()`, faster on text that is not all ASCII: the standard library lowercases
/// char by char from the first non-ASCII char on, this lowercases every ASCII run whole.
pub(crate) fn lowercase(text: &str) -> String {
    // Σ is the one char whose lowercase depends on its neighbours (final sigma): left to the
    // standard library, which knows the rule.
    if text.is_ascii() || text.contains('Σ') {
        return text.to_lowercase();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let (ascii, tail) = rest.split_at(ascii_prefix_len(rest.as_bytes()));
        let from = out.len();
        out.push_str(ascii);
        if let Some(pushed) = out.get_mut(from..) {
            pushed.make_ascii_lowercase();
        }
        let mut chars = tail.chars();
        if let Some(c) = chars.next() {
            out.extend(c.to_lowercase());
        }
        rest = chars.as_str();
    }
    out
}

/// `normalize(text)` with a space at each end, built in one pass.
fn padded_normalized(text: &str) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(text.len() + 2);
    out.push(b' ');
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        // A run of ASCII, through a table and without a branch per byte: a space is written
        // for every separator but only kept when the byte before is not one. (Word and
        // separator bytes alternate too irregularly for branches to be predicted: a loop that
        // branches was 1.6 times slower.)
        let end = at + ascii_prefix_len(&bytes[at..]);
        let mut n = out.len();
        let mut previous = out.last().copied().unwrap_or(b' ');
        out.resize(n + (end - at), 0);
        for &b in &bytes[at..end] {
            let normal = ASCII_NORMAL[usize::from(b & 0x7f)];
            out[n] = normal;
            n += usize::from(normal != b' ' || previous != b' ');
            previous = normal;
        }
        out.truncate(n);
        at = end;
        // Then one non-ASCII char, through the Unicode tables.
        let Some(c) = text.get(at..).and_then(|rest| rest.chars().next()) else {
            break;
        };
        at += c.len_utf8();
        for lower in c.to_lowercase() {
            if lower.is_alphanumeric() || lower == '_' {
                out.extend_from_slice(lower.encode_utf8(&mut [0; 4]).as_bytes());
            } else if out.last() != Some(&b' ') {
                out.push(b' ');
            }
        }
    }
    // The closing space; an empty text is two spaces, as `format!(" {} ", "")` gives.
    if out.last() != Some(&b' ') || out.len() == 1 {
        out.push(b' ');
    }
    // Only whole chars were written, so this is valid UTF-8 and the fallback never runs.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Text prepared for keyword matching: normalised, with a space at each end so that every word,
/// the first and last included, sits between two spaces.
pub(crate) struct Prepared {
    padded: String,
}

impl Prepared {
    /// Normalises `text` for keyword matching.
    pub fn new(text: &str) -> Self {
        Prepared {
            padded: padded_normalized(text),
        }
    }
}

/// One keyword from a config file, normalised like the text it is matched against.
#[derive(Debug, Clone)]
pub(crate) struct Keyword {
    /// The normalised words.
    words: String,
    /// A trailing `*`: the last word is a prefix.
    prefix: bool,
    /// Length of the needle, `" words "` (exact) or `" words"` (prefix).
    needle_len: usize,
    /// Index of the needle in the [`KeywordIndex`] the keyword was registered with.
    slot: usize,
    /// True when the keyword has several words: a phrase is stronger evidence than a word.
    pub is_phrase: bool,
}

impl Keyword {
    /// Parses a keyword as written, or says why it is unusable; returns it with its needle.
    fn parse(written: &str) -> Result<(Keyword, String), String> {
        let trimmed = written.trim();
        let (body, prefix) = match trimmed.strip_suffix('*') {
            Some(body) => (body, true),
            None => (trimmed, false),
        };
        if body.contains('*') {
            return Err(format!(
                "keyword {written:?}: '*' is only allowed at the end"
            ));
        }
        let words = normalize(body);
        if words.is_empty() {
            return Err(format!("keyword {written:?} has no letters or digits"));
        }
        let needle = if prefix {
            format!(" {words}")
        } else {
            format!(" {words} ")
        };
        let keyword = Keyword {
            is_phrase: words.contains(' '),
            words,
            prefix,
            needle_len: needle.len(),
            slot: 0,
        };
        Ok((keyword, needle))
    }
}

/// A list of keywords matched together, registered with a [`KeywordIndex`].
#[derive(Debug, Clone)]
pub(crate) struct KeywordSet {
    /// Index of the set in its [`KeywordIndex`].
    id: usize,
    keywords: Vec<Keyword>,
}

impl KeywordSet {
    /// The keywords found by `scan`, in list order.
    pub fn matched<'s>(&'s self, scan: &'s KeywordScan<'_>) -> impl Iterator<Item = &'s Keyword> {
        // Most sets have no keyword in a given text: those are skipped without a look at each.
        let keywords: &[Keyword] = if scan.touched(self.id) {
            &self.keywords
        } else {
            &[]
        };
        keywords.iter().filter(|k| scan.at(k).is_some())
    }

    /// The keywords found by `scan`, in list order, each with the words it matched (for a
    /// prefix, the whole last word found, "certificates", not "certificat").
    pub fn matches<'k>(&'k self, scan: &KeywordScan<'_>) -> Vec<(&'k Keyword, String)> {
        if !scan.touched(self.id) {
            return Vec::new();
        }
        (self.keywords.iter())
            .filter_map(|k| scan.found(k).map(|found| (k, found)))
            .collect()
    }

    /// True when any keyword occurs in the scanned text.
    pub fn any(&self, scan: &KeywordScan<'_>) -> bool {
        scan.touched(self.id)
    }

    /// The keywords in their written form (`*` restored), in list order.
    #[cfg(test)]
    pub fn written(&self) -> impl Iterator<Item = String> + '_ {
        self.keywords
            .iter()
            .map(|k| format!("{}{}", k.words, if k.prefix { "*" } else { "" }))
    }
}

/// Collects the needles of many keyword sets; [`KeywordIndexBuilder::build`] compiles them.
#[derive(Debug, Default)]
pub(crate) struct KeywordIndexBuilder {
    needles: Vec<String>,
    /// Needle → slot: a keyword listed by several rules (or roles) is searched once.
    slots: HashMap<String, usize>,
    /// Slot → the sets that list its keyword.
    slot_sets: Vec<Vec<usize>>,
    /// Number of sets registered.
    sets: usize,
}

impl KeywordIndexBuilder {
    /// Parses `keywords` into a set registered with this builder; the error names the offending
    /// keyword.
    pub fn set(&mut self, keywords: &[String]) -> Result<KeywordSet, String> {
        let mut set = KeywordSet {
            id: self.sets,
            keywords: Vec::with_capacity(keywords.len()),
        };
        for written in keywords {
            let (mut keyword, needle) = Keyword::parse(written)?;
            let next = self.needles.len();
            keyword.slot = *self.slots.entry(needle.clone()).or_insert(next);
            if keyword.slot == next {
                self.needles.push(needle);
                self.slot_sets.push(Vec::new());
            }
            if let Some(sets) = self.slot_sets.get_mut(keyword.slot)
                && sets.last() != Some(&set.id)
            {
                sets.push(set.id);
            }
            set.keywords.push(keyword);
        }
        self.sets += 1;
        Ok(set)
    }

    /// Compiles every registered needle into one automaton.
    pub fn build(self) -> Result<KeywordIndex, String> {
        // Standard semantics with an overlapping search report every occurrence of every
        // needle, so each needle's leftmost occurrence is seen, as a per-needle `find` sees it.
        // A DFA (about 1 MB for the shipped rules) scans about twice as fast as the default
        // NFA; should one be too large to build, the default kind is used.
        let build = |kind| {
            AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .kind(kind)
                .build(&self.needles)
        };
        let automaton = build(Some(AhoCorasickKind::DFA))
            .or_else(|_| build(None))
            .map_err(|e| format!("the keywords cannot be compiled together: {e}"))?;
        Ok(KeywordIndex {
            automaton,
            slot_sets: self.slot_sets,
            sets: self.sets,
        })
    }
}

/// Every keyword of the sets registered with one builder, compiled into one automaton.
#[derive(Debug, Clone)]
pub(crate) struct KeywordIndex {
    automaton: AhoCorasick,
    /// Slot → the sets that list its keyword.
    slot_sets: Vec<Vec<usize>>,
    /// Number of sets.
    sets: usize,
}

impl KeywordIndex {
    /// Finds every needle's leftmost occurrence in `text` in one pass.
    pub fn scan<'t>(&self, text: &'t Prepared) -> KeywordScan<'t> {
        let mut at = vec![usize::MAX; self.slot_sets.len()];
        let mut touched = vec![false; self.sets];
        for m in self.automaton.find_overlapping_iter(text.padded.as_str()) {
            let slot = m.pattern().as_usize();
            let Some(first) = at.get_mut(slot) else {
                continue;
            };
            if *first == usize::MAX {
                for &set in self.slot_sets.get(slot).into_iter().flatten() {
                    if let Some(t) = touched.get_mut(set) {
                        *t = true;
                    }
                }
            }
            *first = (*first).min(m.start());
        }
        KeywordScan {
            text: &text.padded,
            at,
            touched,
        }
    }
}

/// Where each needle of a [`KeywordIndex`] first occurs in one prepared text.
pub(crate) struct KeywordScan<'t> {
    text: &'t str,
    /// Byte offset of each slot's leftmost occurrence; `usize::MAX` when absent.
    at: Vec<usize>,
    /// For each set, whether any of its keywords occurs.
    touched: Vec<bool>,
}

impl KeywordScan<'_> {
    fn touched(&self, set: usize) -> bool {
        self.touched.get(set).copied().unwrap_or(false)
    }

    fn at(&self, keyword: &Keyword) -> Option<usize> {
        self.at
            .get(keyword.slot)
            .copied()
            .filter(|&at| at != usize::MAX)
    }

    /// The words `keyword` matched at its first occurrence, or `None`.
    fn found(&self, keyword: &Keyword) -> Option<String> {
        let at = self.at(keyword)?;
        if !keyword.prefix {
            return Some(keyword.words.clone());
        }
        let rest = self.text.get(at + keyword.needle_len..)?;
        let tail = rest.split(' ').next().unwrap_or("");
        Some(format!("{}{tail}", keyword.words))
    }
}

/// Turns a matched phrase into a tag: spaces become `-`.
pub(crate) fn tagify(phrase: &str) -> String {
    phrase.split_whitespace().collect::<Vec<_>>().join("-")
}
