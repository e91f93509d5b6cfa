//! One conformance suite for every [`SnapshotStore`] implementation: each check takes a fresh,
//! empty store. The embedded store runs it in this module's tests; other stores call
//! [`run_all`] from their own tests. The delivery queue's checks are in [`deliveries`].

pub mod deliveries;
pub mod rooms;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{CaseQuery, Commit, IdempotencyRecord, OutboxEntry, SharedStore};
use crate::case::lifecycle;
use crate::domain::*;
use crate::routing::ReviewRouting;

fn classification() -> Classification {
    Classification {
        category: Category::Configuration,
        subcategory: "ssl-certificates".into(),
        priority: Priority::High,
        confidence: 0.9,
        estimated_complexity: Complexity::Simple,
        resolution_path: ResolutionPath::SelfService,
        suggested_resolution_path: ResolutionPath::SelfService,
        reasoning: "test".into(),
        tags: vec!["ssl".into()],
        similar_cases: vec![],
    }
}

/// A freshly created case at `at` and its creation events.
pub fn new_case(at: DateTime<Utc>) -> (Case, Vec<Event>) {
    let intake = Intake {
        customer_id: customer_id_for_email("a@example.com"),
        customer_email: "a@example.com".into(),
        customer_name: "A".into(),
        description: "certificate expired on our domain".into(),
        severity: None,
        product: None,
        product_version: None,
        environment: None,
        channel: Channel::Webhook,
        metadata: json!({}),
    };
    lifecycle::create(
        CaseId::new(),
        intake,
        classification(),
        &ReviewRouting::default(),
        at,
    )
}

fn events_of(entries: &[OutboxEntry]) -> Vec<Event> {
    entries.iter().map(|e| e.event.clone()).collect()
}

/// Outbox positions follow commit order, not msg id order: an event created first but
/// committed second comes after the other, so a reader resuming after the first commit's
/// position still finds it (two cases commit in whichever order they reach the store).
pub async fn outbox_positions_follow_commit_order(store: SharedStore) {
    assert_eq!(
        store.outbox_end().await.unwrap(),
        0,
        "an empty outbox ends at 0"
    );
    let now = Utc::now();
    let (mut early, mut early_events) = new_case(now);
    let (mut late, mut late_events) = new_case(now);
    early.review = None;
    late.review = None;
    early_events.truncate(1);
    late_events.truncate(1);
    // Created first (the smaller msg id) …
    assert!(early_events[0].msg_id < late_events[0].msg_id);
    // … committed second.
    for (case, events) in [(late, late_events.clone()), (early, early_events.clone())] {
        store
            .commit(&Commit {
                case,
                events,
                idempotency: None,
                fence: None,
            })
            .await
            .unwrap();
    }
    let all = store.outbox(0, 10).await.unwrap();
    assert_eq!(events_of(&all), [late_events, early_events].concat());
    let resumed = store.outbox(all[0].position, 10).await.unwrap();
    assert_eq!(resumed, all[1..]);
    assert_eq!(
        store.outbox_end().await.unwrap(),
        all[1].position,
        "the end is the newest event's position"
    );
}

/// Snapshots, reviews and events written by one commit are all readable afterwards.
pub async fn commit_then_read(store: SharedStore) {
    let now = Utc::now();
    let (mut case, events) = new_case(now);
    case.review = None;
    let id = case.case_id;
    store
        .commit(&Commit {
            case: case.clone(),
            events: events.clone(),
            idempotency: None,
            fence: None,
        })
        .await
        .unwrap();
    assert_eq!(store.load_case(id).await.unwrap(), Some(case.clone()));
    assert_eq!(store.load_case(CaseId::new()).await.unwrap(), None);
    assert_eq!(events_of(&store.outbox(0, 100).await.unwrap()), events);

    // A later snapshot replaces the earlier one and appends its events after the first ones.
    let mut later = case.clone();
    later.transition(CaseStatus::PendingReview, now, "test");
    later.review = Some(Review::pending(
        id,
        "support-review".into(),
        Urgency::Normal,
        "test",
        now,
    ));
    let more = vec![Event::new(
        EventKind::CaseEscalated,
        workflow::COLLABORATIVE,
        now,
        json!({"case_id": id}),
    )];
    store
        .commit(&Commit {
            case: later.clone(),
            events: more.clone(),
            idempotency: None,
            fence: None,
        })
        .await
        .unwrap();
    assert_eq!(store.load_case(id).await.unwrap(), Some(later.clone()));
    let review = later.review.clone().unwrap();
    assert_eq!(
        store.load_review(&review.review_id).await.unwrap(),
        Some(review)
    );
    assert_eq!(store.load_review(&ReviewId::new()).await.unwrap(), None);
    let all = store.outbox(0, 100).await.unwrap();
    assert_eq!(all.len(), events.len() + 1);
    assert_eq!(all.last().map(|e| &e.event), more.last());
    let positions: Vec<u64> = all.iter().map(|e| e.position).collect();
    assert_eq!(positions, (1..=all.len() as u64).collect::<Vec<_>>());
    let after_first = store.outbox(all[0].position, 100).await.unwrap();
    assert_eq!(after_first, all[1..]);
    assert_eq!(store.outbox(0, 1).await.unwrap().len(), 1);
}

