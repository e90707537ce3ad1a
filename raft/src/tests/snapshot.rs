//! Snapshots: built with `VACUUM INTO`, installed into another store by replacing every table,
//! restored at open when the database is behind them.

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, Membership};
use tokio::io::AsyncWriteExt;

use super::support::{digest, link, log_id, repo, tag, Put, TestSm};
use crate::{Entry, MetaReader, Snapshot, StateMachineStore, SNAPSHOT_DIR};

/// Every row of every data table, as sorted text, for comparing two stores.
async fn dump(reader: &MetaReader) -> Vec<String> {
    let pool = reader.pool();
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' \
         AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut out = Vec::new();
    for (table,) in tables {
        let cols: Vec<(String,)> =
            sqlx::query_as("SELECT name FROM pragma_table_info(?) ORDER BY cid")
                .bind(&table)
                .fetch_all(pool)
                .await
                .unwrap();
        let expr = cols
            .iter()
            .map(|(c,)| format!("quote({c})"))
            .collect::<Vec<_>>()
            .join(" || ',' || ");
        let rows: Vec<(String,)> = sqlx::query_as(&format!("SELECT {expr} FROM {table}"))
            .fetch_all(pool)
            .await
            .unwrap();
        let mut rows: Vec<String> = rows
            .into_iter()
            .map(|(r,)| format!("{table}: {r}"))
            .collect();
        rows.sort();
        out.push(format!("{table}: {} rows", rows.len()));
        out.extend(rows);
    }
    out
}

/// A store with a bit of everything, and a membership entry.
async fn populated() -> TestSm {
    let mut t = TestSm::new().await;
    let mut image = Put::new("team/app", 10);
    image.blobs = vec![1, 2];
    image.tag = Some("v1");
    let mut index = Put::new("team/app", 11);
    index.children = vec![10];
    index.tag = Some("latest");
    let mut sig = Put::new("team/app", 12);
    sig.subject = Some(10);
    sig.artifact_type = Some("application/example");
    sig.annotations = vec![("k", "v")];
    t.apply(vec![
        link("team/app", 1),
        link("team/app", 2),
        link("lib", 3),
    ])
    .await;
    t.apply(vec![image.cmd(), index.cmd(), sig.cmd()]).await;
    let entry = Entry {
        log_id: t.next_log_id(),
        payload: EntryPayload::Membership(Membership::new(vec![[1u64, 2, 3].into()], None)),
    };
    t.sm.apply(vec![entry]).await.unwrap();
    t
}

async fn build(sm: &mut StateMachineStore) -> Snapshot {
    sm.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build snapshot")
}

fn snapshot_files(t: &TestSm) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(t.dir.path().join(SNAPSHOT_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_snapshot_installed_into_another_store_gives_identical_reads() {
    let mut leader = populated().await;
    let mut snap = build(&mut leader.sm).await;
    assert_eq!(snap.meta.last_log_id, Some(log_id(7)));
    assert_eq!(snap.meta.last_membership.log_id(), &Some(log_id(7)));

    // The follower had other data: installing replaces it all.
    let mut follower = TestSm::new().await;
    follower.apply(vec![link("junk", 5)]).await;
    // Read once, so the follower's read cache holds it.
    let (junk, five) = (repo("junk"), digest(5));
    let cached = follower.sm.reader().blob_link(&junk, &five).await;
    assert_eq!(cached.unwrap(), Some(105));

    let mut received = follower.sm.begin_receiving_snapshot().await.unwrap();
    let mut bytes = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut *snap.snapshot, &mut bytes)
        .await
        .unwrap();
    received.write_all(&bytes).await.unwrap();
    received.flush().await.unwrap();
    follower
        .sm
        .install_snapshot(&snap.meta, received)
        .await
        .unwrap();

    assert_eq!(
        dump(follower.sm.reader()).await,
        dump(leader.sm.reader()).await
    );
    assert_eq!(
        follower.sm.applied_state().await.unwrap(),
        leader.sm.applied_state().await.unwrap()
    );
    let r = follower.sm.reader();
    assert!(!r.repository_exists(&repo("junk")).await.unwrap());
    assert_eq!(r.blob_link(&repo("junk"), &digest(5)).await.unwrap(), None);
    assert_eq!(
        r.resolve_tag(&repo("team/app"), &tag("latest"))
            .await
            .unwrap(),
        Some(digest(11))
    );
    assert_eq!(
        r.referrers(&repo("team/app"), &digest(10), None)
            .await
            .unwrap()
            .len(),
        1
    );
    let current = follower
        .sm
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("current snapshot");
    assert_eq!(current.meta, snap.meta);

    // And it all survives reopening the store.
    let before = dump(follower.sm.reader()).await;
    let dir = follower.dir;
    drop(follower.sm);
    let mut reopened = StateMachineStore::open(dir.path()).await.unwrap();
    assert_eq!(dump(reopened.reader()).await, before);
    assert_eq!(reopened.applied_state().await.unwrap().0, Some(log_id(7)));
    assert_eq!(
        reopened.get_current_snapshot().await.unwrap().unwrap().meta,
        snap.meta
    );
}

#[tokio::test]
async fn only_the_latest_snapshot_is_kept() {
    let mut t = populated().await;
    assert!(t.sm.get_current_snapshot().await.unwrap().is_none());
    let first = build(&mut t.sm).await;
    t.apply(vec![link("lib", 4)]).await;
    let second = build(&mut t.sm).await;
    assert_ne!(first.meta.snapshot_id, second.meta.snapshot_id);
    assert_eq!(second.meta.last_log_id, Some(log_id(8)));
    let files = snapshot_files(&t);
    assert_eq!(files.len(), 2, "one snapshot and its sidecar: {files:?}");
    assert!(files.contains(&"current.json".to_owned()));
    assert_eq!(
        t.sm.get_current_snapshot().await.unwrap().unwrap().meta,
        second.meta
    );
}

#[tokio::test]
async fn a_database_behind_its_snapshot_is_restored_at_open() {
    let mut leader = populated().await;
    let snap = build(&mut leader.sm).await;

    // A directory whose state.db lost everything but whose snapshot survived.
    let lagging = tempfile::tempdir().unwrap();
    let from = leader.dir.path().join(SNAPSHOT_DIR);
    let to = lagging.path().join(SNAPSHOT_DIR);
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(&from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    let mut sm = StateMachineStore::open(lagging.path()).await.unwrap();
    assert_eq!(dump(sm.reader()).await, dump(leader.sm.reader()).await);
    assert_eq!(sm.applied_state().await.unwrap().0, snap.meta.last_log_id);
}
