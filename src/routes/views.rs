//! How cases look on the wire: the status view with signed links, and the intake response.

use casehub_actors::domain::{Case, CaseStatus, Priority};
use casehub_actors::links::LinkSigner;
use serde_json::{Value, json};

/// Seed 000's Case object plus classification, solution, review, links and history.
pub fn case_view(case: &Case, links: &LinkSigner) -> Value {
    let mut view = serde_json::to_value(case).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut view {
        // Internal bookkeeping, not part of the case's public shape.
        map.remove("intake_status");
        map.remove("offer");
        map.insert("links".into(), case_links(case, links));
    }
    view
}

/// `approve`/`reject` while an offer awaits the customer, `feedback` once resolved, and always
/// `tracking`.
pub fn case_links(case: &Case, links: &LinkSigner) -> Value {
    let id = case.case_id;
    let mut out = serde_json::Map::new();
    let awaiting = case.status == CaseStatus::InProgress
        && case.offer.as_ref().is_some_and(|o| o.decision.is_none());
    if awaiting {
        out.insert("approve".into(), links.approve_url(id).into());
        out.insert("reject".into(), links.reject_url(id).into());
    }
    if case.status == CaseStatus::Resolved {
        out.insert("feedback".into(), links.feedback_url(id).into());
    }
    out.insert("tracking".into(), links.tracking_url(id).into());
    Value::Object(out)
}

fn response_time(priority: Priority) -> &'static str {
    match priority {
        Priority::Critical => "Within 5 minutes",
        Priority::High => "Within 15 minutes",
        Priority::Medium => "Within 1 hour",
        Priority::Low => "Within 4 hours",
    }
}

/// The intake answer (seed 000 plus `customer_id`), as it was when the case was created.
pub fn intake_response(case: &Case, links: &LinkSigner) -> Value {
    let c = &case.classification;
    let mut body = json!({
        "success": true,
        "case_id": case.case_id,
        "customer_id": case.customer_id,
        "request_id": case.request_id,
        "status": case.intake_status,
        "classification": {
            "category": c.category,
            "subcategory": c.subcategory,
            "priority": c.priority,
            "confidence": c.confidence,
            "estimated_complexity": c.estimated_complexity,
            "resolution_path": c.resolution_path,
            "suggested_resolution_path": c.suggested_resolution_path,
            "reasoning": c.reasoning,
            "tags": c.tags,
            "similar_cases": c.similar_cases,
        },
        "message": "Your support request has been received and is being processed.",
        "estimated_response_time": response_time(case.priority),
        "tracking_url": links.tracking_url(case.case_id),
    });
    if case.intake_status == CaseStatus::PendingReview {
        // The review opened at intake: the oldest one, which may since have been superseded.
        let first = case
            .past_reviews
            .first()
            .or(case.review.as_ref().map(|r| &r.review_id));
        body["review_id"] = json!(first);
        if let Some(review) = case.review.as_ref().filter(|r| Some(&r.review_id) == first) {
            body["assigned_channel"] = json!(review.assigned_channel());
        }
    }
    body
}
