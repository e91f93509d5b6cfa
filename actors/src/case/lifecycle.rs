//! The case lifecycle of CONTRACT §3 as pure functions over a working copy of the case.
//!
//! Each function checks that the command fits the case, changes the copy and returns the events
//! the change caused. The actor persists copy and events together and only then adopts the copy,
//! so a failed write leaves the live state untouched.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::command::{CaseError, CollaborativeRequest, ReviewDecision};
use crate::delivery::fix::FixResult;
use crate::domain::*;
use crate::links::LinkSigner;
use crate::routing::ReviewRouting;

/// Whether the actor must send itself [`super::CaseMsg::Finish`] after replying.
#[derive(Debug, Default, PartialEq)]
pub struct Effects {
    pub events: Vec<Event>,
    pub finish: bool,
}

/// Builds a new, triaged case; critical or escalate-path cases get a review at once.
pub fn create(
    case_id: CaseId,
    intake: Intake,
    classification: Classification,
    routing: &ReviewRouting,
    now: DateTime<Utc>,
) -> (Case, Vec<Event>) {
    let mut case = Case {
        case_id,
        customer_id: intake.customer_id,
        customer_email: intake.customer_email,
        customer_name: intake.customer_name,
        request_id: new_request_id(now),
        channel: intake.channel,
        description: intake.description,
        severity: intake.severity,
        product: intake.product,
        product_version: intake.product_version,
        environment: intake.environment,
        category: classification.category,
        subcategory: classification.subcategory.clone(),
        priority: classification.priority,
        confidence_score: classification.confidence,
        status: CaseStatus::New,
        intake_status: CaseStatus::Triaged,
        resolution_type: None,
        escalated: false,
        created_at: now,
        triaged_at: Some(now),
        resolved_at: None,
        closed_at: None,
        resolution_time_minutes: None,
        satisfaction_score: None,
        feedback_comment: None,
        metadata: intake.metadata,
        classification,
        solution: None,
        offer: None,
        review: None,
        past_reviews: Vec::new(),
        history: Vec::new(),
        version: 0,
    };
    case.transition(CaseStatus::New, now, "intake");
    case.transition(CaseStatus::Triaged, now, "triage");
    let mut events = vec![Event::new(
        EventKind::CaseCreated,
        workflow::INTAKE,
        now,
        json!({
            "case_id": case.case_id,
            "customer_id": case.customer_id,
            "request_id": case.request_id,
            "status": case.status,
            "channel": case.channel,
            "classification": case.classification,
            "priority": case.priority,
            "category": case.category,
            "subcategory": case.subcategory,
            "product": case.product,
        }),
    )];
    let c = &case.classification;
    if c.priority == Priority::Critical || c.resolution_path == ResolutionPath::Escalate {
        let reason = if c.priority == Priority::Critical {
            "critical priority at intake"
        } else {
            "triage chose the escalate path"
        };
        let room = routing.room_for(case.category, None);
        events.extend(open_review(
            &mut case,
            room,
            Urgency::Urgent,
            reason,
            None,
            None,
            "triage",
            now,
        ));
        case.intake_status = case.status;
    }
    (case, events)
}

/// Opens a review in `room` and moves the case to `pending_review`.
#[allow(clippy::too_many_arguments)]
fn open_review(
    case: &mut Case,
    room: String,
    urgency: Urgency,
    reason: &str,
    specialist_request: Option<String>,
    additional_context: Option<String>,
    by: &str,
    now: DateTime<Utc>,
) -> Vec<Event> {
    if let Some(old) = case.review.take() {
        case.past_reviews.push(old.review_id);
    }
    let review = Review {
        specialist_request,
        additional_context,
        ..Review::pending(case.case_id, room, urgency, reason, now)
    };
    case.escalated = true;
    case.transition(CaseStatus::PendingReview, now, by);
    let events = vec![
        Event::new(
            EventKind::CaseEscalated,
            workflow::COLLABORATIVE,
            now,
            json!({
                "case_id": case.case_id,
                "escalation_reason": reason,
                "assigned_channel": review.assigned_channel(),
                "review_id": review.review_id,
                "priority": case.priority,
            }),
        ),
        Event::new(
            EventKind::ReviewRequested,
            workflow::COLLABORATIVE,
            now,
            review_summary(case, &review),
        ),
    ];
    case.review = Some(review);
    events
}

