//! Conformance checks of the delivery queue and log. Times are whole milliseconds so both
//! stores' index precision gives the same answers.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use crate::delivery::{Attempt, DeliveryJob, DeliveryState};
use crate::domain::{Event, EventKind, workflow};
use crate::store::{DueQuery, SharedStore};

/// Now, cut to the millisecond.
fn now_ms() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

fn ms(n: i64) -> Duration {
    Duration::milliseconds(n)
}

fn event_at(at: DateTime<Utc>) -> Event {
    Event::new(
        EventKind::CaseCreated,
        workflow::INTAKE,
        at,
        json!({"case_id": "c"}),
    )
}

fn attempt(status: Option<u16>, at: DateTime<Utc>) -> Attempt {
    Attempt {
        attempt: 0,
        status_code: status,
        error: status.is_none().then(|| "timeout".to_string()),
        duration_ms: 5,
        response_snippet: status.map(|s| format!("status {s}")),
        at,
        next_attempt_at: None,
    }
}

async fn load(store: &SharedStore, job: &DeliveryJob) -> Option<DeliveryJob> {
    store
        .load_delivery(&job.endpoint_id, &job.msg_id)
        .await
        .unwrap()
}

/// Due at `now`, up to 64 in all, cut short after 1,000 in-flight entries.
fn at<'a>(wanted: &'a [(&'a str, usize)], now: DateTime<Utc>) -> DueQuery<'a> {
    DueQuery {
        wanted,
        now,
        limit: 64,
        max_skipped: 1000,
    }
}

fn keys(jobs: &[DeliveryJob]) -> Vec<(String, String)> {
    jobs.iter()
        .map(|j| (j.endpoint_id.clone(), j.msg_id.clone()))
        .collect()
}

/// Jobs and the cursor land together and read back.
pub async fn enqueue_and_cursor(store: SharedStore) {
    assert_eq!(store.dispatch_cursor().await.unwrap(), None);
    assert_eq!(store.next_due().await.unwrap(), None);
    let t0 = now_ms();
    let events: Vec<Event> = (0..3).map(|i| event_at(t0 + ms(i))).collect();
    let jobs: Vec<DeliveryJob> = events
        .iter()
        .flat_map(|e| [DeliveryJob::new(e, "wh_a"), DeliveryJob::new(e, "wh_b")])
        .collect();
    let cursor = events[2].msg_id.clone();
    store
        .enqueue_deliveries(jobs.clone(), &cursor)
        .await
        .unwrap();
    assert_eq!(store.dispatch_cursor().await.unwrap(), Some(cursor));
    for job in &jobs {
        assert_eq!(load(&store, job).await.as_ref(), Some(job));
    }
    assert_eq!(
        store.load_delivery("wh_a", "msg_missing").await.unwrap(),
        None
    );
    // A fan-out with nothing to enqueue still moves the cursor.
    let later = event_at(t0 + ms(10));
    store
        .enqueue_fanned_out(Vec::new(), &later.msg_id)
        .await
        .unwrap();
    assert_eq!(store.dispatch_cursor().await.unwrap(), Some(later.msg_id));
}

/// Re-enqueuing existing jobs (the dispatcher's fan-out resuming after a crash) keeps their
/// progress.
pub async fn reenqueue_keeps_progress(store: SharedStore) {
    let t0 = now_ms();
    let (e1, e2) = (event_at(t0), event_at(t0 + ms(1)));
    let retried = DeliveryJob::new(&e1, "wh_a");
    let delivered = DeliveryJob::new(&e2, "wh_a");
    store
        .enqueue_deliveries(vec![retried.clone(), delivered.clone()], &e2.msg_id)
        .await
        .unwrap();
    let mut retried_after = retried.clone();
    retried_after.record(attempt(Some(500), t0), Some(t0 + ms(60_000)));
    let mut delivered_after = delivered.clone();
    delivered_after.record(attempt(Some(200), t0), None);
    store.update_delivery(&retried_after).await.unwrap();
    store.update_delivery(&delivered_after).await.unwrap();

    let e3 = event_at(t0 + ms(2));
    let fresh = DeliveryJob::new(&e3, "wh_a");
    store
        .enqueue_fanned_out(vec![retried, delivered, fresh.clone()], &e3.msg_id)
        .await
        .unwrap();
    assert_eq!(store.dispatch_cursor().await.unwrap(), Some(e3.msg_id));
    assert_eq!(
        load(&store, &retried_after).await,
        Some(retried_after.clone())
    );
    assert_eq!(load(&store, &delivered_after).await, Some(delivered_after));
    assert_eq!(load(&store, &fresh).await, Some(fresh.clone()));
    // Neither the delivered job nor the retried one's old due time came back into the index.
    let due = store.due_deliveries(t0 + ms(120_000), 100).await.unwrap();
    assert_eq!(due, vec![fresh, retried_after]);
    assert_eq!(
        store.delivery_backlog().await.unwrap(),
        BTreeMap::from([("wh_a".to_string(), 2)])
    );
}

/// Due jobs come earliest first, only up to `now`, at most `limit`; `next_due` is the earliest.
pub async fn due_order_and_limit(store: SharedStore) {
    let t0 = now_ms();
    let mut jobs = Vec::new();
    for (i, offset) in [3, 1, 2, 10_000].into_iter().enumerate() {
        let mut job = DeliveryJob::new(&event_at(t0 + ms(i as i64)), "wh_a");
        job.due_at = t0 + ms(offset);
        jobs.push(job);
    }
    let cursor = jobs[3].msg_id.clone();
    store
        .enqueue_deliveries(jobs.clone(), &cursor)
        .await
        .unwrap();
    assert_eq!(store.next_due().await.unwrap(), Some(t0 + ms(1)));
    let due = store.due_deliveries(t0 + ms(5), 10).await.unwrap();
    assert_eq!(due, vec![jobs[1].clone(), jobs[2].clone(), jobs[0].clone()]);
    let first_two = store.due_deliveries(t0 + ms(5), 2).await.unwrap();
    assert_eq!(first_two, vec![jobs[1].clone(), jobs[2].clone()]);
    // Inclusive: a job due exactly now is due.
    let exact = store.due_deliveries(t0 + ms(1), 10).await.unwrap();
    assert_eq!(exact, vec![jobs[1].clone()]);
    assert!(store.due_deliveries(t0, 10).await.unwrap().is_empty());
    assert!(
        store
            .due_deliveries(t0 + ms(5), 0)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .due_deliveries(t0 + ms(20_000), 10)
            .await
            .unwrap()
            .len(),
        4
    );
}

/// A batch update is each update in order: rescheduled, delivered, failed and never-enqueued
/// jobs land as given, a job listed twice ends as its last copy, and an empty batch is a no-op.
pub async fn batch_update(store: SharedStore) {
    let t0 = now_ms();
    let jobs: Vec<DeliveryJob> = (0..4)
        .map(|i| DeliveryJob::new(&event_at(t0 + ms(i)), "wh_a"))
        .collect();
    let cursor = jobs[2].msg_id.clone();
    store
        .enqueue_deliveries(jobs[..3].to_vec(), &cursor)
        .await
        .unwrap();
    store.update_deliveries(&[]).await.unwrap();
    assert_eq!(
        store.due_deliveries(t0 + ms(3), 10).await.unwrap(),
        jobs[..3]
    );

    let (mut retry, mut done, mut failed) = (jobs[0].clone(), jobs[1].clone(), jobs[2].clone());
    let mut never_enqueued = jobs[3].clone();
    retry.record(attempt(Some(503), t0), Some(t0 + ms(30_000)));
    let first_retry = retry.clone();
    retry.record(attempt(Some(503), t0 + ms(1)), Some(t0 + ms(60_000)));
    done.record(attempt(Some(204), t0), None);
    failed.record(attempt(None, t0), None);
    never_enqueued.record(attempt(Some(500), t0), Some(t0 + ms(90_000)));
    let batch = [
        first_retry,
        done.clone(),
        failed.clone(),
        retry.clone(),
        never_enqueued.clone(),
    ];
    store.update_deliveries(&batch).await.unwrap();
    for job in [&retry, &done, &failed, &never_enqueued] {
        assert_eq!(load(&store, job).await.as_ref(), Some(job));
    }
    assert_eq!(store.next_due().await.unwrap(), Some(t0 + ms(60_000)));
    assert_eq!(
        store.due_deliveries(t0 + ms(90_000), 10).await.unwrap(),
        vec![retry.clone(), never_enqueued.clone()]
    );
    assert_eq!(
        store.delivery_backlog().await.unwrap(),
        BTreeMap::from([("wh_a".to_string(), 2)])
    );
    assert_eq!(
        store
            .endpoint_deliveries("wh_a", None, 10)
            .await
            .unwrap()
            .len(),
        4
    );
    assert_eq!(
        keys(
            &store
                .deliveries_of_message(&never_enqueued.msg_id)
                .await
                .unwrap()
        ),
        keys(std::slice::from_ref(&never_enqueued))
    );
}

/// Enqueues `n` jobs for `wh_a`, one per event a millisecond apart from now; returns the
/// first event's time and the jobs.
async fn enqueued(store: &SharedStore, n: i64) -> (DateTime<Utc>, Vec<DeliveryJob>) {
    let t0 = now_ms();
    let jobs: Vec<DeliveryJob> = (0..n)
        .map(|i| DeliveryJob::new(&event_at(t0 + ms(i)), "wh_a"))
        .collect();
    let cursor = jobs[jobs.len() - 1].msg_id.clone();
    store
        .enqueue_deliveries(jobs.clone(), &cursor)
        .await
        .unwrap();
    (t0, jobs)
}

/// Skipped jobs are passed over without counting against the limit.
pub async fn due_skipping(store: SharedStore) {
    let (t0, jobs) = enqueued(&store, 4).await;
    let taken = [jobs[0].msg_id.clone(), jobs[2].msg_id.clone()];
    let skip = |endpoint: &str, msg: &str| endpoint == "wh_a" && taken.iter().any(|t| t == msg);
    let now = t0 + ms(3);
    assert_eq!(
        store
            .due_deliveries_skipping(now, 1, 10, &skip)
            .await
            .unwrap(),
        vec![jobs[1].clone()]
    );
    assert_eq!(
        store
            .due_deliveries_skipping(now, 10, 10, &skip)
            .await
            .unwrap(),
        vec![jobs[1].clone(), jobs[3].clone()]
    );
    // The scan stops after passing over `max_skipped` entries.
    assert_eq!(
        store
            .due_deliveries_skipping(now, 10, 1, &skip)
            .await
            .unwrap(),
        Vec::<DeliveryJob>::new()
    );
    assert_eq!(
        store
            .due_deliveries_skipping(now, 10, 2, &skip)
            .await
            .unwrap(),
        vec![jobs[1].clone()]
    );
    assert_eq!(store.due_deliveries(now, 10).await.unwrap(), jobs);
}

/// Due jobs by endpoint: each wanted endpoint's earliest, as many as it wants, never another
/// endpoint's, never one in flight; an update moves a job in (and out of) what is due.
pub async fn due_of_endpoints(store: SharedStore) {
    let t0 = now_ms();
    let events: Vec<Event> = (0..4).map(|i| event_at(t0 + ms(i))).collect();
    let of = |endpoint: &str| -> Vec<DeliveryJob> {
        events
            .iter()
            .map(|e| DeliveryJob::new(e, endpoint))
            .collect()
    };
    let (a, b, c) = (of("wh_a"), of("wh_b"), of("wh_c"));
    let cursor = events[3].msg_id.clone();
    store
        .enqueue_deliveries([a.clone(), b.clone(), c.clone()].concat(), &cursor)
        .await
        .unwrap();
    let none = |_: &str, _: &str| false;
    let now = t0 + ms(3);
    let due = |wanted: Vec<(&'static str, usize)>, in_flight: Vec<String>| {
        let store = store.clone();
        async move {
            let skip = |_: &str, msg: &str| in_flight.iter().any(|m| m == msg);
            store
                .due_deliveries_of(at(&wanted, now), &skip)
                .await
                .unwrap()
        }
    };
    let found = due(vec![("wh_b", 2)], vec![]).await;
    assert!(found.complete);
    assert_eq!(keys(&found.jobs), keys(&b[..2]));
    // In flight: passed over, the next one is taken instead.
    let found = due(vec![("wh_b", 2)], vec![b[0].msg_id.clone()]).await;
    assert_eq!(keys(&found.jobs), keys(&b[1..3]));
    // Several endpoints: each gets its own, earliest first; unwanted ones get nothing.
    let mut found = due(vec![("wh_a", 1), ("wh_c", 3)], vec![]).await.jobs;
    found.sort_by(|x, y| (&x.endpoint_id, x.due_at).cmp(&(&y.endpoint_id, y.due_at)));
    assert_eq!(keys(&found), keys(&[&a[..1], &c[..3]].concat()));
    // Not yet due: left out.
    let early = store
        .due_deliveries_of(at(&[("wh_a", 10)], t0 + ms(1)), &none)
        .await
        .unwrap();
    assert_eq!(keys(&early.jobs), keys(&a[..2]));
    // Rescheduled later, delivered: out of what is due; a manual retry brings it back.
    let (mut later, mut done) = (a[0].clone(), a[1].clone());
    later.record(attempt(Some(503), t0), Some(t0 + ms(60_000)));
    done.record(attempt(Some(204), t0), None);
    store
        .update_deliveries(&[later.clone(), done.clone()])
        .await
        .unwrap();
    assert_eq!(
        keys(&due(vec![("wh_a", 10)], vec![]).await.jobs),
        keys(&a[2..])
    );
    let late = store
        .due_deliveries_of(at(&[("wh_a", 10)], t0 + ms(60_000)), &none)
        .await
        .unwrap();
    assert_eq!(
        keys(&late.jobs),
        keys(&[&a[2..], &[later.clone()]].concat())
    );
    later.state = DeliveryState::Pending;
    later.due_at = t0;
    store.update_delivery(&later).await.unwrap();
    assert_eq!(
        keys(&due(vec![("wh_a", 1)], vec![]).await.jobs),
        keys(&[later])
    );
}

/// An update reschedules a pending job and takes delivered and failed ones out of the index.
pub async fn update_moves_due(store: SharedStore) {
    let (t0, jobs) = enqueued(&store, 3).await;
    assert_eq!(store.due_deliveries(t0 + ms(2), 10).await.unwrap(), jobs);

    let (mut retry, mut done, mut failed) = (jobs[0].clone(), jobs[1].clone(), jobs[2].clone());
    retry.record(attempt(Some(503), t0), Some(t0 + ms(60_000)));
    done.record(attempt(Some(204), t0), None);
    failed.record(attempt(None, t0), None);
    for job in [&retry, &done, &failed] {
        store.update_delivery(job).await.unwrap();
        assert_eq!(load(&store, job).await.as_ref(), Some(job));
    }
    assert!(
        store
            .due_deliveries(t0 + ms(59_999), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.next_due().await.unwrap(), Some(t0 + ms(60_000)));
    assert_eq!(
        store.due_deliveries(t0 + ms(60_000), 10).await.unwrap(),
        vec![retry.clone()]
    );

    // A manual retry puts a failed job back into the index.
    failed.state = DeliveryState::Pending;
    failed.due_at = t0 + ms(5);
    store.update_delivery(&failed).await.unwrap();
    assert_eq!(store.next_due().await.unwrap(), Some(t0 + ms(5)));

    retry.record(attempt(Some(200), t0 + ms(60_000)), None);
    failed.record(attempt(Some(200), t0 + ms(5)), None);
    store.update_delivery(&retry).await.unwrap();
    store.update_delivery(&failed).await.unwrap();
    assert_eq!(store.next_due().await.unwrap(), None);
    assert!(
        store
            .due_deliveries(t0 + ms(120_000), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.delivery_backlog().await.unwrap().is_empty());
    // The log keeps every job whatever its state.
    assert_eq!(
        store
            .endpoint_deliveries("wh_a", None, 10)
            .await
            .unwrap()
            .len(),
        3
    );
}

/// An endpoint's log is newest first and pages with `before` without gaps or repeats.
pub async fn endpoint_log_pages(store: SharedStore) {
    let t0 = now_ms();
    let mut mine: Vec<DeliveryJob> = (0..7)
        .map(|i| DeliveryJob::new(&event_at(t0 + ms(i)), "wh_a"))
        .collect();
    let other: Vec<DeliveryJob> = (0..2)
        .map(|i| DeliveryJob::new(&event_at(t0 + ms(i)), "wh_b"))
        .collect();
    let all: Vec<DeliveryJob> = mine.iter().chain(&other).cloned().collect();
    store.enqueue_deliveries(all, "msg_cursor").await.unwrap();
    mine.sort_by(|a, b| b.msg_id.cmp(&a.msg_id));

    let mut seen = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let page = store
            .endpoint_deliveries("wh_a", before.as_deref(), 3)
            .await
            .unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        before = Some(last.msg_id.clone());
        seen.extend(page);
    }
    assert_eq!(keys(&seen), keys(&mine));
    assert_eq!(
        store
            .endpoint_deliveries("wh_b", None, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(
        store
            .endpoint_deliveries("wh_a", None, 0)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .endpoint_deliveries("wh_none", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A message's jobs across endpoints, by endpoint id.
pub async fn deliveries_of_message(store: SharedStore) {
    let t0 = now_ms();
    let (e1, e2) = (event_at(t0), event_at(t0 + ms(1)));
    let jobs = vec![
        DeliveryJob::new(&e1, "wh_c"),
        DeliveryJob::new(&e1, "wh_a"),
        DeliveryJob::new(&e1, "wh_b"),
        DeliveryJob::new(&e2, "wh_a"),
    ];
    store
        .enqueue_deliveries(jobs.clone(), &e2.msg_id)
        .await
        .unwrap();
    let of_e1 = store.deliveries_of_message(&e1.msg_id).await.unwrap();
    assert_eq!(
        of_e1,
        vec![jobs[1].clone(), jobs[2].clone(), jobs[0].clone()]
    );
    assert_eq!(
        store.deliveries_of_message(&e2.msg_id).await.unwrap(),
        vec![jobs[3].clone()]
    );
    assert!(
        store
            .deliveries_of_message("msg_missing")
            .await
            .unwrap()
            .is_empty()
    );
}

/// The backlog counts pending jobs per endpoint.
pub async fn backlog_counts(store: SharedStore) {
    assert!(store.delivery_backlog().await.unwrap().is_empty());
    let t0 = now_ms();
    let mut jobs = Vec::new();
    for i in 0..3 {
        let event = event_at(t0 + ms(i));
        jobs.push(DeliveryJob::new(&event, "wh_a"));
        if i < 2 {
            jobs.push(DeliveryJob::new(&event, "wh_b"));
        }
    }
    store
        .enqueue_deliveries(jobs.clone(), "msg_cursor")
        .await
        .unwrap();
    let mut done = jobs[1].clone();
    assert_eq!(done.endpoint_id, "wh_b");
    done.record(attempt(Some(200), t0), None);
    store.update_delivery(&done).await.unwrap();
    assert_eq!(
        store.delivery_backlog().await.unwrap(),
        BTreeMap::from([("wh_a".to_string(), 3), ("wh_b".to_string(), 1)])
    );
}

/// An endpoint's oldest pending job is found whatever its due time, and the next one once it
/// is settled.
pub async fn oldest_pending(store: SharedStore) {
    assert_eq!(store.oldest_pending_of("wh_a").await.unwrap(), None);
    let t0 = now_ms();
    let events: Vec<Event> = (0..4).map(|i| event_at(t0 + ms(i))).collect();
    let mut jobs: Vec<DeliveryJob> = events.iter().map(|e| DeliveryJob::new(e, "wh_a")).collect();
    // Another endpoint's older job is not this endpoint's.
    let other = DeliveryJob::new(&event_at(t0 - ms(1)), "wh_ab");
    store
        .enqueue_deliveries([vec![other], jobs.clone()].concat(), "msg_cursor")
        .await
        .unwrap();
    let oldest = || async { store.oldest_pending_of("wh_a").await.unwrap() };
    assert_eq!(oldest().await, Some(jobs[0].msg_id.clone()));
    // An id with pattern characters names only itself (a newer job: it is not wh_a's oldest).
    let starred = DeliveryJob::new(&event_at(t0 + ms(10)), "wh_*");
    store
        .enqueue_deliveries(vec![starred.clone()], "msg_cursor")
        .await
        .unwrap();
    assert_eq!(
        store.oldest_pending_of("wh_*").await.unwrap(),
        Some(starred.msg_id.clone())
    );
    assert_eq!(oldest().await, Some(jobs[0].msg_id.clone()));
    // Retried an hour later: due after all the others, still the oldest.
    jobs[0].record(attempt(Some(503), t0), Some(t0 + ms(3_600_000)));
    store.update_delivery(&jobs[0]).await.unwrap();
    assert_eq!(oldest().await, Some(jobs[0].msg_id.clone()));
    // Delivered, then the next one failed for good: the one after.
    jobs[0].record(attempt(Some(200), t0), None);
    jobs[1].record(attempt(Some(500), t0), None);
    store.update_deliveries(&jobs[..2]).await.unwrap();
    assert_eq!(oldest().await, Some(jobs[2].msg_id.clone()));
    for job in &mut jobs[2..] {
        job.record(attempt(Some(200), t0), None);
    }
    store.update_deliveries(&jobs[2..]).await.unwrap();
    assert_eq!(oldest().await, None);
}

/// Many concurrent updates (the group-commit path) all land with their index entries.
pub async fn concurrent_updates(store: SharedStore) {
    let t0 = now_ms();
    let event = event_at(t0);
    let jobs: Vec<DeliveryJob> = (0..64)
        .map(|i| DeliveryJob::new(&event, &format!("wh_{i:02}")))
        .collect();
    store
        .enqueue_deliveries(jobs.clone(), &event.msg_id)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for (i, mut job) in jobs.into_iter().enumerate() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                job.record(attempt(Some(200), t0), None);
            } else {
                job.record(attempt(Some(500), t0), Some(t0 + ms(1_000 + i as i64)));
            }
            store.update_delivery(&job).await.unwrap();
            job
        }));
    }
    let mut pending = Vec::new();
    for task in tasks {
        let job = task.await.unwrap();
        assert_eq!(load(&store, &job).await.as_ref(), Some(&job));
        if job.state == DeliveryState::Pending {
            pending.push(job);
        }
    }
    let due = store.due_deliveries(t0 + ms(2_000), 1_000).await.unwrap();
    assert_eq!(due, pending);
    assert_eq!(store.next_due().await.unwrap(), Some(t0 + ms(1_001)));
    assert_eq!(store.delivery_backlog().await.unwrap().len(), 32);
    assert_eq!(
        store
            .deliveries_of_message(&event.msg_id)
            .await
            .unwrap()
            .len(),
        64
    );
}

/// Claims, on a store several nodes share: a due job is claimed once, stays out of everyone's
/// due scans until the claim's end, is due again after it (its claimant died), and a recorded
/// attempt replaces the claim with the job's real schedule. (A store one process owns claims
/// everything and changes nothing; see the embedded check.)
pub async fn claims_hand_each_job_to_one_node(store: SharedStore) {
    let t0 = now_ms();
    let job = DeliveryJob::new(&event_at(t0), "wh_a");
    let cursor = job.msg_id.clone();
    store
        .enqueue_deliveries(vec![job.clone()], &cursor)
        .await
        .unwrap();
    let key = [(job.endpoint_id.as_str(), job.msg_id.as_str())];
    let until = t0 + ms(10_000);
    assert_eq!(
        store.claim_deliveries(&key, t0, until).await.unwrap(),
        [true]
    );
    // Claimed: nobody else gets it, and it is not due for anyone.
    assert_eq!(
        store.claim_deliveries(&key, t0, until).await.unwrap(),
        [false]
    );
    assert!(
        store
            .due_deliveries(t0 + ms(5), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // The claim ran out without a recorded attempt: due again, claimable again.
    let later = until + ms(1);
    assert_eq!(
        store.due_deliveries(later, 10).await.unwrap(),
        std::slice::from_ref(&job)
    );
    assert_eq!(
        store
            .claim_deliveries(&key, later, later + ms(10_000))
            .await
            .unwrap(),
        [true]
    );
    // The attempt is recorded: its schedule replaces the claim.
    let mut retried = job.clone();
    retried.due_at = t0 + ms(1);
    store.update_delivery(&retried).await.unwrap();
    assert_eq!(
        store.due_deliveries(t0 + ms(5), 10).await.unwrap(),
        [retried]
    );
}
