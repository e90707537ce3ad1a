-- The Raft log of one replica (log.db): entries plus the few durable pointers openraft needs.

-- One row per entry; `entry` is the serde_json form of openraft's Entry<TypeConfig>.
CREATE TABLE log (
    idx   INTEGER NOT NULL PRIMARY KEY,
    entry TEXT    NOT NULL
) STRICT;

-- 'vote', 'committed' and 'purged', as JSON.
CREATE TABLE log_meta (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) STRICT, WITHOUT ROWID;
