//! A chunked upload into directory storage: 64 MiB in 8 MiB PATCH-sized chunks, each
//! streamed, hashed and synced, then verified and committed as a blob.

use berth_oci::{Digest, RepoName};
use berth_registry::storage::Storage;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const CHUNK: usize = 8 << 20;
const CHUNKS: usize = 8;

fn chunked_upload(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let data: Vec<u8> = (0..CHUNK * CHUNKS).map(|i| (i % 251) as u8).collect();
    let digest = Digest::sha256_of(&data);
    let repo = RepoName::parse("bench/upload").unwrap();
    let mut group = c.benchmark_group("upload");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(10);
    group.bench_function("chunked_64MiB_in_8MiB_chunks", |b| {
        b.iter(|| {
            rt.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let storage = Storage::directory(dir.path()).unwrap();
                let uploads = storage.uploads();
                let (id, _) = uploads.start(&repo, 0).await.unwrap();
                for (i, chunk) in data.chunks(CHUNK).enumerate() {
                    // Request bodies arrive in frames of 64 KiB or so.
                    let frames: Vec<std::io::Result<Bytes>> = chunk
                        .chunks(64 << 10)
                        .map(|f| Ok(Bytes::copy_from_slice(f)))
                        .collect();
                    let start = (i * CHUNK) as u64;
                    if i + 1 < CHUNKS {
                        uploads
                            .append(&id, Some(start), futures::stream::iter(frames))
                            .await
                            .unwrap();
                    } else {
                        uploads
                            .finish(&id, &digest, Some(start), futures::stream::iter(frames))
                            .await
                            .unwrap();
                    }
                }
            });
        });
    });
    group.finish();
}

criterion_group!(benches, chunked_upload);
criterion_main!(benches);
