//! Apply of every command and every rejection, through the `RaftStateMachine` trait.

use std::collections::BTreeMap;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, Membership};

use super::support::{digest, link, log_id, repo, tag, Put, TestSm};
use crate::{Entry, MetaCommand, MetaResponse, Rejection};

async fn count(sm: &TestSm, sql: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql)
        .fetch_one(sm.sm.reader().pool())
        .await
        .expect("count");
    n
}

#[tokio::test]
async fn link_blob_creates_the_repository_and_is_idempotent() {
    let mut t = TestSm::new().await;
    let r = t.sm.reader().clone();
    assert!(!r.repository_exists(&repo("app")).await.unwrap());

    assert_eq!(t.one(link("app", 1)).await, MetaResponse::Ok);
    assert!(r.repository_exists(&repo("app")).await.unwrap());
    assert_eq!(
        r.blob_link(&repo("app"), &digest(1)).await.unwrap(),
        Some(101)
    );
    assert_eq!(r.blob_link(&repo("other"), &digest(1)).await.unwrap(), None);

    assert_eq!(t.one(link("app", 1)).await, MetaResponse::Ok);
    assert_eq!(count(&t, "SELECT count(*) FROM blob_links").await, 1);
    assert_eq!(count(&t, "SELECT count(*) FROM repositories").await, 1);
}

#[tokio::test]
async fn unlink_blob_removes_the_link_or_is_rejected_as_unknown() {
    let mut t = TestSm::new().await;
    t.one(link("app", 1)).await;
    let unlink = MetaCommand::UnlinkBlob {
        repo: repo("app"),
        digest: digest(1),
    };
    assert_eq!(t.one(unlink.clone()).await, MetaResponse::Ok);
    assert_eq!(
        t.sm.reader()
            .blob_link(&repo("app"), &digest(1))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        t.one(unlink).await,
        MetaResponse::Rejected(Rejection::BlobUnknown)
    );
}

