-- Identity and access: organizations, teams, grants, repository visibility, signing keys.

-- Refresh tokens issued before a password change no longer work.
ALTER TABLE users ADD COLUMN password_changed_at_ms INTEGER NOT NULL DEFAULT 0;

-- Public repositories can be pulled by anyone.
ALTER TABLE repositories ADD COLUMN public INTEGER NOT NULL DEFAULT 0 CHECK (public IN (0, 1));

-- An organization owns the namespace of its name; users and organizations share that space.
CREATE TABLE organizations (
    name          TEXT    NOT NULL PRIMARY KEY,
    created_at_ms INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE teams (
    org           TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (org, name)
) STRICT, WITHOUT ROWID;

CREATE TABLE team_members (
    org  TEXT NOT NULL,
    team TEXT NOT NULL,
    user TEXT NOT NULL,
    PRIMARY KEY (org, team, user)
) STRICT, WITHOUT ROWID;
CREATE INDEX team_members_by_user ON team_members (user);

-- subject: 'user:NAME' or 'team:ORG/TEAM'; target: 'namespace:NS' or 'repository:NAME'.
CREATE TABLE grants (
    subject TEXT NOT NULL,
    target  TEXT NOT NULL,
    role    TEXT NOT NULL CHECK (role IN ('read', 'read-write', 'admin')),
    PRIMARY KEY (subject, target)
) STRICT, WITHOUT ROWID;
CREATE INDEX grants_by_target ON grants (target);

-- Token-signing keys (ES256). The newest signs; all verify.
CREATE TABLE signing_keys (
    kid           TEXT    NOT NULL PRIMARY KEY,
    private_pem   TEXT    NOT NULL,
    public_pem    TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- When each repository name was last deleted: tokens issued before do not open the name again.
CREATE TABLE repository_deletions (
    name          TEXT    NOT NULL PRIMARY KEY,
    deleted_at_ms INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
