-- Online garbage collection (issue 7).
--
-- A digest that no repository links any more is a candidate. Its row goes through:
--   'marked'   : found unreferenced by a collect; a LinkBlob of it removes the row;
--   'deleting' : claimed by the running GC, which may be deleting its bytes from storage
--                right now; a LinkBlob of it is refused (the registry waits and retries);
--   'deleted'  : a tombstone after the GC released it; a LinkBlob of it succeeds but tells the
--                proposer to check that storage still has the bytes it wrote before linking.
-- Tombstones expire an hour after they were written (a later collect removes them).
CREATE TABLE gc_candidates (
    digest        TEXT    NOT NULL PRIMARY KEY,
    state         TEXT    NOT NULL CHECK (state IN ('marked', 'deleting', 'deleted')),
    size          INTEGER NOT NULL,
    marked_at_ms  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX gc_candidates_by_state ON gc_candidates (state, digest);

-- Whether any repository still links a digest, without a scan.
CREATE INDEX blob_links_by_digest ON blob_links (digest);
