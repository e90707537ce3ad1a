//! Applying [`AccessCommand`]s: users.

use sqlx::SqliteConnection;

use crate::command::{AccessCommand, MetaResponse, Rejection};

pub(super) async fn apply(
    conn: &mut SqliteConnection,
    cmd: &AccessCommand,
) -> Result<MetaResponse, sqlx::Error> {
    match cmd {
        AccessCommand::CreateUser {
            name,
            password_hash,
            admin,
            at_ms,
        } => {
            let done = sqlx::query(
                "INSERT INTO users (name, password_hash, is_admin, created_at_ms) \
                 VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(password_hash)
            .bind(i64::from(*admin))
            .bind(at_ms)
            .execute(&mut *conn)
            .await?;
            Ok(if done.rows_affected() == 0 {
                MetaResponse::Rejected(Rejection::UserExists)
            } else {
                MetaResponse::Ok
            })
        }
    }
}
