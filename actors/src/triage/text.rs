//! Text normalisation and whole-word term matching shared by the rules and the knowledge base.
//!
//! Keywords are matched on a normalised copy of the text: lowercased, with every run of
//! characters that are not letters, digits or `_` collapsed to one space. The same treatment of
//! the keyword means the keyword "api key" matches "API-Key", "api key" and "API key:" alike, and
//! only whole words: "dns" does not match "dnssec". A trailing `*` makes the last word a prefix
//! ("certificat*" matches "certificate" and "certificates").

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

    /// The keywords in their written form (`*` restored), in list order.
    #[cfg(test)]
    pub fn written(&self) -> impl Iterator<Item = String> + '_ {
        self.keywords
            .iter()
            .map(|k| format!("{}{}", k.words, if k.prefix { "*" } else { "" }))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_collapses_punctuation() {
        assert_eq!(normalize("  API-Key: INVALID!! "), "api key invalid");
        assert_eq!(normalize("can't log-in"), "can t log in");
        assert_eq!(normalize("err_cert_date_invalid"), "err_cert_date_invalid");
    }

    #[test]
    fn keywords_match_whole_words_and_prefixes() {
        let set = KeywordSet::new(&["certificat*".into(), "dns".into(), "api key".into()])
            .expect("valid keywords");
        let text = Prepared::new("Our certificates broke; the API-key works. No DNSSEC here.");
        let found: Vec<_> = set.matches(&text).into_iter().map(|(_, s)| s).collect();
        assert_eq!(
            found,
            vec!["certificates".to_string(), "api key".to_string()]
        );
    }

    #[test]
    fn empty_keyword_is_rejected() {
        assert!(KeywordSet::new(&["--".into()]).is_err());
        assert!(KeywordSet::new(&["a*b".into()]).is_err());
    }

    #[test]
    fn keywords_match_at_the_edges_of_the_text() {
        let set = KeywordSet::new(&["ssl".into(), "expired*".into()]).expect("valid keywords");
        let found: Vec<_> = set
            .matches(&Prepared::new("SSL expired"))
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        assert_eq!(found, vec!["ssl".to_string(), "expired".to_string()]);
        assert!(!set.any(&Prepared::new("tls")));
    }
}
