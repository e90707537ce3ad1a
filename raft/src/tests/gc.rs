//! Apply of the garbage collection commands, and the LinkBlob gate that keeps a concurrent
//! push from losing a blob GC is deleting.

use super::support::{digest, link, repo, Put, TestSm, AT_MS};
use crate::{GcCommand, MetaCommand, MetaResponse, Rejection};

const LATER: i64 = AT_MS + 1;

fn collect(run: &str, delete_untagged: bool) -> MetaCommand {
    MetaCommand::Gc(GcCommand::Collect {
        run: run.to_owned(),
        cutoff_ms: LATER,
        delete_untagged,
        at_ms: LATER,
    })
}

fn claim(run: &str, ds: &[u64]) -> MetaCommand {
    MetaCommand::Gc(GcCommand::Claim {
        run: run.to_owned(),
        blobs: ds.iter().map(|d| (digest(*d), 100 + d)).collect(),
        at_ms: LATER,
    })
}

fn release(run: &str, ds: &[u64]) -> MetaCommand {
    MetaCommand::Gc(GcCommand::Release {
        run: run.to_owned(),
        digests: ds.iter().copied().map(digest).collect(),
        at_ms: LATER,
    })
}

fn finish(run: &str) -> MetaCommand {
    MetaCommand::Gc(GcCommand::Finish {
        run: run.to_owned(),
        report: r#"{"blobs_deleted":1}"#.to_owned(),
    })
}

#[tokio::test]
async fn collect_unlinks_unreferenced_old_blobs_and_marks_those_left_unlinked() {
    let mut t = TestSm::new().await;
    // Blob 1 is a layer of a tagged manifest; 2 is linked in two repos, referenced in one;
    // 3 is linked but nothing references it.
    t.apply(vec![
        link("app", 1),
        link("app", 2),
        link("app", 3),
        link("other", 2),
    ])
    .await;
    let mut put = Put::new("other", 10);
    put.blobs = vec![2];
    put.tag = Some("v1");
    t.one(put.cmd()).await;
    let mut put = Put::new("app", 11);
    put.blobs = vec![1];
    put.tag = Some("v1");
    t.one(put.cmd()).await;

    let plan = t.sm.reader().gc_plan(LATER, false).await.unwrap();
    assert_eq!(plan.links, 2);
    assert_eq!(plan.candidates, vec![(digest(3), 103)]);

    assert_eq!(
        t.one(collect("r1", false)).await,
        MetaResponse::GcCollected {
            manifests_deleted: 0,
            links_deleted: 2,
            candidates: 1
        }
    );
    let r = t.sm.reader();
    assert_eq!(r.blob_link(&repo("app"), &digest(2)).await.unwrap(), None);
    assert_eq!(
        r.blob_link(&repo("other"), &digest(2)).await.unwrap(),
        Some(102)
    );
    assert_eq!(
        r.blob_link(&repo("app"), &digest(1)).await.unwrap(),
        Some(101)
    );
    assert_eq!(
        r.gc_candidates(None, 10).await.unwrap(),
        vec![(digest(3), 103)]
    );
    assert_eq!(
        r.gc_state(&digest(3)).await.unwrap().as_deref(),
        Some("marked")
    );
}

#[tokio::test]
async fn young_links_survive_the_grace_period() {
    let mut t = TestSm::new().await;
    t.one(link("app", 1)).await;
    let early = MetaCommand::Gc(GcCommand::Collect {
        run: "r1".into(),
        cutoff_ms: AT_MS, // links created at AT_MS are not older than the cutoff
        delete_untagged: true,
        at_ms: LATER,
    });
    assert_eq!(
        t.one(early).await,
        MetaResponse::GcCollected {
            manifests_deleted: 0,
            links_deleted: 0,
            candidates: 0
        }
    );
    assert!(t.sm.reader().digest_linked(&digest(1)).await.unwrap());
}

#[tokio::test]
async fn untagged_policy_keeps_index_children_and_referrers_of_kept_manifests() {
    let mut t = TestSm::new().await;
    t.apply((1..=5).map(|d| link("app", d)).collect()).await;
    // 10 (tagged index) -> child 11 (blob 1); 12 refers to 11 (subject, blob 2);
    // 13 untagged alone (blob 3); 14 refers to 13 (blob 4).
    let mut m = Put::new("app", 11);
    m.blobs = vec![1];
    t.one(m.cmd()).await;
    let mut m = Put::new("app", 10);
    m.children = vec![11];
    m.tag = Some("latest");
    t.one(m.cmd()).await;
    let mut m = Put::new("app", 12);
    m.blobs = vec![2];
    m.subject = Some(11);
    t.one(m.cmd()).await;
    let mut m = Put::new("app", 13);
    m.blobs = vec![3];
    t.one(m.cmd()).await;
    let mut m = Put::new("app", 14);
    m.blobs = vec![4];
    m.subject = Some(13);
    t.one(m.cmd()).await;

    // keep: only blob 5 (referenced by nothing) goes.
    let plan = t.sm.reader().gc_plan(LATER, false).await.unwrap();
    assert!(plan.manifests.is_empty());
    assert_eq!(plan.candidates, vec![(digest(5), 105)]);

    assert_eq!(
        t.one(collect("r1", true)).await,
        MetaResponse::GcCollected {
            manifests_deleted: 2,
            links_deleted: 3,
            candidates: 3
        }
    );
    let r = t.sm.reader();
    for kept in [10, 11, 12] {
        assert!(
            r.manifest(&repo("app"), &digest(kept))
                .await
                .unwrap()
                .is_some(),
            "{kept}"
        );
    }
    for gone in [13, 14] {
        assert!(
            r.manifest(&repo("app"), &digest(gone))
                .await
                .unwrap()
                .is_none(),
            "{gone}"
        );
    }
    for linked in [1, 2] {
        assert!(r.digest_linked(&digest(linked)).await.unwrap(), "{linked}");
    }
    let candidates: Vec<_> = r.gc_candidates(None, 10).await.unwrap();
    assert_eq!(
        candidates,
        vec![(digest(3), 103), (digest(4), 104), (digest(5), 105)]
    );
}

