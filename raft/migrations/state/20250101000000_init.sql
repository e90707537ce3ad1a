-- The state machine of Berth's replicated metadata (state.db).
-- Every table is replaced wholesale when a snapshot is installed, so each one must be
-- derivable from the Raft log alone: no local-only data here.

-- Raft bookkeeping: 'last_applied' (a LogId) and 'membership' (a StoredMembership), as JSON.
CREATE TABLE raft_state (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE repositories (
    name          TEXT    NOT NULL PRIMARY KEY,
    created_at_ms INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Manifest bodies can reach several MiB: a rowid table keeps them out of the b-tree keys.
CREATE TABLE manifests (
    repo          TEXT    NOT NULL,
    digest        TEXT    NOT NULL,
    media_type    TEXT    NOT NULL,
    artifact_type TEXT,
    size          INTEGER NOT NULL,
    body          BLOB    NOT NULL,
    subject       TEXT,
    annotations   TEXT,   -- JSON object, NULL when there are none
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (repo, digest)
) STRICT;
CREATE INDEX manifests_by_subject ON manifests (repo, subject);

CREATE TABLE tags (
    repo          TEXT    NOT NULL,
    tag           TEXT    NOT NULL,
    digest        TEXT    NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (repo, tag)
) STRICT, WITHOUT ROWID;
CREATE INDEX tags_by_digest ON tags (repo, digest);

CREATE TABLE blob_links (
    repo          TEXT    NOT NULL,
    digest        TEXT    NOT NULL,
    size          INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (repo, digest)
) STRICT, WITHOUT ROWID;

-- What a manifest needs to stay valid: its layers/config ('blob') and, for an index,
-- its child manifests ('manifest'). The subject is not a reference (manifests.subject).
CREATE TABLE manifest_refs (
    repo            TEXT NOT NULL,
    manifest_digest TEXT NOT NULL,
    target_digest   TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('blob', 'manifest')),
    PRIMARY KEY (repo, manifest_digest, target_digest, kind)
) STRICT, WITHOUT ROWID;
CREATE INDEX manifest_refs_by_target ON manifest_refs (repo, target_digest);
