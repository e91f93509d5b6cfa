//! A deterministic corpus of descriptions for comparing classifier implementations.
//!
//! It is built from the config files themselves (every keyword, context and exclude term of every
//! rule and every knowledge-base keyword, alone, in pairs and inside sentences), plus snippets that
//! trip the regex patterns, free-form requests, gibberish, Unicode and punctuation edge cases and
//! long texts, so that a new rule or entry is covered without editing this file.

use toml::Value;

/// Inflections tried for a `*` prefix keyword (nothing, plural, past tense, a longer word, a
/// word that goes on with `_` and digits, which are word characters too).
const SUFFIXES: [&str; 5] = ["", "s", "ed", "ation", "_v2"];

/// Sentence frames a term is put in: start, middle and end of the text, with punctuation.
const FRAMES: [&str; 6] = [
    "{}",
    "Hi team, we have a problem with {} since this morning.",
    "{}: it keeps failing for all users, please help!",
    "URGENT!!! {} -- nobody can work",
    "Question: how do I fix the {}?",
    "We think the {} broke after the update; the site is down (HTTP 503).",
];

/// Snippets written to trip the rules' and the escalation's regex patterns.
#[rustfmt::skip]
const PATTERN_SNIPPETS: &[&str] = &[
    "x509: certificate has expired or is not yet valid",
    "Chrome shows NET::ERR_CERT_DATE_INVALID and SSL_ERROR_BAD_CERT_DOMAIN",
    "tls handshake failed: unable to get local issuer certificate",
    "dig help.acme.com CNAME returns nothing, DNS_PROBE_FINISHED_NXDOMAIN",
    "the domain is still not verified after two days",
    "INVALID_SAML_RESPONSE: audience mismatch, clock skew of 5 minutes",
    "SAMLResponse signature invalid after the IdP certificate rotation",
    "every call returns 401 with {\"code\": \"unauthorized\"} and invalid_api_key",
    "we send the X-API-Key header",
    "webhooks are disabled and the HMAC signature does not match",
    "our webhook stopped: not delivered for hours",
    "bounce 550 5.1.1 user unknown; 554 5.7.1 rejected",
    "emails are going to spam, customers are not getting our messages",
    "403 forbidden: you don't have permission, insufficient privileges",
    "I forgot my password and the password reset link expired",
    "I can't log in: invalid username or password",
    "The invitation expired, and I need to add a new user to the team",
    "helm install fails, pod in CrashLoopBackOff, exited with code 137, permission denied",
    "Import failed: 120 rows rejected and 3 records skipped",
    "We are migrating 20k tickets from Zendesk and moving from help scout",
    "ModuleNotFoundError: no module named casehub; npm ERESOLVE conflict",
    "502 bad gateway, the app is completely down, service went offline",
    "all our contacts are gone and the history was wiped",
    "Traceback (most recent call last) ... panicked at src/main.rs, 500 internal error",
    "the dashboard takes 12.5 seconds to load, 504 gateway timeout",
    "POST endpoint returns 422 on every request, id req-20240101-abc123def",
    "do you integrate with ServiceNow? we would love a native integration with SAP",
    "integration with Jira would be great, is it on the roadmap",
    "please expose an API endpoint for tags; add new webhook events for merges",
    "our API key was leaked on GitHub, an attacker stole credentials",
    "CVE-2024-12345 affects your widget",
    "we are not receiving notifications anymore",
    "export failed and the CSV never arrives",
    "users are not being provisioned by SCIM",
    "I accidentally deleted the project, someone archived it",
    "is it possible to add a dark mode? would it be possible to support SAML?",
    "2fa code is invalid every time",
    "HTTP 429 Too Many Requests, error rate_limited",
];

/// Free-form requests, gibberish and text-handling edge cases.
#[rustfmt::skip]
const FREE_FORM: &[&str] = &[
    "",
    " ",
    "???",
    "asdf qwerty zxcv lorem ipsum",
    "blorp the fizzbin wibbles",
    "🙂🙂🙂 🔥 everything is fine 🔥",
    "Hello, I just wanted to say thanks for the great support last week.",
    "Can you call me back tomorrow morning?",
    "The thing doesn't do the thing it used to do.",
    "DNSSEC and dnsmasq are not DNS; certificat alone; ssl.tls/https:cert",
    "SSL",
    "ssl ",
    " expired",
    "certificat",
    "certificates certificat certification",
    "api_key api-key API KEY apikey",
    "log-in login log_in logged in",
    "ΣΣΛ ΠΙΣΤΟΠΟΙΗΤΙΚΟ ΈΛΗΞΕ — το SSL έληξε",
    "İstanbul ofisinde SSL SERTİFİKASI süresi doldu",
    "Das SSL-Zertifikat ist abgelaufen, Straße nicht erreichbar",
    "証明書の有効期限が切れました SSL certificate",
    "Ｆｕｌｌｗｉｄｔｈ ＳＳＬ and ﬁle ligatures",
    "tab\tseparated\nnew line\r\nwindows line",
    "x509x509 x509 509 5030 503 x-api-keys",
    "err_cert_ ssl_error_",
    "how do I how do I how do I",
    "password password password password reset reset",
    "Reset my password? Reset MY PASSWORD! reset—my—password",
    "we were charged twice; refund please; invoice missing; VAT number wrong",
    "Feature request: Kanban view. Also the app crashes. Also SSO broke. Also billing.",
];

