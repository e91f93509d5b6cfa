//! Signed links the hub hands out (CONTRACT §2): HMAC-SHA256 of (case id, action) with the
//! link secret, carried as `token`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::domain::CaseId;

/// What a link token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkAction {
    Approve,
    Reject,
    Feedback,
    Status,
}

impl LinkAction {
    fn as_str(self) -> &'static str {
        match self {
            LinkAction::Approve => "approve",
            LinkAction::Reject => "reject",
            LinkAction::Feedback => "feedback",
            LinkAction::Status => "status",
        }
    }
}

/// Builds and checks signed links. Cheap to clone.
#[derive(Clone)]
pub struct LinkSigner {
    public_url: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkSigner")
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl LinkSigner {
    /// `public_url` is the base of every link (trailing `/` ignored).
    pub fn new(public_url: &str, secret: &str) -> Self {
        LinkSigner {
            public_url: public_url.trim_end_matches('/').to_string(),
            secret: secret.as_bytes().to_vec(),
        }
    }

    /// The token for `action` on `case`.
    pub fn token(&self, case: CaseId, action: LinkAction) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("any key length");
        mac.update(case.to_string().as_bytes());
        mac.update(b":");
        mac.update(action.as_str().as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Constant-time check of a presented token.
    pub fn verify(&self, case: CaseId, action: LinkAction, token: &str) -> bool {
        let expected = self.token(case, action);
        expected.as_bytes().ct_eq(token.as_bytes()).into()
    }

    /// `…/webhook/support/approve/{id}?action=approve&token=…`
    pub fn approve_url(&self, case: CaseId) -> String {
        self.decision_url(case, LinkAction::Approve)
    }

    /// `…/webhook/support/approve/{id}?action=reject&token=…`
    pub fn reject_url(&self, case: CaseId) -> String {
        self.decision_url(case, LinkAction::Reject)
    }

    fn decision_url(&self, case: CaseId, action: LinkAction) -> String {
        format!(
            "{}/webhook/support/approve/{case}?action={}&token={}",
            self.public_url,
            action.as_str(),
            self.token(case, action)
        )
    }

    /// `…/webhook/support/feedback/{id}?token=…` (the customer adds `&score=`).
    pub fn feedback_url(&self, case: CaseId) -> String {
        format!(
            "{}/webhook/support/feedback/{case}?token={}",
            self.public_url,
            self.token(case, LinkAction::Feedback)
        )
    }

    /// `…/webhook/support/status/{id}?token=…`
    pub fn tracking_url(&self, case: CaseId) -> String {
        format!(
            "{}/webhook/support/status/{case}?token={}",
            self.public_url,
            self.token(case, LinkAction::Status)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_bind_case_and_action() {
        let s = LinkSigner::new("http://x/", "secret");
        let a = CaseId::new();
        let b = CaseId::new();
        let t = s.token(a, LinkAction::Approve);
        assert!(s.verify(a, LinkAction::Approve, &t));
        assert!(!s.verify(a, LinkAction::Reject, &t));
        assert!(!s.verify(b, LinkAction::Approve, &t));
        assert!(!LinkSigner::new("http://x", "other").verify(a, LinkAction::Approve, &t));
        assert!(
            s.approve_url(a)
                .starts_with("http://x/webhook/support/approve/")
        );
    }
}