/// What a reviewer sees of a review: the data of `review.requested`, and each entry of a room's
/// pending list.
pub fn review_summary(case: &Case, review: &Review) -> Value {
    json!({
        "review_id": review.review_id,
        "case_id": case.case_id,
        "room": review.room,
        "assigned_channel": review.assigned_channel(),
        "urgency": review.urgency,
        "priority": case.priority,
        "category": case.category,
        "subcategory": case.subcategory,
        "summary": summary(&case.description),
        "reason": review.reason,
        "specialist_request": review.specialist_request,
        "customer_name": case.customer_name,
        "customer_email": case.customer_email,
        "product": case.product,
        "solution_title": case.solution.as_ref().map(|s| &s.title),
        "requested_at": crate::domain::rfc3339(review.created_at),
    })
}

fn summary(description: &str) -> String {
    const MAX: usize = 200;
    match description.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &description[..i]),
        None => description.to_string(),
    }
}

/// `case.updated`; a case under review names its room, so the room's reviewers see it.
fn updated(case: &Case, previous: CaseStatus, workflow: &str, now: DateTime<Utc>) -> Event {
    let mut data =
        json!({"case_id": case.case_id, "status": case.status, "previous_status": previous});
    if let Some(review) = &case.review {
        data["assigned_channel"] = json!(review.assigned_channel());
        data["review_id"] = json!(review.review_id);
    }
    Event::new(EventKind::CaseUpdated, workflow, now, data)
}

/// Offers `solution`. Without `force` only a triaged self-service case qualifies.
pub fn self_service(
    case: &mut Case,
    force: bool,
    solution: Option<Solution>,
    now: DateTime<Utc>,
) -> Result<Effects, CaseError> {
    let status = case.status;
    if force {
        if !matches!(
            status,
            CaseStatus::Triaged | CaseStatus::InProgress | CaseStatus::Escalated
        ) {
            return Err(CaseError::invalid(
                status,
                format!("self-service cannot be forced on a case that is {status}"),
            ));
        }
    } else {
        if status == CaseStatus::InProgress {
            return Err(CaseError::AlreadyProcessed(
                "Self-service resolution was already initiated for this case".into(),
            ));
        }
        if status != CaseStatus::Triaged {
            return Err(CaseError::invalid(
                status,
                format!("self-service does not apply to a case that is {status}"),
            ));
        }
        if case.classification.resolution_path != ResolutionPath::SelfService {
            return Err(CaseError::invalid(
                status,
                format!(
                    "this case's resolution path is {}; use force to offer self-service anyway",
                    case.classification.resolution_path
                ),
            ));
        }
    }
    let Some(solution) = solution else {
        return Err(CaseError::invalid(
            status,
            "no knowledge-base solution matches this case; request collaborative support",
        ));
    };
    case.solution = Some(solution);
    case.offer = Some(Offer::default());
    case.transition(CaseStatus::InProgress, now, "self-service");
    Ok(Effects {
        events: vec![updated(case, status, workflow::SELF_SERVICE, now)],
        finish: false,
    })
}

/// The customer's approve/reject of the offered solution. With `fix_executor` (one is
/// configured) and a solution that has an automated fix, approval records a `fix.requested`
/// event for the executor and the case waits in `executing` for its outcome ([`fix_settled`]);
/// otherwise approval means the customer applied the steps and the case finishes at once.
pub fn decide(
    case: &mut Case,
    decision: Decision,
    routing: &ReviewRouting,
    fix_executor: bool,
    now: DateTime<Utc>,
) -> Result<Effects, CaseError> {
    let status = case.status;
    let offer = case.offer.as_ref();
    if let Some(taken) = offer.and_then(|o| o.decision) {
        return Err(CaseError::AlreadyProcessed(format!(
            "The customer already chose to {taken} this solution"
        )));
    }
    if status != CaseStatus::InProgress || offer.is_none() {
        return Err(CaseError::invalid(
            status,
            format!("no self-service solution awaits a decision; the case is {status}"),
        ));
    }
    case.offer = Some(Offer {
        decision: Some(decision),
        decided_at: Some(now),
        fix_msg_id: None,
    });
    match decision {
        Decision::Approve => {
            case.transition(CaseStatus::Executing, now, "customer");
            let mut events = vec![updated(case, status, workflow::SELF_SERVICE, now)];
            let automated = case
                .solution
                .as_ref()
                .is_some_and(|s| s.automated_fix_available);
            if fix_executor && automated {
                let request = fix_request(case, now);
                if let Some(offer) = case.offer.as_mut() {
                    offer.fix_msg_id = Some(request.msg_id.clone());
                }
                events.push(request);
            }
            let finish = pending_fix(case).is_none();
            Ok(Effects { events, finish })
        }
        Decision::Reject => {
            let room = routing.room_for(case.category, None);
            let events = open_review(
                case,
                room,
                Urgency::Normal,
                "customer rejected the self-service solution",
                None,
                None,
                "customer",
                now,
            );
            Ok(Effects {
                events,
                finish: false,
            })
        }
    }
}