/// Deterministic pseudo-random numbers (a 64-bit LCG): the corpus is the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as usize
    }

    fn pick<'a>(&mut self, items: &'a [String]) -> &'a str {
        match items.len() {
            0 => "",
            n => &items[self.next() % n],
        }
    }
}

/// The string items of `table[key]`, or nothing.
fn strings(table: &Value, key: &str) -> Vec<String> {
    table
        .get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The tables of the array `key` (`[[rule]]`, `[[solution]]`).
fn tables<'v>(file: &'v Value, key: &str) -> &'v [Value] {
    file.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// A config keyword as a customer might write it: the `*` replaced by an inflection.
fn inflect(term: &str, n: usize) -> String {
    match term.strip_suffix('*') {
        Some(stem) => format!("{stem}{}", SUFFIXES[n % SUFFIXES.len()]),
        None => term.to_string(),
    }
}

/// The corpus for these config files: several thousand descriptions, always the same ones.
pub(super) fn descriptions(rules_toml: &str, kb_toml: &str) -> Vec<String> {
    let rules: Value = toml::from_str(rules_toml).expect("rules parse as TOML");
    let kb: Value = toml::from_str(kb_toml).expect("knowledge base parses as TOML");
    let mut out: Vec<String> = Vec::new();
    let mut all_terms: Vec<String> = Vec::new();
    let mut rng = Lcg(0x5eed_ca5e);

    for (r, rule) in tables(&rules, "rule").iter().enumerate() {
        let keywords = strings(rule, "keywords");
        let context = strings(rule, "context");
        let exclude = strings(rule, "exclude");
        for (k, keyword) in keywords.iter().enumerate() {
            let term = inflect(keyword, k + r);
            out.push(FRAMES[(k + r) % FRAMES.len()].replace("{}", &term));
            out.push(term.to_uppercase());
            out.push(format!("{term} and {}", inflect(rng.pick(&context), k)));
            out.push(format!("{term}, {}", inflect(rng.pick(&keywords), k + 1)));
        }
        out.push(keywords.join(" "));
        for term in &exclude {
            out.push(format!(
                "{} but also {term}",
                inflect(rng.pick(&keywords), r)
            ));
        }
        for term in &context {
            out.push(format!("{term} only, nothing else"));
        }
        all_terms.extend(keywords.into_iter().chain(context).chain(exclude));
    }
    for entry in tables(&kb, "solution") {
        let keywords = strings(entry, "keywords");
        out.push(keywords.join(", ").replace('*', ""));
        for (k, keyword) in keywords.iter().enumerate() {
            out.push(format!(
                "{} with {}",
                inflect(keyword, k),
                rng.pick(&all_terms)
            ));
        }
        all_terms.extend(keywords);
    }
    let escalation = rules
        .get("escalation")
        .cloned()
        .unwrap_or(Value::Boolean(false));
    all_terms.extend(strings(&escalation, "production_outage_keywords"));

    out.extend(PATTERN_SNIPPETS.iter().map(|s| s.to_string()));
    out.extend(FREE_FORM.iter().map(|s| s.to_string()));
    // Random mixes of terms from different rules: the contest between rules, ties included.
    for n in 0..600 {
        let words: Vec<String> = (0..1 + n % 5)
            .map(|i| inflect(rng.pick(&all_terms), n + i))
            .collect();
        let frame = FRAMES[n % FRAMES.len()];
        let mut text = frame.replace("{}", &words.join(if n % 2 == 0 { " " } else { ", " }));
        if n % 7 == 0 {
            text.push(' ');
            text.push_str(PATTERN_SNIPPETS[n % PATTERN_SNIPPETS.len()]);
        }
        out.push(text);
    }
    out.push(long_text(&all_terms, 10_000, &mut rng));
    out.push(long_text(&all_terms, 3_000, &mut rng) + " 🙂 non-ASCII tail: café, Straße");
    out.push("lorem ipsum dolor ".repeat(600));
    out
}

/// About `len` characters of filler with a few terms from the config scattered in it.
fn long_text(terms: &[String], len: usize, rng: &mut Lcg) -> String {
    const FILLER: &str = "We looked into it again today and the same thing happened as before. ";
    let mut text = String::with_capacity(len + 100);
    while text.len() < len {
        text.push_str(FILLER);
        if rng.next().is_multiple_of(4) {
            text.push_str(&inflect(rng.pick(terms), rng.next()));
            text.push_str(". ");
        }
    }
    text
}
