//! Applying [`AccessCommand`]s: users, organizations, teams, grants, repository visibility
//! and signing keys. Every refusal is checked before any write.

use sqlx::SqliteConnection;

use crate::command::{AccessCommand, MetaResponse, Rejection};

pub(super) async fn apply(
    conn: &mut SqliteConnection,
    cmd: &AccessCommand,
) -> Result<MetaResponse, sqlx::Error> {
    use AccessCommand as A;
    let refused = |r| Ok(MetaResponse::Rejected(r));
    match cmd {
        A::CreateUser {
            name,
            password_hash,
            admin,
            at_ms,
        } => {
            if exists(conn, "SELECT 1 FROM users WHERE name = ?", &[name]).await? {
                return refused(Rejection::UserExists);
            }
            if exists(conn, "SELECT 1 FROM organizations WHERE name = ?", &[name]).await? {
                return refused(Rejection::NameTaken);
            }
            sqlx::query(
                "INSERT INTO users (name, password_hash, is_admin, created_at_ms, password_changed_at_ms) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(name)
            .bind(password_hash)
            .bind(i64::from(*admin))
            .bind(at_ms)
            .bind(0_i64) // creation is not a password change
            .execute(&mut *conn)
            .await?;
        }
        A::DeleteUser { name } => {
            if !exists(conn, "SELECT 1 FROM users WHERE name = ?", &[name]).await? {
                return refused(Rejection::UserUnknown);
            }
            run(conn, "DELETE FROM users WHERE name = ?", &[name]).await?;
            run(conn, "DELETE FROM team_members WHERE user = ?", &[name]).await?;
            run(
                conn,
                "DELETE FROM grants WHERE subject = ?",
                &[&format!("user:{name}")],
            )
            .await?;
        }
        A::SetPassword {
            name,
            password_hash,
            at_ms,
        } => {
            let done = sqlx::query(
                "UPDATE users SET password_hash = ?, password_changed_at_ms = ? WHERE name = ?",
            )
            .bind(password_hash)
            .bind(at_ms)
            .bind(name)
            .execute(&mut *conn)
            .await?;
            if done.rows_affected() == 0 {
                return refused(Rejection::UserUnknown);
            }
        }
        A::CreateOrg { name, at_ms } => {
            if exists(conn, "SELECT 1 FROM users WHERE name = ?", &[name]).await?
                || exists(conn, "SELECT 1 FROM organizations WHERE name = ?", &[name]).await?
            {
                return refused(Rejection::NameTaken);
            }
            sqlx::query("INSERT INTO organizations (name, created_at_ms) VALUES (?, ?)")
                .bind(name)
                .bind(at_ms)
                .execute(&mut *conn)
                .await?;
        }
        A::DeleteOrg { name } => {
            if !exists(conn, "SELECT 1 FROM organizations WHERE name = ?", &[name]).await? {
                return refused(Rejection::OrgUnknown);
            }
            run(conn, "DELETE FROM organizations WHERE name = ?", &[name]).await?;
            run(conn, "DELETE FROM teams WHERE org = ?", &[name]).await?;
            run(conn, "DELETE FROM team_members WHERE org = ?", &[name]).await?;
            run(
                conn,
                "DELETE FROM grants WHERE subject LIKE ? ESCAPE '\\'",
                &[&format!("team:{}/%", like_escape(name))],
            )
            .await?;
        }
        A::CreateTeam { org, team, at_ms } => {
            if !exists(conn, "SELECT 1 FROM organizations WHERE name = ?", &[org]).await? {
                return refused(Rejection::OrgUnknown);
            }
            if exists(
                conn,
                "SELECT 1 FROM teams WHERE org = ? AND name = ?",
                &[org, team],
            )
            .await?
            {
                return refused(Rejection::TeamExists);
            }
            sqlx::query("INSERT INTO teams (org, name, created_at_ms) VALUES (?, ?, ?)")
                .bind(org)
                .bind(team)
                .bind(at_ms)
                .execute(&mut *conn)
                .await?;
        }
        A::DeleteTeam { org, team } => {
            if !exists(
                conn,
                "SELECT 1 FROM teams WHERE org = ? AND name = ?",
                &[org, team],
            )
            .await?
            {
                return refused(Rejection::TeamUnknown);
            }
            run(
                conn,
                "DELETE FROM teams WHERE org = ? AND name = ?",
                &[org, team],
            )
            .await?;
            run(
                conn,
                "DELETE FROM team_members WHERE org = ? AND team = ?",
                &[org, team],
            )
            .await?;
            run(
                conn,
                "DELETE FROM grants WHERE subject = ?",
                &[&format!("team:{org}/{team}")],
            )
            .await?;
        }
        A::AddMember { org, team, user } => {
            if !exists(
                conn,
                "SELECT 1 FROM teams WHERE org = ? AND name = ?",
                &[org, team],
            )
            .await?
            {
                return refused(Rejection::TeamUnknown);
            }
            if !exists(conn, "SELECT 1 FROM users WHERE name = ?", &[user]).await? {
                return refused(Rejection::UserUnknown);
            }
            run(
                conn,
                "INSERT OR IGNORE INTO team_members (org, team, user) VALUES (?, ?, ?)",
                &[org, team, user],
            )
            .await?;
        }
        A::RemoveMember { org, team, user } => {
            run(
                conn,
                "DELETE FROM team_members WHERE org = ? AND team = ? AND user = ?",
                &[org, team, user],
            )
            .await?;
        }
        A::SetGrant {
            subject,
            target,
            role,
        } => {
            if let Some(user) = subject.strip_prefix("user:") {
                if !exists(conn, "SELECT 1 FROM users WHERE name = ?", &[user]).await? {
                    return refused(Rejection::UserUnknown);
                }
            } else if let Some((org, team)) = subject
                .strip_prefix("team:")
                .and_then(|t| t.split_once('/'))
            {
                if !exists(
                    conn,
                    "SELECT 1 FROM teams WHERE org = ? AND name = ?",
                    &[org, team],
                )
                .await?
                {
                    return refused(Rejection::TeamUnknown);
                }
            } else {
                return refused(Rejection::UserUnknown);
            }
            run(
                conn,
                "INSERT INTO grants (subject, target, role) VALUES (?, ?, ?) \
                 ON CONFLICT (subject, target) DO UPDATE SET role = excluded.role",
                &[subject, target, role],
            )
            .await?;
        }
        A::RemoveGrant { subject, target } => {
            let done = sqlx::query("DELETE FROM grants WHERE subject = ? AND target = ?")
                .bind(subject)
                .bind(target)
                .execute(&mut *conn)
                .await?;
            if done.rows_affected() == 0 {
                return refused(Rejection::GrantUnknown);
            }
        }
        A::CreateRepository {
            name,
            public,
            at_ms,
        } => {
            if exists(
                conn,
                "SELECT 1 FROM repositories WHERE name = ?",
                &[name.as_str()],
            )
            .await?
            {
                return refused(Rejection::RepositoryExists);
            }
            sqlx::query("INSERT INTO repositories (name, created_at_ms, public) VALUES (?, ?, ?)")
                .bind(name.as_str())
                .bind(at_ms)
                .bind(i64::from(*public))
                .execute(&mut *conn)
                .await?;
        }
        A::SetVisibility { name, public } => {
            let done = sqlx::query("UPDATE repositories SET public = ? WHERE name = ?")
                .bind(i64::from(*public))
                .bind(name.as_str())
                .execute(&mut *conn)
                .await?;
            if done.rows_affected() == 0 {
                return refused(Rejection::RepositoryUnknown);
            }
        }
        A::DeleteRepository { name, at_ms } => {
            let repo = name.as_str();
            if !exists(conn, "SELECT 1 FROM repositories WHERE name = ?", &[repo]).await? {
                return refused(Rejection::RepositoryUnknown);
            }
            for sql in [
                "DELETE FROM repositories WHERE name = ?",
                "DELETE FROM manifests WHERE repo = ?",
                "DELETE FROM tags WHERE repo = ?",
                "DELETE FROM blob_links WHERE repo = ?",
                "DELETE FROM manifest_refs WHERE repo = ?",
            ] {
                run(conn, sql, &[repo]).await?;
            }
            run(
                conn,
                "DELETE FROM grants WHERE target = ?",
                &[&format!("repository:{repo}")],
            )
            .await?;
            sqlx::query(
                "INSERT INTO repository_deletions (name, deleted_at_ms) VALUES (?, ?) \
                 ON CONFLICT (name) DO UPDATE SET deleted_at_ms = excluded.deleted_at_ms",
            )
            .bind(repo)
            .bind(at_ms)
            .execute(&mut *conn)
            .await?;
        }
        A::AddSigningKey {
            kid,
            private_pem,
            public_pem,
            at_ms,
        } => {
            sqlx::query(
                "INSERT INTO signing_keys (kid, private_pem, public_pem, created_at_ms) \
                 VALUES (?, ?, ?, ?) ON CONFLICT (kid) DO NOTHING",
            )
            .bind(kid)
            .bind(private_pem)
            .bind(public_pem)
            .bind(at_ms)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(MetaResponse::Ok)
}

async fn exists(
    conn: &mut SqliteConnection,
    sql: &str,
    args: &[&str],
) -> Result<bool, sqlx::Error> {
    let mut q = sqlx::query_scalar::<_, i64>(sql);
    for a in args {
        q = q.bind(*a);
    }
    Ok(q.fetch_optional(&mut *conn).await?.is_some())
}

async fn run(conn: &mut SqliteConnection, sql: &str, args: &[&str]) -> Result<(), sqlx::Error> {
    let mut q = sqlx::query(sql);
    for a in args {
        q = q.bind(*a);
    }
    q.execute(&mut *conn).await?;
    Ok(())
}

/// Escapes `%`, `_` and `\` for a LIKE pattern with `ESCAPE '\'`.
fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}
