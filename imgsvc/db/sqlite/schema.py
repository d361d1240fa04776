"""The database's schema, as numbered migrations, and how a connection is opened."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        message TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        completed_at TEXT,
        base_url TEXT NOT NULL,
        webhook_url TEXT,
        quality INTEGER NOT NULL,
        max_dimension INTEGER,
        format TEXT NOT NULL,
        header TEXT NOT NULL,
        total_products INTEGER NOT NULL,
        total_images INTEGER NOT NULL,
        processed_products INTEGER NOT NULL DEFAULT 0,
        processed_images INTEGER NOT NULL DEFAULT 0,
        succeeded_images INTEGER NOT NULL DEFAULT 0,
        failed_images INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX jobs_by_created ON jobs (created_at);
    CREATE INDEX jobs_by_status ON jobs (status);
    CREATE TABLE products (
        job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        line INTEGER NOT NULL,
        serial_number TEXT NOT NULL,
        product_name TEXT NOT NULL,
        cells TEXT NOT NULL,
        PRIMARY KEY (job_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE images (
        job_id TEXT NOT NULL,
        product_seq INTEGER NOT NULL,
        position INTEGER NOT NULL,
        url TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        output_name TEXT,
        error_code TEXT,
        error_message TEXT,
        bytes_in INTEGER,
        bytes_out INTEGER,
        width INTEGER,
        height INTEGER,
        PRIMARY KEY (job_id, product_seq, position),
        FOREIGN KEY (job_id, product_seq) REFERENCES products (job_id, seq) ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE INDEX images_by_url ON images (job_id, url);
    CREATE INDEX images_by_status ON images (job_id, status, product_seq);
    """,
    # The webhook outbox: one row per terminal event, written with the job's terminal state.
    """
    CREATE TABLE webhook_deliveries (
        id TEXT PRIMARY KEY,
        job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        url TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        round_start INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT,
        created_at TEXT NOT NULL
    );
    CREATE INDEX webhook_deliveries_by_job ON webhook_deliveries (job_id);
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
    CREATE TABLE webhook_attempts (
        delivery_id TEXT NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
        number INTEGER NOT NULL,
        at TEXT NOT NULL,
        duration_ms INTEGER NOT NULL,
        status_code INTEGER,
        error_code TEXT,
        error_message TEXT,
        PRIMARY KEY (delivery_id, number)
    ) WITHOUT ROWID;
    """,
    # Who may see a job when API keys are on: a SHA-256 of the key that created it.
    """
    ALTER TABLE jobs ADD COLUMN owner TEXT;
    CREATE INDEX jobs_by_owner ON jobs (owner, created_at);
    """,
    # Lifecycle: a retried upload finds its job by key; a cancel is recorded before it is
    # carried out, so a crash halfway through is finished at the next start.
    """
    ALTER TABLE jobs ADD COLUMN idempotency_key TEXT;
    ALTER TABLE jobs ADD COLUMN upload_digest TEXT;
    ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
    CREATE UNIQUE INDEX jobs_by_idempotency_key ON jobs (idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX jobs_by_completed ON jobs (completed_at) WHERE completed_at IS NOT NULL;
    """,
    # Work claimed from the database under leases. A job's distinct URLs are cut into
    # slices; each slice, a job's finishing and its cancelling are work items. Jobs that
    # were running get one slice (their images were stored before slices existed).
    """
    ALTER TABLE images ADD COLUMN slice INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX images_by_slice ON images (job_id, slice, status, url);
    CREATE TABLE work (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        slice INTEGER NOT NULL DEFAULT 0,
        owner TEXT,
        lease_until TEXT,
        in_flight TEXT
    );
    CREATE UNIQUE INDEX work_by_job ON work (job_id, kind, slice);
    CREATE INDEX work_by_owner ON work (owner);
    INSERT INTO work (job_id, kind)
        SELECT id, CASE cancel_requested WHEN 1 THEN 'cancel' ELSE 'slice' END FROM jobs
        WHERE status IN ('pending', 'processing');
    ALTER TABLE webhook_deliveries ADD COLUMN lease_owner TEXT;
    ALTER TABLE webhook_deliveries ADD COLUMN lease_until TEXT;
    CREATE TABLE secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # The uploaded file's name, which the replaced service's clients read in the details.
    """
    ALTER TABLE jobs ADD COLUMN csv_filename TEXT;
    """,
    # Output options: progressive JPEG asked at upload (0/1); per image, whether the input's
    # own picture was kept because it was smaller (0/1, NULL until the image is produced).
    """
    ALTER TABLE jobs ADD COLUMN progressive INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE images ADD COLUMN kept_input INTEGER;
    """,
    # Sizes: the extra longest sides asked at upload (a JSON list); per image, the outputs
    # made for them (JSON [[size, name, width, height, bytes], ...], NULL until produced).
    """
    ALTER TABLE jobs ADD COLUMN sizes TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE images ADD COLUMN renditions TEXT;
    """,
    # Reuse across jobs: whether a job may reuse (0/1), how many of its images did, which
    # did; and per owner ('' with API keys off), options key and URL, the output a later
    # job reuses when the host says the image is unchanged. It goes with the job whose
    # output it names.
    """
    ALTER TABLE jobs ADD COLUMN reuse INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE jobs ADD COLUMN reused_images INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE images ADD COLUMN reused INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE earlier_outputs (
        owner TEXT NOT NULL,
        options_key TEXT NOT NULL,
        url TEXT NOT NULL,
        job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        etag TEXT,
        last_modified TEXT,
        sha256 TEXT NOT NULL,
        output_name TEXT NOT NULL,
        bytes_in INTEGER,
        bytes_out INTEGER,
        width INTEGER,
        height INTEGER,
        kept_input INTEGER,
        renditions TEXT,
        PRIMARY KEY (owner, options_key, url)
    ) WITHOUT ROWID;
    CREATE INDEX earlier_outputs_by_job ON earlier_outputs (job_id);
    """,
    # Images are most of the rows (1.85 million for the largest upload), each stored in the
    # table and two indexes: they name their job by its number, a small integer, instead of
    # the 32-character id in every entry; they hold no foreign key to their products
    # (create_job writes both, delete_job removes both), whose check cost a search per
    # image; and images_by_status goes, as no statement needs it any more.
    """
    ALTER TABLE jobs ADD COLUMN number INTEGER;
    UPDATE jobs SET number = rowid;
    CREATE UNIQUE INDEX jobs_by_number ON jobs (number);
    CREATE TABLE numbered_images (
        job_number INTEGER NOT NULL,
        product_seq INTEGER NOT NULL,
        position INTEGER NOT NULL,
        url TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        output_name TEXT,
        error_code TEXT,
        error_message TEXT,
        bytes_in INTEGER,
        bytes_out INTEGER,
        width INTEGER,
        height INTEGER,
        slice INTEGER NOT NULL DEFAULT 0,
        kept_input INTEGER,
        renditions TEXT,
        reused INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (job_number, product_seq, position)
    ) WITHOUT ROWID;
    INSERT INTO numbered_images SELECT jobs.number, product_seq, position, url, images.status,
        output_name, error_code, error_message, bytes_in, bytes_out, width, height, slice,
        kept_input, renditions, reused FROM images JOIN jobs ON jobs.id = images.job_id;
    DROP TABLE images;
    ALTER TABLE numbered_images RENAME TO images;
    CREATE INDEX images_by_url ON images (job_number, url);
    CREATE INDEX images_by_slice ON images (job_number, slice, status, url);
    """,
)


async def connect(path: Path) -> aiosqlite.Connection:
    """A connection that waits for the writer's lock instead of failing, with foreign keys."""
    db = await aiosqlite.connect(path, isolation_level=None, timeout=30)
    await db.execute("PRAGMA busy_timeout = 30000")
    await db.execute("PRAGMA foreign_keys = ON")
    return db


async def migrate(db: aiosqlite.Connection) -> None:
    """Apply the migrations this file has not seen yet, each in its own transaction."""
    rows = await db.execute_fetchall("PRAGMA user_version")
    version = next(iter(rows))[0]
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        statements = [s.strip() for s in script.split(";") if s.strip()]
        await db.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements:
                await db.execute(statement)
            await db.execute(f"PRAGMA user_version = {number}")
        except sqlite3.Error:
            await db.execute("ROLLBACK")
            raise
        await db.execute("COMMIT")
