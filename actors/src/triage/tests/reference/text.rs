//! The text matching of the reference classifier: `triage/text.rs` as it was before the
//! single-pass matcher, one substring search per keyword and one regex search per pattern.
//! Kept unchanged on purpose; do not optimise it.

use regex::Regex;

/// Lowercases `text` and collapses every run of non-word characters into a single space.
pub(crate) fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    let mut pending_space = false;
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() || c == '_' {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.push(c);
        } else {
            pending_space = true;
        }
    }
    out
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
            padded: format!(" {} ", normalize(text)),
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
    /// `" words "` (exact) or `" words"` (prefix): the string searched for.
    needle: String,
    /// True when the keyword has several words: a phrase is stronger evidence than a word.
    pub is_phrase: bool,
}

impl Keyword {
    /// Parses a keyword as written, or says why it is unusable.
    fn parse(written: &str) -> Result<Keyword, String> {
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
        Ok(Keyword {
            is_phrase: words.contains(' '),
            words,
            prefix,
            needle,
        })
    }

    /// The words this keyword found in `text` (for a prefix, the whole last word found:
    /// "certificates", not "certificat"), or `None`.
    fn find(&self, text: &Prepared) -> Option<String> {
        let at = text.padded.find(&self.needle)?;
        if !self.prefix {
            return Some(self.words.clone());
        }
        let rest = text.padded.get(at + self.needle.len()..)?;
        let tail = rest.split(' ').next().unwrap_or("");
        Some(format!("{}{tail}", self.words))
    }
}

/// A list of keywords matched together.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeywordSet {
    keywords: Vec<Keyword>,
}

impl KeywordSet {
    /// Parses `keywords`; the error names the offending keyword.
    pub fn new(keywords: &[String]) -> Result<Self, String> {
        let keywords = keywords
            .iter()
            .map(|k| Keyword::parse(k))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(KeywordSet { keywords })
    }

    /// The keywords found in `text`, in list order, each with the words it matched.
    pub fn matches<'k>(&'k self, text: &Prepared) -> Vec<(&'k Keyword, String)> {
        self.keywords
            .iter()
            .filter_map(|k| k.find(text).map(|found| (k, found)))
            .collect()
    }

    /// True when any keyword occurs in `text`.
    pub fn any(&self, text: &Prepared) -> bool {
        self.keywords
            .iter()
            .any(|k| text.padded.contains(&k.needle))
    }
}

/// Regexes written by a rule author, matched case-insensitively on the lowercased raw text.
#[derive(Debug, Clone)]
pub(crate) struct PatternList {
    patterns: Vec<Regex>,
}

impl PatternList {
    /// Compiles `patterns`; the error names the offending pattern.
    pub fn new(patterns: &[String]) -> Result<Self, String> {
        let patterns = patterns
            .iter()
            .map(|p| {
                regex::RegexBuilder::new(p)
                    .case_insensitive(true)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| format!("pattern {p:?} is not a valid regex: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PatternList { patterns })
    }

    /// The text each matching pattern found (first match, at most 60 characters), in list order.
    pub fn matches(&self, lowered: &str) -> Vec<String> {
        self.patterns
            .iter()
            .filter_map(|p| p.find(lowered))
            .map(|m| {
                let found = m.as_str().split_whitespace().collect::<Vec<_>>().join(" ");
                found.chars().take(60).collect()
            })
            .filter(|s: &String| !s.is_empty())
            .collect()
    }
}

/// Turns a matched phrase into a tag: spaces become `-`.
pub(crate) fn tagify(phrase: &str) -> String {
    phrase.split_whitespace().collect::<Vec<_>>().join("-")
}
