//! Group commit: commands proposed while earlier ones are being committed wait in a queue and
//! go to Raft together, as one [`MetaCommand::Batch`] entry.
//!
//! Why: openraft 0.9 appends each client write to the log on its own, and every append is a
//! synced SQLite commit, so sixteen concurrent pushes cost sixteen fsyncs in a row. Batched,
//! they cost one. A lone command is sent as it is and waits for nothing: batches form only
//! from what queued up while [`IN_FLIGHT`] batches were already being committed.

use std::sync::{Arc, Weak};

use tokio::sync::{mpsc, oneshot, Semaphore};

use super::Inner;
use crate::command::{MetaCommand, MetaResponse};
use crate::error::MetaError;

/// Batches being committed at once. Two keep the log busy: one is appended while the
/// previous one's answers travel back.
const IN_FLIGHT: usize = 2;
/// Commands in one batch at most.
const MAX_COMMANDS: usize = 128;
/// Log bytes in one batch at most (a lone larger command still goes, alone), so that an
/// append RPC of `MAX_PAYLOAD_ENTRIES` entries stays far below the RPC body limit.
const MAX_BYTES: usize = 2 * 1024 * 1024;

/// A command waiting for its batch, and where its answer goes.
pub(super) struct Proposal {
    cmd: MetaCommand,
    answer: oneshot::Sender<Result<MetaResponse, MetaError>>,
}

/// The queue in front of Raft.
pub(super) type Queue = mpsc::UnboundedSender<Proposal>;

/// A queue and its receiving end, for [`run`].
pub(super) fn queue() -> (Queue, mpsc::UnboundedReceiver<Proposal>) {
    mpsc::unbounded_channel()
}

/// Queues `cmd`; the receiver gets its answer once its batch is committed and applied.
///
/// # Errors
/// [`MetaError::Unavailable`] when the node is shutting down.
pub(super) fn enqueue(
    queue: &Queue,
    cmd: MetaCommand,
) -> Result<oneshot::Receiver<Result<MetaResponse, MetaError>>, MetaError> {
    let (answer, receiver) = oneshot::channel();
    queue
        .send(Proposal { cmd, answer })
        .map_err(|_| MetaError::Unavailable)?;
    Ok(receiver)
}

/// Takes queued commands in batches and commits them until the node is dropped. Holds the
/// node weakly so that dropping it closes the queue and ends this task.
pub(super) async fn run(node: Weak<Inner>, mut queue: mpsc::UnboundedReceiver<Proposal>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = queue.recv().await {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        // Whatever queued while waiting for a slot joins this batch.
        let mut batch = vec![first];
        let mut bytes = batch[0].cmd.approx_size();
        while batch.len() < MAX_COMMANDS && bytes < MAX_BYTES {
            match queue.try_recv() {
                Ok(next) => {
                    bytes += next.cmd.approx_size();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        let Some(node) = node.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            commit(&node, batch).await;
            drop(slot);
        });
    }
}

/// Commits one batch and hands each proposer its own answer.
async fn commit(node: &Inner, mut batch: Vec<Proposal>) {
    if batch.len() == 1 {
        let Proposal { cmd, answer } = batch.remove(0);
        let _ = answer.send(node.propose_now(cmd).await);
        return;
    }
    let (cmds, answers): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.cmd, p.answer)).unzip();
    let count = cmds.len();
    match node.propose_now(MetaCommand::Batch(cmds)).await {
        Ok(MetaResponse::Batch(responses)) if responses.len() == count => {
            for (answer, response) in answers.into_iter().zip(responses) {
                let _ = answer.send(Ok(response));
            }
        }
        Ok(other) => {
            let reason = format!("a batch of {count} commands was answered {other:?}");
            for answer in answers {
                let _ = answer.send(Err(MetaError::Raft(reason.clone())));
            }
        }
        Err(e) => {
            // Every proposer learns the same failure; MetaError is not Clone (it may hold an
            // I/O error), so each gets its equivalent.
            for answer in answers {
                let _ = answer.send(Err(same_failure(&e)));
            }
        }
    }
}

fn same_failure(e: &MetaError) -> MetaError {
    match e {
        MetaError::Unavailable => MetaError::Unavailable,
        other => MetaError::Raft(other.to_string()),
    }
}
