//! Applying [`ClusterCommand`]s: replica ids, join tokens and the cluster CA.

use sqlx::SqliteConnection;

use crate::command::{ClusterCommand, MetaResponse, Rejection};

/// `settings` key of the highest replica id handed out so far.
pub(crate) const KEY_LAST_REPLICA_ID: &str = "last_replica_id";
/// `settings` key prefix of retired replica ids.
pub(crate) const RETIRED_PREFIX: &str = "retired_replica:";
/// The replica that creates a cluster has this id, so the first id handed out is the next one.
pub(crate) const FIRST_REPLICA_ID: u64 = 1;

pub(super) async fn apply(
    conn: &mut SqliteConnection,
    cmd: &ClusterCommand,
) -> Result<MetaResponse, sqlx::Error> {
    match cmd {
        ClusterCommand::AllocateReplicaId => {
            let last: Option<(String,)> =
                sqlx::query_as("SELECT value FROM settings WHERE key = ?")
                    .bind(KEY_LAST_REPLICA_ID)
                    .fetch_optional(&mut *conn)
                    .await?;
            let last = match last {
                Some((v,)) => v
                    .parse::<u64>()
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                None => FIRST_REPLICA_ID,
            };
            let next = last + 1;
            sqlx::query(
                "INSERT INTO settings (key, value) VALUES (?, ?) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(KEY_LAST_REPLICA_ID)
            .bind(next.to_string())
            .execute(&mut *conn)
            .await?;
            Ok(MetaResponse::ReplicaId(next))
        }
        ClusterCommand::AddJoinToken {
            token_sha256,
            created_at_ms,
            expires_at_ms,
        } => {
            sqlx::query(
                "INSERT INTO join_tokens (token_sha256, created_at_ms, expires_at_ms) \
                 VALUES (?, ?, ?) ON CONFLICT (token_sha256) DO NOTHING",
            )
            .bind(token_sha256)
            .bind(created_at_ms)
            .bind(expires_at_ms)
            .execute(&mut *conn)
            .await?;
            Ok(MetaResponse::Ok)
        }
        ClusterCommand::RetireReplica { id } => {
            sqlx::query(
                "INSERT INTO settings (key, value) VALUES (?, 'true') ON CONFLICT (key) DO NOTHING",
            )
            .bind(format!("{RETIRED_PREFIX}{id}"))
            .execute(&mut *conn)
            .await?;
            Ok(MetaResponse::Ok)
        }
        ClusterCommand::SetClusterCa { cert_pem, key_pem } => {
            // Compare-and-set: the first CA stored stays the cluster's for good.
            let set = sqlx::query(
                "INSERT INTO cluster_ca (id, cert_pem, key_pem) VALUES (1, ?, ?) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(cert_pem)
            .bind(&key_pem.0)
            .execute(&mut *conn)
            .await?;
            Ok(if set.rows_affected() == 1 {
                MetaResponse::Ok
            } else {
                MetaResponse::Rejected(Rejection::ClusterCaExists)
            })
        }
    }
}