#[tokio::test]
async fn put_manifest_stores_it_and_its_refs_and_tags_it() {
    let mut t = TestSm::new().await;
    t.apply(vec![link("app", 1), link("app", 2)]).await;
    let mut put = Put::new("app", 10);
    put.blobs = vec![1, 2, 1];
    put.tag = Some("latest");
    assert_eq!(t.one(put.cmd()).await, MetaResponse::Ok);

    let r = t.sm.reader();
    let m = r
        .manifest(&repo("app"), &digest(10))
        .await
        .unwrap()
        .expect("manifest stored");
    assert_eq!(m.digest, digest(10));
    assert_eq!(m.media_type, "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(m.body, put.body().into_bytes());
    assert_eq!(m.subject, None);
    let info = r
        .manifest_info(&repo("app"), &digest(10))
        .await
        .unwrap()
        .expect("info");
    assert_eq!(info.size, put.body().len() as u64);
    assert_eq!(info.digest, digest(10));
    assert_eq!(
        r.resolve_tag(&repo("app"), &tag("latest")).await.unwrap(),
        Some(digest(10))
    );
    assert_eq!(r.manifest(&repo("other"), &digest(10)).await.unwrap(), None);
    assert_eq!(
        count(&t, "SELECT count(*) FROM manifest_refs WHERE kind = 'blob'").await,
        2,
        "duplicates in `blobs` are one ref"
    );
}

#[tokio::test]
async fn put_manifest_is_idempotent_for_the_same_digest() {
    let mut t = TestSm::new().await;
    t.one(link("app", 1)).await;
    let mut put = Put::new("app", 10);
    put.blobs = vec![1];
    assert_eq!(t.one(put.cmd()).await, MetaResponse::Ok);
    put.tag = Some("v1");
    assert_eq!(t.one(put.cmd()).await, MetaResponse::Ok);
    assert_eq!(count(&t, "SELECT count(*) FROM manifests").await, 1);
    assert_eq!(count(&t, "SELECT count(*) FROM manifest_refs").await, 1);
    assert_eq!(
        t.sm.reader()
            .resolve_tag(&repo("app"), &tag("v1"))
            .await
            .unwrap(),
        Some(digest(10)),
        "a repeated push may still add a tag"
    );
}

#[tokio::test]
async fn put_manifest_with_missing_references_is_rejected_and_changes_nothing() {
    let mut t = TestSm::new().await;
    t.apply(vec![link("app", 1), link("other", 2)]).await;
    t.one(Put::new("other", 21).cmd()).await;
    let mut put = Put::new("new", 10);
    put.blobs = vec![3, 1, 2];
    put.children = vec![21, 20];
    put.tag = Some("latest");
    // Repository "new" has nothing: everything is missing (links in other repos do not count).
    let mut want_blobs = vec![digest(1), digest(2), digest(3)];
    want_blobs.sort();
    let mut want_manifests = vec![digest(20), digest(21)];
    want_manifests.sort();
    assert_eq!(
        t.one(put.cmd()).await,
        MetaResponse::Rejected(Rejection::MissingReferences {
            blobs: want_blobs,
            manifests: want_manifests,
        })
    );
    assert!(!t.sm.reader().repository_exists(&repo("new")).await.unwrap());
    assert_eq!(count(&t, "SELECT count(*) FROM manifests").await, 1);
    assert_eq!(count(&t, "SELECT count(*) FROM tags").await, 0);

    // In "app", only what is really absent is reported.
    put.repo = "app";
    put.children = vec![];
    assert_eq!(
        t.one(put.cmd()).await,
        MetaResponse::Rejected(Rejection::MissingReferences {
            blobs: vec![digest(2), digest(3)],
            manifests: vec![],
        })
    );
}

#[tokio::test]
async fn index_needs_its_children_in_the_same_repository() {
    let mut t = TestSm::new().await;
    t.one(link("app", 1)).await;
    let mut child = Put::new("app", 11);
    child.blobs = vec![1];
    t.one(child.cmd()).await;
    let mut index = Put::new("app", 12);
    index.children = vec![11];
    index.tag = Some("multi");
    assert_eq!(t.one(index.cmd()).await, MetaResponse::Ok);
    assert_eq!(
        count(
            &t,
            "SELECT count(*) FROM manifest_refs WHERE kind = 'manifest'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_tag_moves_to_the_newest_manifest_pushed_with_it() {
    let mut t = TestSm::new().await;
    let mut a = Put::new("app", 10);
    a.tag = Some("latest");
    let mut b = Put::new("app", 11);
    b.tag = Some("latest");
    t.apply(vec![a.cmd(), b.cmd()]).await;
    let r = t.sm.reader();
    assert_eq!(
        r.resolve_tag(&repo("app"), &tag("latest")).await.unwrap(),
        Some(digest(11))
    );
    assert_eq!(count(&t, "SELECT count(*) FROM tags").await, 1);
    assert!(
        r.manifest(&repo("app"), &digest(10))
            .await
            .unwrap()
            .is_some(),
        "old manifest stays"
    );
}

#[tokio::test]
async fn delete_manifest_removes_its_tags_and_refs_only() {
    let mut t = TestSm::new().await;
    t.one(link("app", 1)).await;
    let mut a = Put::new("app", 10);
    a.blobs = vec![1];
    a.tag = Some("v1");
    let mut b = Put::new("app", 11);
    b.blobs = vec![1];
    b.tag = Some("v2");
    t.apply(vec![a.cmd(), b.cmd()]).await;
    // A second tag on the same manifest.
    let mut again = a.clone();
    again.tag = Some("stable");
    t.one(again.cmd()).await;

    let delete = MetaCommand::DeleteManifest {
        repo: repo("app"),
        digest: digest(10),
    };
    assert_eq!(t.one(delete.clone()).await, MetaResponse::Ok);
    let r = t.sm.reader();
    assert_eq!(r.manifest(&repo("app"), &digest(10)).await.unwrap(), None);
    assert_eq!(r.resolve_tag(&repo("app"), &tag("v1")).await.unwrap(), None);
    assert_eq!(
        r.resolve_tag(&repo("app"), &tag("stable")).await.unwrap(),
        None
    );
    assert_eq!(
        r.resolve_tag(&repo("app"), &tag("v2")).await.unwrap(),
        Some(digest(11))
    );
    assert_eq!(
        count(
            &t,
            &format!(
                "SELECT count(*) FROM manifest_refs WHERE manifest_digest = '{}'",
                digest(10)
            )
        )
        .await,
        0
    );
    assert_eq!(count(&t, "SELECT count(*) FROM manifest_refs").await, 1);
    assert_eq!(
        r.blob_link(&repo("app"), &digest(1)).await.unwrap(),
        Some(101),
        "blob links stay"
    );

    assert_eq!(
        t.one(delete).await,
        MetaResponse::Rejected(Rejection::ManifestUnknown)
    );
}

#[tokio::test]
async fn delete_tag_removes_only_the_tag() {
    let mut t = TestSm::new().await;
    let mut a = Put::new("app", 10);
    a.tag = Some("v1");
    t.one(a.cmd()).await;
    let delete = MetaCommand::DeleteTag {
        repo: repo("app"),
        tag: tag("v1"),
    };
    assert_eq!(t.one(delete.clone()).await, MetaResponse::Ok);
    let r = t.sm.reader();
    assert_eq!(r.resolve_tag(&repo("app"), &tag("v1")).await.unwrap(), None);
    assert!(r
        .manifest(&repo("app"), &digest(10))
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        t.one(delete).await,
        MetaResponse::Rejected(Rejection::TagUnknown)
    );
}

#[tokio::test]
async fn referrers_are_listed_by_digest_and_filtered_by_artifact_type() {
    let mut t = TestSm::new().await;
    t.one(Put::new("app", 1).cmd()).await;
    let mut sig = Put::new("app", 30);
    sig.subject = Some(1);
    sig.artifact_type = Some("application/vnd.dev.cosign.artifact.sig.v1+json");
    sig.annotations = vec![("org.opencontainers.image.created", "2024-01-01T00:00:00Z")];
    let mut sbom = Put::new("app", 20);
    sbom.subject = Some(1);
    sbom.artifact_type = Some("application/spdx+json");
    let mut unrelated = Put::new("app", 40);
    unrelated.subject = Some(2);
    // The subject need not exist (OCI allows pushing referrers first).
    t.apply(vec![sig.cmd(), sbom.cmd(), unrelated.cmd()]).await;
    let mut elsewhere = Put::new("other", 50);
    elsewhere.subject = Some(1);
    t.one(elsewhere.cmd()).await;

    let r = t.sm.reader();
    let all = r.referrers(&repo("app"), &digest(1), None).await.unwrap();
    assert_eq!(
        all.iter().map(|x| x.digest.clone()).collect::<Vec<_>>(),
        vec![digest(20), digest(30)]
    );
    assert_eq!(
        all[0].artifact_type.as_deref(),
        Some("application/spdx+json")
    );
    assert!(all[0].annotations.is_empty());
    assert_eq!(all[1].size, sig.body().len() as u64);
    assert_eq!(
        all[1].media_type,
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        all[1].annotations,
        BTreeMap::from([(
            "org.opencontainers.image.created".to_owned(),
            "2024-01-01T00:00:00Z".to_owned()
        )])
    );

    let sigs = r
        .referrers(
            &repo("app"),
            &digest(1),
            Some("application/vnd.dev.cosign.artifact.sig.v1+json"),
        )
        .await
        .unwrap();
    assert_eq!(sigs.len(), 1);
    assert_eq!(sigs[0].digest, digest(30));
    assert!(r
        .referrers(&repo("app"), &digest(1), Some("text/plain"))
        .await
        .unwrap()
        .is_empty());
    assert!(r
        .referrers(&repo("app"), &digest(99), None)
        .await
        .unwrap()
        .is_empty());
    let m = r
        .manifest(&repo("app"), &digest(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.subject, Some(digest(1)));
}

#[tokio::test]
async fn tags_and_repositories_paginate_in_byte_order() {
    let mut t = TestSm::new().await;
    let names = ["b", "a", "Z", "a-1", "c", "a_0"];
    let mut cmds = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let mut p = Put::new("app", 100 + i as u64);
        p.tag = Some(name);
        cmds.push(p.cmd());
    }
    for repo_name in ["zeta", "alpha/one", "alpha", "beta"] {
        cmds.push(link(repo_name, 1));
    }
    t.apply(cmds).await;
    let r = t.sm.reader();
    let app = repo("app");
    // Byte order: uppercase before lowercase, '-' (0x2d) < '_' (0x5f).
    assert_eq!(
        r.tags(&app, None, 100).await.unwrap(),
        ["Z", "a", "a-1", "a_0", "b", "c"]
    );
    assert_eq!(r.tags(&app, None, 2).await.unwrap(), ["Z", "a"]);
    assert_eq!(r.tags(&app, Some("a"), 2).await.unwrap(), ["a-1", "a_0"]);
    assert_eq!(r.tags(&app, Some("a_0"), 2).await.unwrap(), ["b", "c"]);
    assert!(r.tags(&app, Some("c"), 2).await.unwrap().is_empty());
    assert_eq!(
        r.tags(&app, Some("a0"), 10).await.unwrap(),
        ["a_0", "b", "c"],
        "after need not exist"
    );
    assert!(r.tags(&repo("zeta"), None, 10).await.unwrap().is_empty());

    assert_eq!(
        r.repositories(None, 100).await.unwrap(),
        ["alpha", "alpha/one", "app", "beta", "zeta"]
    );
    assert_eq!(
        r.repositories(Some("alpha/one"), 2).await.unwrap(),
        ["app", "beta"]
    );
    assert_eq!(r.repositories(Some("beta"), 2).await.unwrap(), ["zeta"]);
}

#[tokio::test]
async fn a_batch_applies_in_order_and_records_last_applied_and_membership() {
    let mut t = TestSm::new().await;
    let mut put = Put::new("app", 10);
    put.blobs = vec![1];
    let unlink_unknown = MetaCommand::UnlinkBlob {
        repo: repo("app"),
        digest: digest(9),
    };
    let mut entries = t.entries(vec![link("app", 1), unlink_unknown, put.cmd()]);
    let members = Membership::new(vec![[1u64].into()], None);
    entries.push(Entry {
        log_id: t.next_log_id(),
        payload: EntryPayload::Membership(members.clone()),
    });
    entries.push(Entry {
        log_id: t.next_log_id(),
        payload: EntryPayload::Blank,
    });
    let responses = t.sm.apply(entries).await.unwrap();
    assert_eq!(
        responses,
        [
            MetaResponse::Ok,
            MetaResponse::Rejected(Rejection::BlobUnknown),
            MetaResponse::Ok, // sees the link made earlier in the same batch
            MetaResponse::Ok,
            MetaResponse::Ok,
        ]
    );
    let (applied, membership) = t.sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(5)));
    assert_eq!(membership.log_id(), &Some(log_id(4)));
    assert_eq!(membership.membership(), &members);
}

#[tokio::test]
async fn a_batch_that_fails_in_storage_leaves_nothing_behind() {
    let mut t = TestSm::new().await;
    t.one(link("app", 1)).await;
    let (before, _) = t.sm.applied_state().await.unwrap();

    // A size SQLite cannot store makes the third command fail as a storage error.
    let too_big = MetaCommand::LinkBlob {
        repo: repo("app"),
        digest: digest(3),
        size: u64::MAX,
        at_ms: 0,
    };
    let mut put = Put::new("app", 10);
    put.blobs = vec![1];
    put.tag = Some("latest");
    let entries = t.entries(vec![link("new", 2), put.cmd(), too_big]);
    assert!(t.sm.apply(entries).await.is_err());

    let r = t.sm.reader();
    assert!(!r.repository_exists(&repo("new")).await.unwrap());
    assert_eq!(r.manifest(&repo("app"), &digest(10)).await.unwrap(), None);
    assert_eq!(
        r.resolve_tag(&repo("app"), &tag("latest")).await.unwrap(),
        None
    );
    assert_eq!(t.sm.applied_state().await.unwrap().0, before);
}

#[tokio::test]
async fn set_cluster_ca_is_kept_by_the_first_proposer_only() {
    use crate::{ClusterCa, ClusterCommand, Redacted};
    let mut t = TestSm::new().await;
    let r = t.sm.reader().clone();
    assert_eq!(r.cluster_ca().await.unwrap(), None);
    let set = |cert: &str, key: &str| {
        MetaCommand::Cluster(ClusterCommand::SetClusterCa {
            cert_pem: cert.to_owned(),
            key_pem: Redacted(key.to_owned()),
        })
    };
    assert_eq!(t.one(set("cert-1", "key-1")).await, MetaResponse::Ok);
    assert_eq!(
        t.one(set("cert-2", "key-2")).await,
        MetaResponse::Rejected(Rejection::ClusterCaExists)
    );
    assert_eq!(
        r.cluster_ca().await.unwrap(),
        Some(ClusterCa {
            cert_pem: "cert-1".into(),
            key_pem: "key-1".into(),
        })
    );
    // The key never shows in a command's Debug output (commands may be logged).
    assert!(!format!("{:?}", set("c", "secret-key")).contains("secret-key"));
}

#[tokio::test]
async fn a_batch_applies_each_command_as_its_own_and_answers_each() {
    let mut t = TestSm::new().await;
    let mut put = Put::new("app", 10);
    put.blobs = vec![1];
    put.tag = Some("latest");
    let missing_blob = Put::new("app", 11).cmd();
    let mut needs_missing = Put::new("app", 12);
    needs_missing.blobs = vec![9];
    let batch = MetaCommand::Batch(vec![
        link("app", 1),
        put.cmd(),
        needs_missing.cmd(),
        missing_blob,
    ]);
    let answer = t.one(batch).await;
    let MetaResponse::Batch(answers) = answer else {
        panic!("not a batch answer: {answer:?}");
    };
    assert_eq!(answers.len(), 4);
    assert_eq!(answers[0], MetaResponse::Ok);
    assert_eq!(answers[1], MetaResponse::Ok, "sees the link made before it");
    assert!(
        matches!(
            answers[2],
            MetaResponse::Rejected(Rejection::MissingReferences { .. })
        ),
        "{:?}",
        answers[2]
    );
    assert_eq!(
        answers[3],
        MetaResponse::Ok,
        "a refusal changes nothing for the others"
    );
    let r = t.sm.reader();
    assert_eq!(
        r.resolve_tag(&repo("app"), &tag("latest")).await.unwrap(),
        Some(digest(10))
    );
    assert_eq!(r.manifest(&repo("app"), &digest(12)).await.unwrap(), None);
    assert!(r
        .manifest(&repo("app"), &digest(11))
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn a_run_of_links_in_a_batch_links_each_into_new_and_known_repositories() {
    let mut t = TestSm::new().await;
    t.one(link("old", 1)).await;
    let answer = t
        .one(MetaCommand::Batch(vec![
            link("new", 1),
            link("old", 2),
            link("new", 1),
            link("new", 3),
            link("old", 1),
        ]))
        .await;
    assert_eq!(answer, MetaResponse::Batch(vec![MetaResponse::Ok; 5]));
    let r = t.sm.reader();
    assert!(r.repository_exists(&repo("new")).await.unwrap());
    for (name, d) in [("new", 1), ("new", 3), ("old", 1), ("old", 2)] {
        assert_eq!(
            r.blob_link(&repo(name), &digest(d)).await.unwrap(),
            Some(100 + d),
            "{name} {d}"
        );
    }
    assert_eq!(r.blob_link(&repo("new"), &digest(2)).await.unwrap(), None);
    assert_eq!(r.blob_link(&repo("old"), &digest(3)).await.unwrap(), None);
}
