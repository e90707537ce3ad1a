//! Helpers shared by the tests: typed values from literals and a state machine in a temp dir.

use std::collections::BTreeMap;

use berth_oci::{Digest, RepoName, Tag};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload};
use tempfile::TempDir;

use crate::{Entry, LogId, MetaCommand, MetaResponse, StateMachineStore};

pub(crate) const AT_MS: i64 = 1_700_000_000_000;

pub(crate) fn repo(s: &str) -> RepoName {
    RepoName::parse(s).expect("valid repository name")
}

pub(crate) fn tag(s: &str) -> Tag {
    Tag::parse(s).expect("valid tag")
}

/// A syntactically valid sha256 digest numbered `n`.
pub(crate) fn digest(n: u64) -> Digest {
    Digest::parse(&format!("sha256:{n:064x}")).expect("valid digest")
}

pub(crate) fn log_id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

pub(crate) fn link(repo_name: &str, d: u64) -> MetaCommand {
    MetaCommand::LinkBlob {
        repo: repo(repo_name),
        digest: digest(d),
        size: 100 + d,
        at_ms: AT_MS,
    }
}

/// A PutManifest with a body naming its digest number, and everything optional empty.
#[derive(Debug, Clone)]
pub(crate) struct Put {
    pub(crate) repo: &'static str,
    pub(crate) digest: u64,
    pub(crate) blobs: Vec<u64>,
    pub(crate) children: Vec<u64>,
    pub(crate) tag: Option<&'static str>,
    pub(crate) subject: Option<u64>,
    pub(crate) artifact_type: Option<&'static str>,
    pub(crate) annotations: Vec<(&'static str, &'static str)>,
}

impl Put {
    pub(crate) fn new(repo: &'static str, digest: u64) -> Put {
        Put {
            repo,
            digest,
            blobs: Vec::new(),
            children: Vec::new(),
            tag: None,
            subject: None,
            artifact_type: None,
            annotations: Vec::new(),
        }
    }

    pub(crate) fn body(&self) -> String {
        format!(r#"{{"schemaVersion":2,"n":{}}}"#, self.digest)
    }

    pub(crate) fn cmd(&self) -> MetaCommand {
        MetaCommand::PutManifest {
            repo: repo(self.repo),
            digest: digest(self.digest),
            media_type: "application/vnd.oci.image.manifest.v1+json".to_owned(),
            artifact_type: self.artifact_type.map(str::to_owned),
            body: self.body(),
            subject: self.subject.map(digest),
            annotations: self
                .annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            blobs: self.blobs.iter().copied().map(digest).collect(),
            children: self.children.iter().copied().map(digest).collect(),
            tag: self.tag.map(tag),
            at_ms: AT_MS,
        }
    }
}

/// A state machine in its own temp dir, applying entries with consecutive log indexes.
pub(crate) struct TestSm {
    pub(crate) dir: TempDir,
    pub(crate) sm: StateMachineStore,
    next_index: u64,
}

impl TestSm {
    pub(crate) async fn new() -> TestSm {
        let dir = tempfile::tempdir().expect("temp dir");
        let sm = StateMachineStore::open(dir.path())
            .await
            .expect("open state machine");
        TestSm {
            dir,
            sm,
            next_index: 1,
        }
    }

    /// The log id the next entry gets.
    pub(crate) fn next_log_id(&mut self) -> LogId {
        let id = log_id(self.next_index);
        self.next_index += 1;
        id
    }

    pub(crate) fn entries(&mut self, cmds: Vec<MetaCommand>) -> Vec<Entry> {
        cmds.into_iter()
            .map(|cmd| Entry {
                log_id: self.next_log_id(),
                payload: EntryPayload::Normal(cmd),
            })
            .collect()
    }

    /// Applies `cmds` as one batch.
    pub(crate) async fn apply(&mut self, cmds: Vec<MetaCommand>) -> Vec<MetaResponse> {
        let entries = self.entries(cmds);
        self.sm.apply(entries).await.expect("apply")
    }

    pub(crate) async fn one(&mut self, cmd: MetaCommand) -> MetaResponse {
        self.apply(vec![cmd]).await.remove(0)
    }
}
