//! What can be asked of a case, and how it can refuse.

use ractor::RpcReplyPort;
use uuid::Uuid;

use crate::domain::{Case, CaseStatus, Decision, Intake, ReviewAction, ReviewId, Urgency};
use crate::store::StoreError;

/// Why a case refused or failed a command. The edge maps each to the contract's code.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    /// No such case (or the customer id does not match it).
    #[error("case not found")]
    NotFound,
    /// No such review on this case.
    #[error("review not found")]
    ReviewNotFound,
    /// The same action was already taken.
    #[error("{0}")]
    AlreadyProcessed(String),
    /// The action does not fit the case's status.
    #[error("{message}")]
    InvalidState { status: CaseStatus, message: String },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The case could not answer in time or is restarting; retry later.
    #[error("case temporarily unavailable")]
    Unavailable,
    /// The case actor failed while handling this request.
    #[error("case actor failed")]
    Internal,
}

impl CaseError {
    /// The contract's error code (CONTRACT §1); HTTP and the review rooms answer with the same.
    pub fn code(&self) -> &'static str {
        match self {
            CaseError::NotFound | CaseError::ReviewNotFound => "NOT_FOUND",
            CaseError::AlreadyProcessed(_) => "ALREADY_PROCESSED",
            CaseError::InvalidState { .. } => "INVALID_STATE",
            CaseError::Store(StoreError::Unavailable(_) | StoreError::Fenced(_))
            | CaseError::Unavailable => "SERVICE_UNAVAILABLE",
            CaseError::Store(_) | CaseError::Internal => "INTERNAL_ERROR",
        }
    }

    /// The HTTP status that goes with [`code`](Self::code) (CONTRACT §1).
    pub fn http_status(&self) -> u16 {
        match self {
            CaseError::NotFound | CaseError::ReviewNotFound => 404,
            CaseError::AlreadyProcessed(_) | CaseError::InvalidState { .. } => 409,
            CaseError::Store(StoreError::Unavailable(_) | StoreError::Fenced(_))
            | CaseError::Unavailable => 503,
            CaseError::Store(_) | CaseError::Internal => 500,
        }
    }

    /// The message a client sees: the rule that refused it, never an internal cause.
    pub fn client_message(&self) -> String {
        match self {
            CaseError::NotFound => "Case not found".into(),
            CaseError::ReviewNotFound => "Review not found".into(),
            CaseError::AlreadyProcessed(message) | CaseError::InvalidState { message, .. } => {
                message.clone()
            }
            CaseError::Store(StoreError::Unavailable(_) | StoreError::Fenced(_))
            | CaseError::Unavailable => "The case is temporarily unavailable; retry shortly".into(),
            CaseError::Store(_) | CaseError::Internal => {
                "An internal error occurred; it has been logged".into()
            }
        }
    }

    pub(crate) fn invalid(status: CaseStatus, message: impl Into<String>) -> Self {
        CaseError::InvalidState {
            status,
            message: message.into(),
        }
    }
}

/// The answer to every command: the case as it stands after the command.
pub type CaseReply = RpcReplyPort<Result<Case, CaseError>>;

/// A reviewer's decision on a review.
#[derive(Debug, Clone)]
pub struct ReviewDecision {
    pub review_id: ReviewId,
    pub action: ReviewAction,
    pub reviewer: String,
    pub comments: Option<String>,
    pub edited_solution: Option<String>,
    pub edit_reason: Option<String>,
}

/// A request for human review.
#[derive(Debug, Clone)]
pub struct CollaborativeRequest {
    pub customer_id: Uuid,
    pub urgency: Urgency,
    pub specialist_request: Option<String>,
    pub additional_context: Option<String>,
}

/// Messages a case actor handles.
#[derive(Debug)]
pub enum CaseMsg {
    /// Triage and store a new case (intake). `idempotency_key` is caller-scoped.
    Create {
        intake: Box<Intake>,
        idempotency_key: Option<String>,
        reply: CaseReply,
    },
    /// The current snapshot.
    Get { reply: CaseReply },
    /// Offer a self-service solution (`force` re-runs it).
    SelfService {
        customer_id: Uuid,
        force: bool,
        reply: CaseReply,
    },
    /// The customer approves or rejects the offered solution.
    Decide {
        decision: Decision,
        reply: CaseReply,
    },
    /// The customer rates a resolved case.
    Feedback {
        score: u8,
        comment: Option<String>,
        reply: CaseReply,
    },
    /// Open a human review.
    Collaborative {
        request: CollaborativeRequest,
        reply: CaseReply,
    },
    /// A reviewer acts on the case's review.
    Review {
        decision: ReviewDecision,
        reply: CaseReply,
    },
    /// Internal: finish an `executing` or `delivering` case (the case schedules it through its
    /// supervisor after replying).
    Finish,
    /// Internal: the delivery pool settled this case's fix request; its outcome is in the store.
    FixSettled,
    /// Test-only fault hook: panic inside the handler. Refused unless fault injection is on.
    InjectPanic { reply: CaseReply },
}

impl CaseMsg {
    /// Answers the command with `err`, if it expects an answer.
    pub(crate) fn fail(self, err: CaseError) {
        let reply = match self {
            CaseMsg::Create { reply, .. }
            | CaseMsg::Get { reply }
            | CaseMsg::SelfService { reply, .. }
            | CaseMsg::Decide { reply, .. }
            | CaseMsg::Feedback { reply, .. }
            | CaseMsg::Collaborative { reply, .. }
            | CaseMsg::Review { reply, .. }
            | CaseMsg::InjectPanic { reply } => reply,
            CaseMsg::Finish | CaseMsg::FixSettled => return,
        };
        let _ = reply.send(Err(err));
    }
}