/// Idempotency keys resolve within their lifetime and can be purged.
pub async fn idempotency_keys(store: SharedStore) {
    let now = Utc::now();
    let (case, events) = new_case(now);
    let id = case.case_id;
    store
        .commit(&Commit {
            case,
            events,
            idempotency: Some(IdempotencyRecord {
                key: "caller:key-1".into(),
                case_id: id,
                created_at: now,
            }),
            fence: None,
        })
        .await
        .unwrap();
    let hour = chrono::Duration::hours(1);
    assert_eq!(
        store
            .idempotent_case("caller:key-1", now - hour)
            .await
            .unwrap(),
        Some(id)
    );
    assert_eq!(
        store
            .idempotent_case("caller:key-1", now + hour)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .idempotent_case("caller:key-2", now - hour)
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.purge_idempotency(now - hour).await.unwrap(), 0);
    assert_eq!(store.purge_idempotency(now + hour).await.unwrap(), 1);
    assert_eq!(
        store
            .idempotent_case("caller:key-1", now - hour)
            .await
            .unwrap(),
        None
    );
}

/// Listing is newest first, filters by status and pages with a cursor without gaps.
pub async fn list_newest_first(store: SharedStore) {
    let start = Utc::now();
    let mut ids = Vec::new();
    for i in 0..7 {
        let (mut case, events) = new_case(start + chrono::Duration::milliseconds(i));
        if i % 2 == 0 {
            case.status = CaseStatus::Closed;
        }
        ids.push((case.case_id, case.status));
        store
            .commit(&Commit {
                case,
                events,
                idempotency: None,
                fence: None,
            })
            .await
            .unwrap();
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_cases(CaseQuery {
                status: None,
                limit: 3,
                cursor: cursor.clone(),
            })
            .await
            .unwrap();
        assert!(page.cases.len() <= 3);
        seen.extend(page.cases.iter().map(|c| c.case_id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ids.iter().map(|(id, _)| *id).collect::<Vec<_>>());
    let closed = store
        .list_cases(CaseQuery {
            status: Some(CaseStatus::Closed),
            limit: 100,
            cursor: None,
        })
        .await
        .unwrap();
    let want: Vec<CaseId> = ids
        .iter()
        .filter(|(_, s)| *s == CaseStatus::Closed)
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(
        closed.cases.iter().map(|c| c.case_id).collect::<Vec<_>>(),
        want
    );
    assert_eq!(closed.next_cursor, None);
}

/// Many concurrent commits all land (the group-commit path) and ping answers.
pub async fn concurrent_commits(store: SharedStore) {
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let (case, events) = new_case(Utc::now());
            let id = case.case_id;
            store
                .commit(&Commit {
                    case,
                    events,
                    idempotency: None,
                    fence: None,
                })
                .await
                .unwrap();
            id
        }));
    }
    for task in tasks {
        let id = task.await.unwrap();
        assert!(store.load_case(id).await.unwrap().is_some());
    }
    assert_eq!(store.outbox(0, 1000).await.unwrap().len(), 64);
    assert!(store.ping().await.unwrap() < Duration::from_secs(5));
}

/// Events that belong to no case land in the outbox in order.
pub async fn standalone_events(store: SharedStore) {
    let now = Utc::now();
    let events: Vec<Event> = (0..3)
        .map(|i| {
            Event::new(
                EventKind::AlertTriggered,
                "alerts",
                now,
                json!({"alert_id": i}),
            )
        })
        .collect();
    store.append_events(events.clone()).await.unwrap();
    assert_eq!(events_of(&store.outbox(0, 10).await.unwrap()), events);
}

