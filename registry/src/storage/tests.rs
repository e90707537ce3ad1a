//! The storage suite: uploads (streamed, chunked, resumed, cancelled), commits and reads.

use berth_oci::{Digest, RepoName};
use bytes::Bytes;
use futures::stream;

use super::*;

fn body(parts: &[&[u8]]) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + Unpin {
    stream::iter(
        parts
            .iter()
            .map(|p| Ok(Bytes::copy_from_slice(p)))
            .collect::<Vec<_>>(),
    )
}

fn stores(dir: &std::path::Path) -> (BlobStore, UploadStore) {
    let layout = Layout::new(dir);
    prepare(&layout).unwrap();
    let blobs = BlobStore::new(layout.clone());
    (blobs.clone(), UploadStore::new(layout, blobs))
}

fn repo() -> RepoName {
    RepoName::parse("team/app").unwrap()
}

async fn read_all(blobs: &BlobStore, digest: &Digest, offset: u64, len: u64) -> Vec<u8> {
    use futures::TryStreamExt;
    let reader = blobs.open(digest, offset, len).await.unwrap();
    let chunks: Vec<Bytes> = reader.into_stream().try_collect().await.unwrap();
    chunks.concat()
}

#[tokio::test]
async fn chunked_upload_commits_the_verified_blob() {
    let dir = tempfile::tempdir().unwrap();
    let (blobs, uploads) = stores(dir.path());
    let (id, _) = uploads.start(&repo(), 1).await.unwrap();
    let s = uploads
        .append(&id, Some(0), body(&[b"hello ", b"wor"]))
        .await
        .unwrap();
    assert_eq!(s.offset, 9);
    let digest = Digest::sha256_of(b"hello world");
    let size = uploads
        .finish(&id, &digest, Some(9), body(&[b"ld"]))
        .await
        .unwrap();
    assert_eq!(size, 11);
    assert_eq!(blobs.stat(&digest).await.unwrap(), Some(11));
    assert_eq!(read_all(&blobs, &digest, 6, 5).await, b"world");
    assert!(matches!(
        uploads.state(&id).await,
        Err(Error::UploadNotFound)
    ));
}

#[tokio::test]
async fn a_new_store_resumes_a_session_from_its_saved_state() {
    let dir = tempfile::tempdir().unwrap();
    let (_, first) = stores(dir.path());
    let (id, _) = first.start(&repo(), 1).await.unwrap();
    first.append(&id, None, body(&[b"abc"])).await.unwrap();
    drop(first);
    // Another process (a restart, another replica) sees the same session.
    let (blobs, second) = stores(dir.path());
    assert_eq!(second.state(&id).await.unwrap().offset, 3);
    let digest = Digest::sha256_of(b"abcdef");
    second
        .finish(&id, &digest, None, body(&[b"def"]))
        .await
        .unwrap();
    assert_eq!(blobs.stat(&digest).await.unwrap(), Some(6));
}

#[tokio::test]
async fn out_of_order_chunks_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_, uploads) = stores(dir.path());
    let (id, _) = uploads.start(&repo(), 1).await.unwrap();
    uploads.append(&id, Some(0), body(&[b"abc"])).await.unwrap();
    let err = uploads
        .append(&id, Some(5), body(&[b"zzz"]))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::ChunkOutOfOrder {
            start: 5,
            offset: 3
        }
    ));
    assert_eq!(uploads.state(&id).await.unwrap().offset, 3);
}

#[tokio::test]
async fn a_broken_body_keeps_the_bytes_that_arrived() {
    let dir = tempfile::tempdir().unwrap();
    let (_, uploads) = stores(dir.path());
    let (id, _) = uploads.start(&repo(), 1).await.unwrap();
    let broken = stream::iter(vec![
        Ok(Bytes::from_static(b"abcd")),
        Err(std::io::Error::other("gone")),
    ]);
    let err = uploads.append(&id, None, broken).await.unwrap_err();
    assert!(matches!(err, Error::Body(_)));
    assert_eq!(uploads.state(&id).await.unwrap().offset, 4);
}

#[tokio::test]
async fn mismatched_digest_stores_nothing_and_ends_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let (blobs, uploads) = stores(dir.path());
    let (id, _) = uploads.start(&repo(), 1).await.unwrap();
    let claimed = Digest::sha256_of(b"something else");
    let err = uploads
        .finish(&id, &claimed, None, body(&[b"data"]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }));
    assert_eq!(blobs.stat(&claimed).await.unwrap(), None);
    assert_eq!(blobs.stat(&Digest::sha256_of(b"data")).await.unwrap(), None);
    assert!(matches!(
        uploads.state(&id).await,
        Err(Error::UploadNotFound)
    ));
}

#[tokio::test]
async fn monolithic_put_verifies_and_dedupes() {
    let dir = tempfile::tempdir().unwrap();
    let (blobs, uploads) = stores(dir.path());
    let digest = Digest::sha256_of(b"layer");
    assert_eq!(
        uploads
            .put_whole(&digest, body(&[b"la", b"yer"]))
            .await
            .unwrap(),
        5
    );
    assert_eq!(
        uploads.put_whole(&digest, body(&[b"layer"])).await.unwrap(),
        5
    );
    assert_eq!(read_all(&blobs, &digest, 0, 5).await, b"layer");
    let wrong = Digest::sha256_of(b"other");
    assert!(matches!(
        uploads.put_whole(&wrong, body(&[b"layer"])).await,
        Err(Error::DigestMismatch { .. })
    ));
    assert_eq!(blobs.stat(&wrong).await.unwrap(), None);
    // No temporary files are left behind.
    let left: Vec<_> = std::fs::read_dir(dir.path().join("uploads"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn sha512_uploads_are_verified_with_sha512() {
    let dir = tempfile::tempdir().unwrap();
    let (blobs, uploads) = stores(dir.path());
    let (id, _) = uploads.start(&repo(), 1).await.unwrap();
    let digest = Digest::of(berth_oci::Algorithm::Sha512, b"five!");
    uploads
        .finish(&id, &digest, None, body(&[b"five!"]))
        .await
        .unwrap();
    assert_eq!(blobs.stat(&digest).await.unwrap(), Some(5));
}

#[tokio::test]
async fn cancel_removes_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let (_, uploads) = stores(dir.path());
    let (id, _) = uploads.start(&repo(), 1).await.unwrap();
    uploads.cancel(&id).await.unwrap();
    assert!(matches!(
        uploads.cancel(&id).await,
        Err(Error::UploadNotFound)
    ));
    assert!(!dir.path().join("uploads").join(id.to_string()).exists());
}

#[tokio::test]
async fn large_streams_are_written_in_bounded_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let (blobs, uploads) = stores(dir.path());
    let chunk = vec![7u8; 64 * 1024];
    let parts: Vec<std::io::Result<Bytes>> = (0..160)
        .map(|_| Ok(Bytes::copy_from_slice(&chunk)))
        .collect();
    let mut all = Vec::new();
    for _ in 0..160 {
        all.extend_from_slice(&chunk);
    }
    let digest = Digest::sha256_of(&all);
    let size = uploads
        .put_whole(&digest, stream::iter(parts))
        .await
        .unwrap();
    assert_eq!(size, 160 * 64 * 1024);
    assert_eq!(blobs.stat(&digest).await.unwrap(), Some(size));
}
