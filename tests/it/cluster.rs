//! Several nodes on one Redis (CONTRACT §9): any node takes any request, and a case is hosted
//! by one node at a time.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

mod rooms;

use crate::delivery::{
    Receiver, assert_signed, black_hole, deliver_locally, endpoint, set_status, start_receiver,
    timestamp_spread,
};
use crate::fix::{approved_case, with_executor};
use crate::harness::*;
use crate::supervision::case_actors;

const SSL: &str = "Our SSL certificate expired yesterday and browsers now show a certificate \
                   error on our custom domain. How do we renew it?";

/// Two nodes on one private redis-server.
async fn two_nodes(store: &TestStore) -> (TestApp, TestApp) {
    two_nodes_with(store, |_| {}).await
}

/// Two nodes on one private redis-server, both with the same settings tweak.
async fn two_nodes_with(
    store: &TestStore,
    tweak: impl Fn(&mut casehub::Settings),
) -> (TestApp, TestApp) {
    let a = spawn_on(store, &tweak).await;
    let b = spawn_on(store, &tweak).await;
    (a, b)
}

fn statuses(case: &Value) -> Vec<String> {
    case["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_case_moves_between_nodes_step_by_step() {
    let store = TestStore::private_redis();
    let (a, b) = two_nodes(&store).await;

    let created = a.intake(SSL).await;
    let id = created["case_id"].as_str().unwrap().to_string();
    // B reads it while A hosts it.
    assert_eq!(b.status(&id).await["status"], json!("triaged"));

    // B takes the case over for the next step, A for the one after, and so on.
    let offered = b
        .post(
            "/webhook/support/self-service",
            json!({"case_id": id, "customer_id": created["customer_id"]}),
        )
        .await
        .ok();
    assert_eq!(offered["status"], json!("in_progress"));
    let approved = a
        .get_anon(&path_of(&offered["links"]["approve"]))
        .await
        .ok();
    assert_eq!(approved["status"], json!("executing"));
    let resolved = eventually(Duration::from_secs(10), || async {
        let case = b.status(&id).await;
        (case["status"] == json!("resolved")).then_some(case)
    })
    .await;
    let feedback = format!("{}&score=4", path_of(&resolved["links"]["feedback"]));
    b.get_anon(&feedback).await.ok();

    for node in [&a, &b] {
        let case = node.status(&id).await;
        assert_eq!(case["status"], json!("closed"));
        assert_eq!(
            statuses(&case),
            [
                "new",
                "triaged",
                "in_progress",
                "executing",
                "resolved",
                "closed"
            ]
        );
        assert_eq!(case["satisfaction_score"], json!(4));
    }
    // Every step's events, once each, in order, whichever node recorded them: the same as on
    // one node.
    let events = a.case_events(&id).await;
    assert_eq!(events, b.case_events(&id).await);
    assert_eq!(
        events,
        [
            "case.created",
            "case.updated",
            "case.updated",
            "case.resolved",
            "feedback.received",
            "case.updated"
        ]
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn one_writer_per_case_across_nodes() {
    let store = TestStore::private_redis();
    let (a, b) = two_nodes(&store).await;
    let created = a.intake(SSL).await;
    let id = created["case_id"].as_str().unwrap().to_string();
    let body = json!({"case_id": id, "customer_id": created["customer_id"]});

    // Twelve offers race from both nodes: exactly one wins, every other one sees it taken.
    let mut racers = Vec::new();
    for i in 0..12 {
        let node = if i % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        let body = body.clone();
        racers.push(tokio::spawn(async move {
            let reply = reqwest::Client::new()
                .post(format!("{node}/webhook/support/self-service"))
                .header("X-API-Key", CLIENT_KEY)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = reply.status();
            let body: Value = reply.json().await.unwrap();
            (status, body)
        }));
    }
    let mut won = 0;
    for racer in racers {
        let (status, body) = racer.await.unwrap();
        match status {
            StatusCode::OK => won += 1,
            StatusCode::CONFLICT => assert_eq!(body["error"]["code"], json!("ALREADY_PROCESSED")),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(won, 1);
    let events = b.case_events(&id).await;
    assert_eq!(events, ["case.created", "case.updated"]);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_dead_nodes_cases_are_taken_over_after_the_lease_ttl() {
    let store = TestStore::private_redis();
    let fast = [
        ("CASEHUB__CLUSTER__LEASE_TTL", "2s"),
        ("CASEHUB__STORE__TIMEOUT", "500ms"),
    ];
    let dying = ServerProcess::start_with(&store, &fast).await;
    let created = dying.client().intake(SSL).await;
    let id = created["case_id"].as_str().unwrap().to_string();
    // Its actor (and lease) stays on the dying node, which is killed without giving it back.
    dying.kill9();

    let b = spawn_on(&store, |s| {
        s.cluster.lease_ttl = Duration::from_secs(2);
        s.store.timeout = Duration::from_millis(500);
    })
    .await;
    let offered = b
        .post(
            "/webhook/support/self-service",
            json!({"case_id": id, "customer_id": created["customer_id"]}),
        )
        .await
        .ok();
    assert_eq!(offered["status"], json!("in_progress"));
    assert_eq!(b.case_events(&id).await, ["case.created", "case.updated"]);
    b.stop().await;
}

/// A node that starts while another node hosts an unfinished case (`executing`, its fix
/// still being retried) leaves the case where it is: waking it at start would pull it over
/// from a healthy host. Nor does it take the case when it looks again after the lease ttl
/// (the look that finds a dead host's cases), since the live host kept renewing.
#[tokio::test]
async fn a_starting_node_leaves_a_live_nodes_unfinished_case_alone() {
    let (base, rx) = start_receiver().await;
    rx.fail_next("fix", 1_000_000, 503);
    let url = format!("{base}/fix");
    let slow_retries = |s: &mut casehub::Settings| {
        with_executor(&url)(s);
        s.delivery.retry_schedule = vec![Duration::from_millis(200); 50];
        // Not shorter: a renewal late by a ttl counts as lost, and a busy test machine once
        // delayed a's renewals by a whole second.
        s.cluster.lease_ttl = Duration::from_secs(2);
    };
    let store = TestStore::private_redis();
    let a = spawn_on(&store, slow_retries).await;
    let (id, approved) = approved_case(&a).await;
    assert_eq!(approved["status"], json!("executing"));
    assert_eq!(case_actors(&a).await["live"], json!(1));

    let b = spawn_on(&store, slow_retries).await;
    // Without the check, b's start asks a for the case and hosts it within a few round trips;
    // b looks again after the ttl and its 0.5 s margin, inside this 3.5 s window.
    for _ in 0..70 {
        assert_eq!(case_actors(&b).await["live"], json!(0), "b took the case");
        assert_eq!(
            case_actors(&a).await["live"],
            json!(1),
            "a gave the case up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(b.status(&id).await["status"], json!("executing"));
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn each_delivery_is_sent_by_one_node() {
    let store = TestStore::private_redis();
    let (a, b) = two_nodes_with(&store, deliver_locally).await;
    let (base, rx) = start_receiver().await;
    let (_, secret) = endpoint(
        &a,
        format!("{base}/hook"),
        json!(["case.created"]),
        json!({}),
    )
    .await;

    // Cases arrive at both nodes at once; both nodes' pools look at the same queue.
    let mut intakes = Vec::new();
    for i in 0..40 {
        let node = if i % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        intakes.push(tokio::spawn(async move {
            let reply = reqwest::Client::new()
                .post(format!("{node}/webhook/support/intake"))
                .header("X-API-Key", CLIENT_KEY)
                .json(&intake_body(SSL))
                .send()
                .await
                .unwrap();
            assert_eq!(reply.status(), StatusCode::OK);
        }));
    }
    for intake in intakes {
        intake.await.unwrap();
    }
    eventually(Duration::from_secs(20), || async {
        (rx.got("hook").len() >= 40).then_some(())
    })
    .await;
    // Both pools have had time to send anything twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = rx.got("hook");
    let mut ids: Vec<String> = got.iter().map(|g| g.header("webhook-id")).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40);
    assert_eq!(got.len(), 40, "a delivery went out twice");
    for delivery in &got {
        assert_signed(delivery, &secret);
    }
    a.stop().await;
    b.stop().await;
}

/// A casehub process (to kill -9) that sends deliveries quickly and gives up on an attempt
/// after a second.
async fn delivering_process(store: &TestStore) -> ServerProcess {
    let env = [
        ("CASEHUB__DELIVERY__ALLOW_PRIVATE_TARGETS", "true"),
        ("CASEHUB__DELIVERY__POLL_INTERVAL", "20ms"),
        ("CASEHUB__DELIVERY__TIMEOUT_MS", "1000"),
    ];
    ServerProcess::start_with(store, &env).await
}

/// A second node on `store`, with endpoint `id` pointed at a fresh receiver's `/hook`.
async fn take_over_endpoint(store: &TestStore, id: &str) -> (TestApp, Receiver) {
    let b = spawn_on(store, |s| {
        deliver_locally(s);
        s.delivery.timeout_ms = 1000;
    })
    .await;
    let (base, rx) = start_receiver().await;
    let moved = b
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/webhooks/endpoints/{id}"),
            Some(ADMIN_KEY),
            Some(json!({"url": format!("{base}/hook")})),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
    (b, rx)
}

#[tokio::test]
async fn a_dead_nodes_claimed_delivery_is_sent_by_another() {
    let store = TestStore::private_redis();
    let hole = black_hole().await;
    let dying = delivering_process(&store).await;
    let (id, secret) = endpoint(&dying.client(), hole, json!(["case.created"]), json!({})).await;
    let created = dying.client().intake(SSL).await;
    // The attempt is in flight (the black hole never answers) when the node dies.
    tokio::time::sleep(Duration::from_millis(200)).await;
    dying.kill9();

    let (b, rx) = take_over_endpoint(&store, &id).await;
    // Claimed by the dead node for twice its timeout plus 5 s, then anyone's.
    let got = eventually(Duration::from_secs(20), || async {
        rx.got("hook").first().cloned()
    })
    .await;
    assert_signed(&got, &secret);
    assert_eq!(got.json()["data"]["case_id"], created["case_id"]);
    b.stop().await;
}

/// A FIFO endpoint keeps its order across a node's death: the first message, in flight on
/// the dead node (claimed, so not due again for a while), still goes before the second.
#[tokio::test]
async fn a_fifo_endpoint_keeps_its_order_when_its_sender_dies() {
    let store = TestStore::private_redis();
    let hole = black_hole().await;
    let dying = delivering_process(&store).await;
    let (id, secret) = endpoint(
        &dying.client(),
        hole,
        json!(["case.created"]),
        json!({"ordering": "fifo"}),
    )
    .await;
    let first = dying.client().intake(SSL).await;
    // The first attempt is in flight (the black hole never answers); the second waits.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = dying.client().intake(SSL).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    dying.kill9();

    let (b, rx) = take_over_endpoint(&store, &id).await;
    let got = eventually(Duration::from_secs(30), || async {
        let got = rx.got("hook");
        (got.len() >= 2).then_some(got)
    })
    .await;
    for delivery in &got {
        assert_signed(delivery, &secret);
    }
    let order: Vec<Value> = got
        .iter()
        .map(|g| g.json()["data"]["case_id"].clone())
        .collect();
    assert_eq!(order, [first["case_id"].clone(), second["case_id"].clone()]);
    b.stop().await;
}

async fn alerts(app: &TestApp) -> Vec<Value> {
    app.events()
        .await
        .into_iter()
        .filter(|e| e["event"] == json!("alert.triggered"))
        .collect()
}

#[tokio::test]
async fn cases_on_every_node_count_toward_one_alert() {
    let store = TestStore::private_redis();
    let (a, b) = two_nodes(&store).await;
    let mut body = intake_body(SSL);
    body.as_object_mut().unwrap().remove("product");
    // Five of one subcategory, spread over both nodes (threshold 5): neither saw five itself.
    for i in 0..5 {
        let node = if i % 2 == 0 { &a } else { &b };
        node.post("/webhook/support/intake", body.clone())
            .await
            .ok();
    }
    let raised = eventually(Duration::from_secs(10), || async {
        let raised = alerts(&a).await;
        (!raised.is_empty()).then_some(raised)
    })
    .await;
    // A sixth, within the cool-down, raises nothing more, on either node.
    b.post("/webhook/support/intake", body.clone()).await.ok();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = alerts(&b).await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(raised[0]["data"]["count"], json!(5));
    assert_eq!(
        raised[0]["data"]["description"],
        json!("5 cases of configuration/ssl-certificates within 10 minutes")
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_creates_one_case_whichever_nodes_it_reaches() {
    let store = TestStore::private_redis();
    let (a, b) = two_nodes(&store).await;
    let mut racers = Vec::new();
    for i in 0..10 {
        let node = if i % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        racers.push(tokio::spawn(async move {
            let reply = reqwest::Client::new()
                .post(format!("{node}/webhook/support/intake"))
                .header("X-API-Key", CLIENT_KEY)
                .header("Idempotency-Key", "order-4711")
                .json(&intake_body(SSL))
                .send()
                .await
                .unwrap();
            assert_eq!(reply.status(), StatusCode::OK);
            let body: Value = reply.json().await.unwrap();
            body["case_id"].as_str().unwrap().to_string()
        }));
    }
    let mut ids = Vec::new();
    for racer in racers {
        ids.push(racer.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let created = a
        .events()
        .await
        .into_iter()
        .filter(|e| e["event"] == json!("case.created"))
        .count();
    assert_eq!(created, 1);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_caller_gets_its_rate_limit_once_across_nodes() {
    let store = TestStore::private_redis();
    let limited = |s: &mut casehub::Settings| s.rate_limits.intake = 6;
    let (a, b) = two_nodes_with(&store, limited).await;
    let mut statuses = Vec::new();
    for i in 0..10 {
        let node = if i % 2 == 0 { &a } else { &b };
        let reply = node.post("/webhook/support/intake", intake_body(SSL)).await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            reply.assert_error(429, "RATE_LIMITED");
            assert!(reply.headers.contains_key("retry-after"));
        }
        assert_eq!(reply.headers["x-ratelimit-limit"], "6");
        statuses.push(reply.status.as_u16());
    }
    // Six per minute for the caller, not six per node.
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        6,
        "{statuses:?}"
    );
    assert_eq!(statuses[6..], [429, 429, 429, 429]);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn an_endpoint_rate_limit_holds_across_nodes() {
    let store = TestStore::private_redis();
    let (a, b) = two_nodes_with(&store, deliver_locally).await;
    let (base, rx) = start_receiver().await;
    let (id, _) = endpoint(
        &a,
        format!("{base}/limited"),
        json!(["case.created"]),
        json!({"rate_limit": 5, "status": "paused"}),
    )
    .await;
    let cases = 25;
    for i in 0..cases {
        let node = if i % 2 == 0 { &a } else { &b };
        let reply = node.post("/webhook/support/intake", intake_body(SSL)).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    // Both nodes' pools find the whole backlog due at once.
    set_status(&a, &id, "active").await;
    eventually(Duration::from_secs(20), || async {
        (rx.got("limited").len() >= cases).then_some(())
    })
    .await;
    // 25 at 5 per second (burst of 5) take four seconds on one allowance; with an allowance
    // per node they would take one and a half.
    let (spread, stamps) = timestamp_spread(&rx, "limited");
    assert!(
        spread >= 3,
        "25 deliveries at 5/s within {spread} s: {stamps:?}"
    );
    a.stop().await;
    b.stop().await;
}