/// Opens a human review on request.
pub fn collaborative(
    case: &mut Case,
    request: CollaborativeRequest,
    routing: &ReviewRouting,
    now: DateTime<Utc>,
) -> Result<Effects, CaseError> {
    let status = case.status;
    if status == CaseStatus::PendingReview {
        return Err(CaseError::AlreadyProcessed(
            "This case is already awaiting review".into(),
        ));
    }
    if !matches!(
        status,
        CaseStatus::Triaged | CaseStatus::InProgress | CaseStatus::Escalated
    ) {
        return Err(CaseError::invalid(
            status,
            format!("collaborative support does not apply to a case that is {status}"),
        ));
    }
    let room = routing.room_for(case.category, request.specialist_request.as_deref());
    let events = open_review(
        case,
        room,
        request.urgency,
        "collaborative support requested",
        request.specialist_request,
        request.additional_context,
        "collaborative",
        now,
    );
    Ok(Effects {
        events,
        finish: false,
    })
}

/// A reviewer's approve, edit or reject.
pub fn review(
    case: &mut Case,
    decision: ReviewDecision,
    now: DateTime<Utc>,
) -> Result<Effects, CaseError> {
    let status = case.status;
    if case.past_reviews.contains(&decision.review_id) {
        return Err(CaseError::AlreadyProcessed(
            "This review was already acted on".into(),
        ));
    }
    let Some(review) = case
        .review
        .as_mut()
        .filter(|r| r.review_id == decision.review_id)
    else {
        return Err(CaseError::ReviewNotFound);
    };
    if review.status != ReviewStatus::Pending {
        return Err(CaseError::AlreadyProcessed(format!(
            "This review was already {}",
            review.status
        )));
    }
    if status != CaseStatus::PendingReview {
        return Err(CaseError::invalid(
            status,
            format!("the case is {status}, not pending_review"),
        ));
    }
    review.status = match decision.action {
        ReviewAction::Approve => ReviewStatus::Approved,
        ReviewAction::Edit => ReviewStatus::Edited,
        ReviewAction::Reject => ReviewStatus::Rejected,
    };
    review.reviewer = Some(decision.reviewer.clone());
    review.comments = decision.comments.clone();
    review.edited_solution = decision.edited_solution.clone();
    review.edit_reason = decision.edit_reason.clone();
    review.completed_at = Some(now);
    let completed = Event::new(
        EventKind::ReviewCompleted,
        workflow::COLLABORATIVE,
        now,
        json!({
            "review_id": review.review_id,
            "case_id": case.case_id,
            "assigned_channel": review.assigned_channel(),
            "action": decision.action,
            "reviewer": decision.reviewer,
            "comments": decision.comments,
            "edited_solution": decision.edited_solution,
            "edit_reason": decision.edit_reason,
        }),
    );
    let room = review.assigned_channel();
    let by = format!("reviewer:{}", decision.reviewer);
    match decision.action {
        ReviewAction::Approve | ReviewAction::Edit => {
            case.transition(CaseStatus::Delivering, now, &by);
            Ok(Effects {
                events: vec![
                    completed,
                    updated(case, status, workflow::COLLABORATIVE, now),
                ],
                finish: true,
            })
        }
        ReviewAction::Reject => {
            case.transition(CaseStatus::Escalated, now, &by);
            let reason = match &decision.comments {
                Some(c) => format!("review rejected: {c}"),
                None => "review rejected".to_string(),
            };
            let escalated = Event::new(
                EventKind::CaseEscalated,
                workflow::COLLABORATIVE,
                now,
                json!({
                    "case_id": case.case_id,
                    "escalation_reason": reason,
                    "assigned_channel": room,
                    "review_id": decision.review_id,
                    "priority": case.priority,
                }),
            );
            Ok(Effects {
                events: vec![completed, escalated],
                finish: false,
            })
        }
    }
}

