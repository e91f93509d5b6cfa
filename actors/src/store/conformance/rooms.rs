//! Conformance checks for room history and the pending-review index.

use chrono::Utc;

use super::new_case;
use crate::domain::{Review, ReviewStatus, Urgency};
use crate::store::{Commit, RoomEntry, RoomMeta, SharedStore};

fn entry(seq: u64) -> RoomEntry {
    RoomEntry {
        seq,
        frame: format!(r#"{{"type":"event","seq":{seq}}}"#),
    }
}

fn seqs(entries: &[RoomEntry]) -> Vec<u64> {
    entries.iter().map(|e| e.seq).collect()
}

/// Appends record the position, read back in order after any seq, and trim to `keep`.
pub async fn history_appends_and_trims(store: SharedStore) {
    assert_eq!(store.room_meta("alpha").await.unwrap(), None);
    let meta = |seq| RoomMeta {
        epoch: "ep1".into(),
        seq,
        open: seq % 2 == 1,
    };
    store
        .room_append("alpha", &meta(0), &[], 5, None)
        .await
        .unwrap();
    assert_eq!(store.room_meta("alpha").await.unwrap(), Some(meta(0)));
    assert!(
        store
            .room_history("alpha", 0, 100)
            .await
            .unwrap()
            .is_empty()
    );

    store
        .room_append("alpha", &meta(3), &[entry(1), entry(2), entry(3)], 5, None)
        .await
        .unwrap();
    for seq in 4..=8 {
        store
            .room_append("alpha", &meta(seq), &[entry(seq)], 5, None)
            .await
            .unwrap();
    }
    assert_eq!(store.room_meta("alpha").await.unwrap(), Some(meta(8)));
    let all = store.room_history("alpha", 0, 100).await.unwrap();
    assert_eq!(
        seqs(&all),
        vec![4, 5, 6, 7, 8],
        "only the newest 5 are kept"
    );
    assert_eq!(all[0], entry(4), "frames come back as written");
    assert_eq!(
        seqs(&store.room_history("alpha", 5, 100).await.unwrap()),
        vec![6, 7, 8]
    );
    assert_eq!(
        seqs(&store.room_history("alpha", 4, 2).await.unwrap()),
        vec![5, 6]
    );
    assert!(
        store
            .room_history("alpha", 8, 100)
            .await
            .unwrap()
            .is_empty()
    );
    // Rooms do not see each other's history, even with a name that is a prefix.
    assert!(store.room_history("alph", 0, 100).await.unwrap().is_empty());
    assert_eq!(store.room_meta("alpha-2").await.unwrap(), None);
}

/// A committed pending review is indexed under its room until a commit decides it.
pub async fn pending_index_follows_commits(store: SharedStore) {
    let now = Utc::now();
    let (mut case, events) = new_case(now);
    let review = Review::pending(
        case.case_id,
        "billing-review".into(),
        Urgency::Normal,
        "needs a human",
        now,
    );
    case.review = Some(review.clone());
    let room = review.room.clone();
    store
        .commit(&Commit {
            case: case.clone(),
            events,
            idempotency: None,
            fence: None,
        })
        .await
        .unwrap();
    assert_eq!(
        store.pending_reviews(&room).await.unwrap(),
        vec![review.review_id.clone()]
    );
    assert!(store.pending_reviews("elsewhere").await.unwrap().is_empty());

    case.review.as_mut().unwrap().status = ReviewStatus::Approved;
    store
        .commit(&Commit {
            case,
            events: vec![],
            idempotency: None,
            fence: None,
        })
        .await
        .unwrap();
    assert!(store.pending_reviews(&room).await.unwrap().is_empty());
}
