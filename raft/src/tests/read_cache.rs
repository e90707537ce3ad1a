//! The reader's cache never serves what an applied command changed: every read below is made
//! once before the change (so it is cached) and once after.

use super::support::{digest, link, repo, tag, Put, TestSm};
use crate::{AccessCommand, MetaCommand, MetaResponse};

/// A manifest 10 tagged `latest` over blob 1 in `app`, every read of it cached.
async fn tagged_and_read() -> TestSm {
    let mut t = TestSm::new().await;
    t.one(link("app", 1)).await;
    let mut put = Put::new("app", 10);
    put.blobs = vec![1];
    put.tag = Some("latest");
    assert_eq!(t.one(put.cmd()).await, MetaResponse::Ok);
    let r = t.sm.reader();
    assert_eq!(
        r.resolve_tag(&repo("app"), &tag("latest")).await.unwrap(),
        Some(digest(10))
    );
    assert!(r
        .manifest(&repo("app"), &digest(10))
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        r.blob_link(&repo("app"), &digest(1)).await.unwrap(),
        Some(101)
    );
    t
}

#[tokio::test]
async fn a_moved_tag_is_read_at_its_new_manifest() {
    let mut t = tagged_and_read().await;
    let mut other = Put::new("app", 11);
    other.tag = Some("latest");
    assert_eq!(t.one(other.cmd()).await, MetaResponse::Ok);
    assert_eq!(
        t.sm.reader()
            .resolve_tag(&repo("app"), &tag("latest"))
            .await
            .unwrap(),
        Some(digest(11))
    );
}

#[tokio::test]
async fn deleted_tags_manifests_and_links_are_gone() {
    let mut t = tagged_and_read().await;
    let r = t.sm.reader().clone();
    t.one(MetaCommand::DeleteTag {
        repo: repo("app"),
        tag: tag("latest"),
    })
    .await;
    assert_eq!(
        r.resolve_tag(&repo("app"), &tag("latest")).await.unwrap(),
        None
    );
    assert!(r
        .manifest(&repo("app"), &digest(10))
        .await
        .unwrap()
        .is_some());

    t.one(MetaCommand::DeleteManifest {
        repo: repo("app"),
        digest: digest(10),
    })
    .await;
    assert_eq!(r.manifest(&repo("app"), &digest(10)).await.unwrap(), None);

    t.one(MetaCommand::UnlinkBlob {
        repo: repo("app"),
        digest: digest(1),
    })
    .await;
    assert_eq!(r.blob_link(&repo("app"), &digest(1)).await.unwrap(), None);
}

#[tokio::test]
async fn a_deleted_repository_serves_nothing() {
    let mut t = tagged_and_read().await;
    let delete = MetaCommand::Access(AccessCommand::DeleteRepository {
        name: repo("app"),
        at_ms: 1,
    });
    assert_eq!(t.one(delete).await, MetaResponse::Ok);
    let r = t.sm.reader();
    assert_eq!(
        r.resolve_tag(&repo("app"), &tag("latest")).await.unwrap(),
        None
    );
    assert_eq!(r.manifest(&repo("app"), &digest(10)).await.unwrap(), None);
    assert_eq!(r.blob_link(&repo("app"), &digest(1)).await.unwrap(), None);
}

#[tokio::test]
async fn changes_in_one_batch_to_several_repositories_are_all_seen() {
    let mut t = tagged_and_read().await;
    t.one(link("lib", 2)).await;
    let r = t.sm.reader().clone();
    assert_eq!(
        r.blob_link(&repo("lib"), &digest(2)).await.unwrap(),
        Some(102)
    );
    let unlink = |name: &str, d: u64| MetaCommand::UnlinkBlob {
        repo: repo(name),
        digest: digest(d),
    };
    t.apply(vec![unlink("app", 1), unlink("lib", 2)]).await;
    assert_eq!(r.blob_link(&repo("app"), &digest(1)).await.unwrap(), None);
    assert_eq!(r.blob_link(&repo("lib"), &digest(2)).await.unwrap(), None);
}