/// Endpoints are stored, listed in creation order, replaced and deleted.
pub async fn endpoints(store: SharedStore) {
    use crate::delivery::{Endpoint, EndpointStatus, EventPattern};
    let now = Utc::now();
    let a = Endpoint::new(
        "https://a.example/hook".into(),
        vec![EventPattern::All],
        now,
    );
    let mut b = Endpoint::new(
        "https://b.example/hook".into(),
        vec![EventPattern::parse("case.*").unwrap()],
        now,
    );
    store.put_endpoint(&a).await.unwrap();
    store.put_endpoint(&b).await.unwrap();
    assert_eq!(store.load_endpoint(&a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(store.load_endpoint("wh_missing").await.unwrap(), None);
    b.status = EndpointStatus::Paused;
    b.rotate_secret(now);
    store.put_endpoint(&b).await.unwrap();
    // A store that keeps endpoints in memory serves the write at once, to a load as to a list.
    assert_eq!(store.load_endpoint(&b.id).await.unwrap(), Some(b.clone()));
    assert_eq!(
        store.list_endpoints().await.unwrap(),
        vec![a.clone(), b.clone()]
    );
    assert!(store.delete_endpoint(&a.id).await.unwrap());
    assert!(!store.delete_endpoint(&a.id).await.unwrap());
    assert_eq!(store.list_endpoints().await.unwrap(), vec![b]);
}

/// Runs every check, each on a store from `fresh`.
pub async fn run_all<F, Fut>(fresh: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = SharedStore>,
{
    commit_then_read(fresh().await).await;
    outbox_positions_follow_commit_order(fresh().await).await;
    idempotency_keys(fresh().await).await;
    list_newest_first(fresh().await).await;
    concurrent_commits(fresh().await).await;
    standalone_events(fresh().await).await;
    endpoints(fresh().await).await;
    deliveries::enqueue_and_cursor(fresh().await).await;
    deliveries::reenqueue_keeps_progress(fresh().await).await;
    deliveries::due_order_and_limit(fresh().await).await;
    deliveries::update_moves_due(fresh().await).await;
    deliveries::batch_update(fresh().await).await;
    deliveries::due_skipping(fresh().await).await;
    deliveries::due_of_endpoints(fresh().await).await;
    deliveries::endpoint_log_pages(fresh().await).await;
    deliveries::deliveries_of_message(fresh().await).await;
    deliveries::backlog_counts(fresh().await).await;
    deliveries::oldest_pending(fresh().await).await;
    deliveries::concurrent_updates(fresh().await).await;
    rooms::history_appends_and_trims(fresh().await).await;
    rooms::pending_index_follows_commits(fresh().await).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{EmbeddedStore, SnapshotStore};

    #[tokio::test]
    async fn embedded_store_conforms() {
        let dir = tempfile::TempDir::new().unwrap();
        let counter = std::sync::atomic::AtomicUsize::new(0);
        run_all(|| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let path = dir.path().join(format!("store-{n}"));
            async move { EmbeddedStore::open(&path, true).unwrap() as SharedStore }
        })
        .await;
    }

    #[tokio::test]
    async fn redis_store_conforms() {
        let server = crate::testing::RedisServer::start();
        let counter = std::sync::atomic::AtomicUsize::new(0);
        run_all(|| {
            // One server, a fresh key prefix per check.
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let store = crate::store::RedisStore::connect(
                &server.url(),
                &format!("conformance-{n}:"),
                Duration::from_secs(2),
            )
            .unwrap();
            async move { std::sync::Arc::new(store) as SharedStore }
        })
        .await;
    }

    /// A store written before outbox positions keeps its events, in msg id order, and numbers
    /// new ones after them.
    #[tokio::test]
    async fn embedded_legacy_outbox_is_migrated() {
        let dir = tempfile::TempDir::new().unwrap();
        let old: Vec<Event> = (0..3).map(|_| new_case(Utc::now()).1.remove(0)).collect();
        {
            let db = redb::Database::create(dir.path().join("casehub.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let legacy: redb::TableDefinition<&str, &[u8]> =
                    redb::TableDefinition::new("outbox");
                let mut table = txn.open_table(legacy).unwrap();
                for event in old.iter().rev() {
                    let bytes = serde_json::to_vec(event).unwrap();
                    table
                        .insert(event.msg_id.as_str(), bytes.as_slice())
                        .unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let store = EmbeddedStore::open(dir.path(), true).unwrap();
        let (case, events) = new_case(Utc::now());
        store
            .commit(&Commit {
                case,
                events: events.clone(),
                idempotency: None,
                fence: None,
            })
            .await
            .unwrap();
        let all = store.outbox(0, 100).await.unwrap();
        assert_eq!(events_of(&all), [old, events].concat());
        assert_eq!(all.last().unwrap().position, all.len() as u64);
        store.close().await;
    }

    #[tokio::test]
    async fn redis_legacy_outbox_is_migrated() {
        use redis::AsyncCommands;
        let server = crate::testing::RedisServer::start();
        let old: Vec<Event> = (0..3).map(|_| new_case(Utc::now()).1.remove(0)).collect();
        let client = redis::Client::open(server.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        for event in &old {
            let _: () = conn.zadd("m:outbox", &event.msg_id, 0).await.unwrap();
            let json = serde_json::to_string(event).unwrap();
            let _: () = conn.hset("m:events", &event.msg_id, json).await.unwrap();
        }
        let store =
            crate::store::RedisStore::connect(&server.url(), "m:", Duration::from_secs(2)).unwrap();
        store.migrate().await.unwrap();
        store.migrate().await.unwrap();
        store
            .append_events(vec![new_case(Utc::now()).1.remove(0)])
            .await
            .unwrap();
        let all = store.outbox(0, 100).await.unwrap();
        assert_eq!(events_of(&all[..3]), old);
        let positions: Vec<u64> = all.iter().map(|e| e.position).collect();
        assert_eq!(positions, [1, 2, 3, 4]);
    }

    /// A private redis-server, a store on it under `prefix`, and a plain connection to look
    /// at (or arrange) its keys.
    async fn redis_store_and_connection(
        prefix: &str,
    ) -> (
        crate::testing::RedisServer,
        crate::store::RedisStore,
        redis::aio::MultiplexedConnection,
    ) {
        let server = crate::testing::RedisServer::start();
        let store =
            crate::store::RedisStore::connect(&server.url(), prefix, Duration::from_secs(2))
                .unwrap();
        let client = redis::Client::open(server.url()).unwrap();
        let conn = client.get_multiplexed_async_connection().await.unwrap();
        (server, store, conn)
    }

    /// A fenced commit lands only while its lease holds, and a refused one writes nothing.
    #[tokio::test]
    async fn redis_commits_respect_their_fence() {
        use crate::store::{Fence, StoreError};
        use redis::AsyncCommands;
        let (_server, store, mut conn) = redis_store_and_connection("f:").await;
        let commit = |fence: Fence| {
            let (case, events) = new_case(Utc::now());
            Commit {
                case,
                events,
                idempotency: None,
                fence: Some(fence),
            }
        };
        let hold = |token: &str| Fence {
            key: "f:lease:x".into(),
            token: token.into(),
            take: None,
        };
        let take = |token: &str| Fence {
            take: Some(Duration::from_secs(30)),
            ..hold(token)
        };

        // Nobody holds it: holding fails, and nothing is written.
        let refused = commit(hold("a"));
        let id = refused.case.case_id;
        assert!(matches!(
            store.commit(&refused).await,
            Err(StoreError::Fenced(_))
        ));
        assert_eq!(store.load_case(id).await.unwrap(), None);
        assert!(store.outbox(0, 10).await.unwrap().is_empty());

        // Taking it works once, and sets it with an expiry.
        store.commit(&commit(take("a"))).await.unwrap();
        let holder: Option<String> = conn.get("f:lease:x").await.unwrap();
        assert_eq!(holder.as_deref(), Some("a"));
        let ttl: i64 = conn.pttl("f:lease:x").await.unwrap();
        assert!(ttl > 0 && ttl <= 30_000, "ttl {ttl}");
        assert!(matches!(
            store.commit(&commit(take("b"))).await,
            Err(StoreError::Fenced(_))
        ));

        // Its holder commits; anyone else is refused.
        store.commit(&commit(hold("a"))).await.unwrap();
        assert!(matches!(
            store.commit(&commit(hold("b"))).await,
            Err(StoreError::Fenced(_))
        ));
        assert_eq!(store.outbox(0, 10).await.unwrap().len(), 2);
    }

    /// A room's history takes writes only from its lease's holder: a node that lost the room
    /// cannot write into its successor's history.
    #[tokio::test]
    async fn redis_room_history_refuses_writes_without_the_lease() {
        use crate::store::{Fence, RoomEntry, RoomMeta, StoreError};
        use redis::AsyncCommands;
        let (_server, store, mut conn) = redis_store_and_connection("r:").await;
        let fence = |token: &str| Fence {
            key: "r:lease:room:alpha".into(),
            token: token.into(),
            take: None,
        };
        let meta = |epoch: &str, seq| RoomMeta {
            epoch: epoch.into(),
            seq,
            open: true,
        };
        let entry = |seq: u64| RoomEntry {
            seq,
            frame: format!("frame {seq}"),
        };
        let _: () = conn.set("r:lease:room:alpha", "b").await.unwrap();
        // The holder writes.
        store
            .room_append("alpha", &meta("eb", 1), &[entry(1)], 10, Some(&fence("b")))
            .await
            .unwrap();
        // The node whose lease lapsed is refused, entries and meta alike.
        assert!(matches!(
            store
                .room_append("alpha", &meta("ea", 7), &[entry(7)], 10, Some(&fence("a")))
                .await,
            Err(StoreError::Fenced(_))
        ));
        assert_eq!(store.room_meta("alpha").await.unwrap(), Some(meta("eb", 1)));
        let history = store.room_history("alpha", 0, 10).await.unwrap();
        assert_eq!(history, vec![entry(1)]);
        // Without a fence (a store nobody shares) it writes.
        store
            .room_append("alpha", &meta("eb", 2), &[entry(2)], 10, None)
            .await
            .unwrap();
        assert_eq!(store.room_history("alpha", 0, 10).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn redis_claims_hand_each_job_to_one_node() {
        let server = crate::testing::RedisServer::start();
        let store =
            crate::store::RedisStore::connect(&server.url(), "c:", Duration::from_secs(2)).unwrap();
        deliveries::claims_hand_each_job_to_one_node(std::sync::Arc::new(store)).await;
    }

    #[tokio::test]
    async fn embedded_claims_everything_and_changes_nothing() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = EmbeddedStore::open(dir.path(), true).unwrap();
        let now = Utc::now();
        let job = crate::delivery::DeliveryJob::new(&new_case(now).1[0], "wh_a");
        store
            .enqueue_deliveries(vec![job.clone()], "c")
            .await
            .unwrap();
        let key = [(job.endpoint_id.as_str(), job.msg_id.as_str())];
        let until = now + chrono::Duration::seconds(10);
        for _ in 0..2 {
            assert_eq!(
                store.claim_deliveries(&key, now, until).await.unwrap(),
                [true]
            );
        }
        assert_eq!(store.due_deliveries(until, 10).await.unwrap(), [job]);
        store.close().await;
    }

    #[tokio::test]
    async fn redis_outage_is_unavailable_then_recovers() {
        let mut server = crate::testing::RedisServer::start();
        let store =
            crate::store::RedisStore::connect(&server.url(), "outage:", Duration::from_millis(500))
                .unwrap();
        let (case, events) = new_case(Utc::now());
        let id = case.case_id;
        store
            .commit(&Commit {
                case: case.clone(),
                events,
                idempotency: None,
                fence: None,
            })
            .await
            .unwrap();
        server.stop();
        let started = std::time::Instant::now();
        match store.load_case(id).await {
            Err(crate::store::StoreError::Unavailable(_)) => {}
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        server.restart();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match store.load_case(id).await {
                Ok(found) => {
                    // appendfsync always: the acknowledged commit survived the kill.
                    assert_eq!(found, Some(case));
                    break;
                }
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("redis store did not recover: {e}"),
            }
        }
    }

    #[tokio::test]
    async fn embedded_store_survives_reopen() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = EmbeddedStore::open(dir.path(), true).unwrap();
        let (case, events) = new_case(Utc::now());
        let id = case.case_id;
        store
            .commit(&Commit {
                case: case.clone(),
                events,
                idempotency: None,
                fence: None,
            })
            .await
            .unwrap();
        store.close().await;
        // Closed means closed: reads and writes answer Unavailable, and the file is released
        // while this handle (like a task that outlived shutdown) still exists.
        assert!(matches!(
            store.load_case(id).await,
            Err(crate::store::StoreError::Unavailable(_))
        ));
        assert!(matches!(
            store
                .commit(&Commit {
                    case: case.clone(),
                    events: vec![],
                    idempotency: None,
                    fence: None,
                })
                .await,
            Err(crate::store::StoreError::Unavailable(_))
        ));
        let reopened = EmbeddedStore::open(dir.path(), true).unwrap();
        assert_eq!(reopened.load_case(id).await.unwrap(), Some(case));
        drop(store);
    }
}
