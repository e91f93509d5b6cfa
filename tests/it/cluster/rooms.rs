//! Review rooms across nodes: one node runs a room, reviewers on any node see it live.

use std::time::Duration;

use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::harness::*;
use crate::rooms::{Reviewer, open_review, token};

const ROOM: &str = "support-review";

#[tokio::test]
async fn reviewers_on_two_nodes_share_one_room() {
    let store = TestStore::private_redis();
    let a = spawn_on(&store, |_| {}).await;
    let b = spawn_on(&store, |_| {}).await;
    // Jane's join starts the room on A; Omar's on B goes through B's relay.
    let mut jane = Reviewer::join(&a, ROOM, "jane@company.com").await;
    let mut omar = Reviewer::join(&b, ROOM, "omar@company.com").await;
    assert_eq!(
        omar.welcome["presence"],
        json!(["jane@company.com", "omar@company.com"])
    );
    assert_eq!(omar.epoch(), jane.epoch());
    let joined = jane.next_of("presence").await;
    assert_eq!(joined["joined"], "omar@company.com");

    // A review opened through B (committed there) reaches both, numbered once, by A.
    let (case_id, review_id) = open_review(&b, None).await;
    let seen_by_jane = jane.event("review.requested").await;
    let seen_by_omar = omar.event("review.requested").await;
    assert_eq!(seen_by_jane, seen_by_omar);
    assert_eq!(seen_by_jane["seq"], json!(jane.seq() + 2), "seq has no gap");
    assert_eq!(seen_by_jane["data"]["review_id"], json!(review_id));

    // They race to claim it from their own nodes: exactly one wins.
    let claim = |r: &str| json!({"type": "claim", "ref": r, "review_id": review_id});
    let (j, o) = tokio::join!(jane.ask(claim("j")), omar.ask(claim("o")));
    let answers = [j["type"].clone(), o["type"].clone()];
    assert!(
        answers.contains(&json!("ack")) && answers.contains(&json!("error")),
        "{j} {o}"
    );
    let (winner, loser, mut winner_socket, mut loser_socket) = if j["type"] == "ack" {
        ("jane@company.com", o, jane, omar)
    } else {
        ("omar@company.com", j, omar, jane)
    };
    assert_eq!(loser["code"], "ALREADY_CLAIMED");
    // HTTP on either node respects the claim too.
    for node in [&a, &b] {
        node.get(&format!(
            "/webhook/support/review/{review_id}/approve?reviewer=bob@company.com"
        ))
        .await
        .assert_error(409, "ALREADY_CLAIMED");
    }

    // The winner approves over its socket; everyone sees it completed; the case resolves.
    let ack = winner_socket
        .ask(json!({"type": "approve", "ref": "go", "review_id": review_id, "comments": "ok"}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    for socket in [&mut winner_socket, &mut loser_socket] {
        let completed = socket.event("review.completed").await;
        assert_eq!(completed["data"]["reviewer"], json!(winner));
    }
    eventually(Duration::from_secs(10), || async {
        (b.status(&case_id).await["status"] == json!("resolved")).then_some(())
    })
    .await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_reviewer_resumes_on_another_node_without_a_gap() {
    let store = TestStore::private_redis();
    let a = spawn_on(&store, |_| {}).await;
    let b = spawn_on(&store, |_| {}).await;
    let _keeper = Reviewer::join(&a, ROOM, "keeper@company.com").await;
    let mut omar = Reviewer::join(&b, ROOM, "omar@company.com").await;
    open_review(&a, None).await;
    let last = omar.event("review.requested").await;
    let (since, epoch) = (last["seq"].as_u64().unwrap(), omar.epoch());
    drop(omar);

    // Missed while away: two reviews, four room events.
    let missed = [open_review(&b, None).await.1, open_review(&a, None).await.1];
    let query = format!(
        "token={}&since={since}&epoch={epoch}",
        token("omar@company.com", &[ROOM])
    );
    let mut back = Reviewer::join_with(&a, ROOM, &query).await;
    assert_eq!(back.welcome["reset"], json!(false));
    assert_eq!(back.welcome["replayed"], json!(4));
    let mut seqs = Vec::new();
    let mut requested = Vec::new();
    for _ in 0..4 {
        let f = back.next_of("event").await;
        seqs.push(f["seq"].as_u64().unwrap());
        if f["event"] == "review.requested" {
            requested.push(f["data"]["review_id"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(seqs, (since + 1..=since + 4).collect::<Vec<_>>());
    assert_eq!(requested, missed);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_dead_nodes_reviewers_leave_and_its_room_moves_to_a_live_node() {
    let store = TestStore::private_redis();
    let fast = [
        ("CASEHUB__CLUSTER__LEASE_TTL", "2s"),
        ("CASEHUB__STORE__TIMEOUT", "500ms"),
    ];
    let fast_settings = |s: &mut casehub::Settings| {
        s.cluster.lease_ttl = Duration::from_secs(2);
        s.store.timeout = Duration::from_millis(500);
    };
    // The room runs on a node that will die; Omar is relayed by B.
    let dying = ServerProcess::start_with(&store, &fast).await;
    let b = spawn_on(&store, fast_settings).await;
    let c = ServerProcess::start_with(&store, &fast).await;
    let mut jane = Reviewer::join(&dying.client(), ROOM, "jane@company.com").await;
    let mut omar = Reviewer::join(&b, ROOM, "omar@company.com").await;
    // Kim is relayed by C, which dies too.
    let _kim = Reviewer::join(&c.client(), ROOM, "kim@company.com").await;
    assert_eq!(jane.next_of("presence").await["joined"], "omar@company.com");
    assert_eq!(jane.next_of("presence").await["joined"], "kim@company.com");

    // C dies: the room drops Kim once C falls silent.
    c.kill9();
    let left = jane.next_of("presence").await;
    assert_eq!(left["left"], "kim@company.com");

    // The room's node dies: B closes Omar's connection (1012) once it falls silent, and
    // Omar, reconnecting to B, finds the room running there once the dead node's lease lapses.
    drop(jane);
    dying.kill9();
    assert_eq!(omar.close_code().await, Some(CloseCode::Restart));
    let query = format!(
        "token={}&since={}&epoch={}",
        token("omar@company.com", &[ROOM]),
        omar.seq(),
        omar.epoch()
    );
    let mut back = eventually(Duration::from_secs(15), || async {
        let url = crate::rooms::ws_url(&b, ROOM, &query);
        let (ws, _) = tokio_tungstenite::connect_async(url).await.ok()?;
        let mut r = Reviewer {
            ws,
            welcome: serde_json::Value::Null,
        };
        let first = tokio::time::timeout(Duration::from_secs(3), r.frame())
            .await
            .ok()?;
        (first["type"] == "welcome").then(|| {
            r.welcome = first;
            r
        })
    })
    .await;
    // The dead node's history could not be closed cleanly: a new epoch, a full snapshot.
    assert_eq!(back.welcome["reset"], json!(true));
    assert_ne!(back.epoch(), omar.epoch());
    let (_, review_id) = open_review(&b, None).await;
    let requested = back.event("review.requested").await;
    assert_eq!(requested["data"]["review_id"], json!(review_id));
    b.stop().await;
}
