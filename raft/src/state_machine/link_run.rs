//! Consecutive `LinkBlob` commands of one batch (concurrent blob pushes) applied as three
//! statements instead of three per command. Every statement through sqlx is a round trip to
//! its worker thread; a batch of sixteen links spent most of its apply time on those
//! hand-offs. The result is the one applying the commands in order gives.

use std::fmt::Write as _;

use sqlx::SqliteConnection;

use super::size_i64;
use crate::command::{MetaCommand, MetaResponse};

/// Links applied by one set of statements; bounds the statements' size.
pub(super) const MAX_RUN: usize = 64;

/// Applies `run` (only `LinkBlob` commands) together, answering each with `Ok`; or returns
/// `None`, having changed nothing, when one of them needs the one-by-one path: a digest
/// that garbage collection has seen (its gate decides), or a size SQLite cannot store.
///
/// # Errors
/// SQLite failures.
pub(super) async fn apply(
    conn: &mut SqliteConnection,
    run: &[MetaCommand],
) -> Result<Option<Vec<MetaResponse>>, sqlx::Error> {
    let mut links = Vec::with_capacity(run.len());
    for cmd in run {
        let MetaCommand::LinkBlob {
            repo,
            digest,
            size,
            at_ms,
        } = cmd
        else {
            return Ok(None);
        };
        let Ok(size) = size_i64(*size) else {
            return Ok(None);
        };
        links.push((repo.as_str(), digest.to_string(), size, *at_ms));
    }

    let mut gc_seen = String::from("SELECT 1 FROM gc_candidates WHERE digest IN (");
    push_placeholders(&mut gc_seen, links.len(), 1);
    gc_seen.push_str(") LIMIT 1");
    let mut query = sqlx::query(&gc_seen).persistent(false);
    for (_, digest, _, _) in &links {
        query = query.bind(digest.as_str());
    }
    if query.fetch_optional(&mut *conn).await?.is_some() {
        return Ok(None);
    }

    // Rows of one INSERT are inserted in order, so the first command's row wins a
    // conflict inside the run, as it would applied alone.
    let mut repos = String::from("INSERT INTO repositories (name, created_at_ms) VALUES ");
    push_placeholders(&mut repos, links.len(), 2);
    repos.push_str(" ON CONFLICT (name) DO NOTHING");
    let mut query = sqlx::query(&repos).persistent(false);
    for (repo, _, _, at_ms) in &links {
        query = query.bind(*repo).bind(*at_ms);
    }
    query.execute(&mut *conn).await?;

    let mut blob_links =
        String::from("INSERT INTO blob_links (repo, digest, size, created_at_ms) VALUES ");
    push_placeholders(&mut blob_links, links.len(), 4);
    blob_links.push_str(" ON CONFLICT (repo, digest) DO NOTHING");
    let mut query = sqlx::query(&blob_links).persistent(false);
    for (repo, digest, size, at_ms) in &links {
        query = query
            .bind(*repo)
            .bind(digest.as_str())
            .bind(*size)
            .bind(*at_ms);
    }
    query.execute(&mut *conn).await?;

    Ok(Some(vec![MetaResponse::Ok; links.len()]))
}

/// `?` for one value per row, `(?, ?)` for several, `rows` times, comma-separated.
fn push_placeholders(sql: &mut String, rows: usize, per_row: usize) {
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        if per_row == 1 {
            sql.push('?');
        } else {
            let _ = write!(sql, "({})", vec!["?"; per_row].join(", "));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::push_placeholders;

    #[test]
    fn placeholders_have_one_value_or_one_tuple_per_row() {
        let mut sql = String::new();
        push_placeholders(&mut sql, 3, 1);
        assert_eq!(sql, "?, ?, ?");
        let mut sql = String::new();
        push_placeholders(&mut sql, 2, 3);
        assert_eq!(sql, "(?, ?, ?), (?, ?, ?)");
    }
}
