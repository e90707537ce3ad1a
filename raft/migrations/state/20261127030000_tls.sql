-- The cluster's own root CA (`berth serve --tls auto`): at most one row, set once by the first
-- proposer (compare-and-set in the state machine) and never changed. Replicas issue their
-- server certificates from it, and trust it for the replica RPC. The key is as secret as the
-- cluster key: it reaches every replica (and backups) through the log and snapshots.
-- Independent of every other table, so the order this migration runs in does not matter.
CREATE TABLE cluster_ca (
    id       INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    cert_pem TEXT    NOT NULL,
    key_pem  TEXT    NOT NULL
) STRICT;