/// The request the fix executor receives: which case, which solution, what to run.
fn fix_request(case: &Case, now: DateTime<Utc>) -> Event {
    let solution = case.solution.as_ref();
    Event::new(
        EventKind::FixRequested,
        workflow::SELF_SERVICE,
        now,
        json!({
            "case_id": case.case_id,
            "customer_id": case.customer_id,
            "request_id": case.request_id,
            "product": case.product,
            "product_version": case.product_version,
            "environment": case.environment,
            "category": case.category,
            "subcategory": case.subcategory,
            "solution": solution.map(|s| json!({
                "id": s.id,
                "title": s.title,
                "solution_steps": s.solution_steps,
                "diagnostic_commands": s.diagnostic_commands,
                "risks": s.risks,
                "estimated_time": s.estimated_time,
            })),
            "approved_at": crate::domain::rfc3339(now),
        }),
    )
}

/// The msg id of the fix request an `executing` case waits for, if it waits for one.
pub fn pending_fix(case: &Case) -> Option<&str> {
    if case.status != CaseStatus::Executing {
        return None;
    }
    case.offer.as_ref()?.fix_msg_id.as_deref()
}

/// Settles an `executing` case that waits for its automated fix: applied resolves it
/// (`self-service-automated`); failed opens a review, as a rejected solution does. `None` when
/// the case waits for no fix (already settled, or never sent).
pub fn fix_settled(
    case: &mut Case,
    result: FixResult,
    routing: &ReviewRouting,
    links: &LinkSigner,
    now: DateTime<Utc>,
) -> Option<Effects> {
    pending_fix(case)?;
    match result {
        FixResult::Applied => Some(resolve(
            case,
            ResolutionType::SelfServiceAutomated,
            links,
            now,
        )),
        FixResult::Failed(why) => {
            let room = routing.room_for(case.category, None);
            let reason = format!("the automated fix failed: {why}");
            let events = open_review(case, room, Urgency::Normal, &reason, None, None, "hub", now);
            Some(Effects {
                events,
                finish: false,
            })
        }
    }
}

/// Completes an `executing` (self-service approved) or `delivering` (review approved) case. A
/// case waiting for its automated fix is left alone: [`fix_settled`] completes it.
pub fn finish(case: &mut Case, links: &LinkSigner, now: DateTime<Utc>) -> Option<Effects> {
    let resolution = match case.status {
        CaseStatus::Executing if pending_fix(case).is_some() => return None,
        CaseStatus::Executing => ResolutionType::SelfServiceManual,
        CaseStatus::Delivering => ResolutionType::Collaborative,
        _ => return None,
    };
    Some(resolve(case, resolution, links, now))
}

/// Resolves the case with `resolution` and records `case.resolved`.
fn resolve(
    case: &mut Case,
    resolution: ResolutionType,
    links: &LinkSigner,
    now: DateTime<Utc>,
) -> Effects {
    let workflow = match resolution {
        ResolutionType::Collaborative => workflow::COLLABORATIVE,
        _ => workflow::SELF_SERVICE,
    };
    case.transition(CaseStatus::Resolved, now, "hub");
    case.resolution_type = Some(resolution);
    case.resolved_at = Some(now);
    case.resolution_time_minutes = Some(case.minutes_since_created(now));
    Effects {
        events: vec![Event::new(
            EventKind::CaseResolved,
            workflow,
            now,
            json!({
                "case_id": case.case_id,
                "customer_id": case.customer_id,
                "resolution_type": resolution,
                "resolution_time_minutes": case.resolution_time_minutes,
                "satisfaction_score": null,
                "links": {"feedback": links.feedback_url(case.case_id)},
                "metadata": case.metadata,
            }),
        )],
        finish: false,
    }
}

/// The customer's rating of a resolved case; closes it.
pub fn feedback(
    case: &mut Case,
    score: u8,
    comment: Option<String>,
    now: DateTime<Utc>,
) -> Result<Effects, CaseError> {
    let status = case.status;
    if status == CaseStatus::Closed && case.satisfaction_score.is_some() {
        return Err(CaseError::AlreadyProcessed(
            "Feedback was already received for this case".into(),
        ));
    }
    if status != CaseStatus::Resolved {
        return Err(CaseError::invalid(
            status,
            format!("feedback is only taken for resolved cases; this case is {status}"),
        ));
    }
    case.satisfaction_score = Some(score);
    case.feedback_comment = comment.clone();
    case.closed_at = Some(now);
    case.transition(CaseStatus::Closed, now, "customer");
    Ok(Effects {
        events: vec![
            Event::new(
                EventKind::FeedbackReceived,
                workflow::SELF_SERVICE,
                now,
                json!({"case_id": case.case_id, "score": score, "comment": comment}),
            ),
            updated(case, status, workflow::SELF_SERVICE, now),
        ],
        finish: false,
    })
}
