-- The backup sentinel: one row, rewritten by `onebox backup verify` just
-- before it restores the latest backup, which must then hold it (or a
-- later one). It proves the backup is as fresh as the recovery point
-- promises; nothing else reads it. SQLite only: PostgreSQL's backups are
-- PostgreSQL's own.
CREATE TABLE backup_sentinel (
    id         INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    written_at TEXT NOT NULL -- formatTime text, like every time here
) STRICT;
