-- Cluster-wide state: settings, join tokens and users. Like every table here, derived from
-- the Raft log alone (values chosen by the proposer).

-- Cluster settings as JSON values: 'last_replica_id' (the highest replica id ever given out).
CREATE TABLE settings (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) STRICT, WITHOUT ROWID;

-- Secrets that admit new replicas. Only their SHA-256 is kept, never the token.
CREATE TABLE join_tokens (
    token_sha256  TEXT    NOT NULL PRIMARY KEY,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER            -- NULL: never expires
) STRICT, WITHOUT ROWID;

-- Registry users. Passwords only as argon2id PHC strings.
CREATE TABLE users (
    name          TEXT    NOT NULL PRIMARY KEY,
    password_hash TEXT    NOT NULL,
    is_admin      INTEGER NOT NULL CHECK (is_admin IN (0, 1)),
    created_at_ms INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