#[tokio::test]
async fn a_claimed_digest_refuses_links_until_released_then_links_ask_for_a_check() {
    let mut t = TestSm::new().await;
    t.one(link("app", 1)).await;
    t.one(collect("r1", false)).await;
    // Linked again before the claim: the candidate row goes, the claim takes nothing.
    assert_eq!(t.one(link("app", 1)).await, MetaResponse::Ok);
    assert_eq!(t.sm.reader().gc_state(&digest(1)).await.unwrap(), None);
    assert_eq!(
        t.one(claim("r1", &[1])).await,
        MetaResponse::GcClaimed(vec![])
    );

    // An unlinked digest (an orphan found in storage) is claimed; links are refused.
    assert_eq!(
        t.one(claim("r1", &[2])).await,
        MetaResponse::GcClaimed(vec![digest(2)])
    );
    assert_eq!(
        t.one(claim("r1", &[2])).await,
        MetaResponse::GcClaimed(vec![]),
        "claimed once only"
    );
    assert_eq!(
        t.one(link("other", 2)).await,
        MetaResponse::Rejected(Rejection::BlobDeleting)
    );
    assert!(!t.sm.reader().digest_linked(&digest(2)).await.unwrap());

    assert_eq!(t.one(release("r1", &[2])).await, MetaResponse::Ok);
    assert_eq!(t.one(link("other", 2)).await, MetaResponse::LinkedAfterGc);
    assert_eq!(t.one(link("third", 2)).await, MetaResponse::LinkedAfterGc);
    assert!(t.sm.reader().digest_linked(&digest(2)).await.unwrap());
}

#[tokio::test]
async fn one_run_at_a_time_and_a_crashed_runs_claims_become_tombstones() {
    let mut t = TestSm::new().await;
    t.one(collect("r1", false)).await;
    assert_eq!(
        t.one(claim("r1", &[7])).await,
        MetaResponse::GcClaimed(vec![digest(7)])
    );
    assert_eq!(
        t.one(collect("r2", false)).await,
        MetaResponse::Rejected(Rejection::GcBusy)
    );
    // r1 crashed: once its lease expired, r2 starts and r1's claim becomes a tombstone.
    let late = AT_MS + crate::state_machine::gc::GC_LEASE_MS + 10;
    let r2 = MetaCommand::Gc(GcCommand::Collect {
        run: "r2".into(),
        cutoff_ms: late,
        delete_untagged: false,
        at_ms: late,
    });
    assert!(matches!(t.one(r2).await, MetaResponse::GcCollected { .. }));
    assert_eq!(
        t.sm.reader().gc_state(&digest(7)).await.unwrap().as_deref(),
        Some("deleted")
    );
    assert_eq!(
        t.one(release("r1", &[7])).await,
        MetaResponse::Rejected(Rejection::GcSuperseded)
    );
    assert_eq!(
        t.one(finish("r1")).await,
        MetaResponse::Rejected(Rejection::GcSuperseded)
    );
    assert_eq!(t.one(finish("r2")).await, MetaResponse::Ok);
    assert_eq!(
        t.sm.reader().gc_last_report().await.unwrap().as_deref(),
        Some(r#"{"blobs_deleted":1}"#)
    );
    // The lease is free again.
    assert!(matches!(
        t.one(collect("r3", false)).await,
        MetaResponse::GcCollected { .. }
    ));
}

#[tokio::test]
async fn links_batched_together_still_pass_the_gate_of_digests_gc_has_seen() {
    let mut t = TestSm::new().await;
    t.one(collect("r1", false)).await;
    assert_eq!(
        t.one(claim("r1", &[2])).await,
        MetaResponse::GcClaimed(vec![digest(2)])
    );
    let answer = t
        .one(MetaCommand::Batch(vec![
            link("app", 7),
            link("other", 2),
            link("app", 8),
        ]))
        .await;
    assert_eq!(
        answer,
        MetaResponse::Batch(vec![
            MetaResponse::Ok,
            MetaResponse::Rejected(Rejection::BlobDeleting),
            MetaResponse::Ok,
        ])
    );
    let r = t.sm.reader();
    assert!(!r.digest_linked(&digest(2)).await.unwrap());
    assert!(r.digest_linked(&digest(7)).await.unwrap());
    assert!(r.digest_linked(&digest(8)).await.unwrap());

    assert_eq!(t.one(release("r1", &[2])).await, MetaResponse::Ok);
    let answer = t
        .one(MetaCommand::Batch(vec![
            link("other", 2),
            link("third", 2),
            link("app", 9),
        ]))
        .await;
    assert_eq!(
        answer,
        MetaResponse::Batch(vec![
            MetaResponse::LinkedAfterGc,
            MetaResponse::LinkedAfterGc,
            MetaResponse::Ok,
        ])
    );
    assert!(t.sm.reader().digest_linked(&digest(2)).await.unwrap());
}
