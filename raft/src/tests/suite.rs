//! openraft's own storage test suite on the SQLite log store and state machine.

use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;

use crate::{LogStore, StateMachineStore, StorageError, TypeConfig};

struct SqliteStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for SqliteStoreBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = LogStore::open(dir.path()).await.expect("open log store");
        let sm = StateMachineStore::open(dir.path())
            .await
            .expect("open state machine");
        Ok((dir, log, sm))
    }
}

/// Takes several seconds: the suite itself sleeps 1 s in the tests that purge.
#[test]
fn openraft_storage_suite_passes() {
    Suite::test_all(SqliteStoreBuilder).expect("openraft storage suite");
}
