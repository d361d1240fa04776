"""The PostgreSQL schema, as numbered migrations, applied once however many processes start.

The tables and columns are SQLite's (`sqlite/schema.py`), in native types. Images carry no
foreign key to their products: both are written together by `create_job` alone, and the
check per row doubled the time to store a 300,000-image job; `delete_job` removes a job's
images itself.
"""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg.rows import TupleRow

# Any constant the service alone uses: the lock key of the migrations.
MIGRATION_LOCK = 0x696D6773  # "imgs"

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        id text PRIMARY KEY,
        status text NOT NULL,
        message text NOT NULL,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        completed_at timestamptz,
        base_url text NOT NULL,
        webhook_url text,
        quality integer NOT NULL,
        max_dimension integer,
        format text NOT NULL,
        header jsonb NOT NULL,
        total_products integer NOT NULL,
        total_images integer NOT NULL,
        processed_products integer NOT NULL DEFAULT 0,
        processed_images integer NOT NULL DEFAULT 0,
        succeeded_images integer NOT NULL DEFAULT 0,
        failed_images integer NOT NULL DEFAULT 0,
        owner text,
        idempotency_key text,
        upload_digest text,
        cancel_requested boolean NOT NULL DEFAULT false,
        csv_filename text
    );
    CREATE INDEX jobs_by_created ON jobs (created_at);
    CREATE INDEX jobs_by_status ON jobs (status);
    CREATE INDEX jobs_by_owner ON jobs (owner, created_at);
    CREATE UNIQUE INDEX jobs_by_idempotency_key ON jobs (idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX jobs_by_completed ON jobs (completed_at) WHERE completed_at IS NOT NULL;
    -- Every claim asks which jobs are being cancelled: a handful, however many jobs exist.
    CREATE INDEX jobs_cancelling ON jobs (id) WHERE cancel_requested;
    CREATE TABLE products (
        job_id text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        seq integer NOT NULL,
        line integer NOT NULL,
        serial_number text NOT NULL,
        product_name text NOT NULL,
        cells jsonb NOT NULL,
        PRIMARY KEY (job_id, seq)
    );
    CREATE TABLE images (
        job_id text NOT NULL,
        product_seq integer NOT NULL,
        position integer NOT NULL,
        url text COLLATE "C" NOT NULL,  -- pages of URLs in byte order, as in SQLite
        status text NOT NULL DEFAULT 'pending',
        output_name text,
        error_code text,
        error_message text,
        bytes_in bigint,
        bytes_out bigint,
        width integer,
        height integer,
        slice integer NOT NULL DEFAULT 0,
        PRIMARY KEY (job_id, product_seq, position)
    );
    CREATE INDEX images_by_url ON images (job_id, url);
    CREATE INDEX images_by_status ON images (job_id, status, product_seq);
    CREATE INDEX images_by_slice ON images (job_id, slice, status, url);
    CREATE TABLE work (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        job_id text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        kind text NOT NULL,
        slice integer NOT NULL DEFAULT 0,
        owner text,
        lease_until timestamptz,
        in_flight text[]
    );
    CREATE UNIQUE INDEX work_by_job ON work (job_id, kind, slice);
    CREATE INDEX work_by_owner ON work (owner);
    CREATE INDEX work_in_claim_order ON work (slice, id);  -- a claim reads from the front
    CREATE TABLE webhook_deliveries (
        id text PRIMARY KEY,
        job_id text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        url text NOT NULL,
        payload text NOT NULL,
        state text NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        round_start integer NOT NULL DEFAULT 0,
        next_attempt_at timestamptz,
        created_at timestamptz NOT NULL,
        lease_owner text,
        lease_until timestamptz
    );
    CREATE INDEX webhook_deliveries_by_job ON webhook_deliveries (job_id);
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
    CREATE TABLE webhook_attempts (
        delivery_id text NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
        number integer NOT NULL,
        at timestamptz NOT NULL,
        duration_ms integer NOT NULL,
        status_code integer,
        error_code text,
        error_message text,
        PRIMARY KEY (delivery_id, number)
    );
    CREATE TABLE secrets (name text PRIMARY KEY, value text NOT NULL);
    """,
    # Output options: progressive JPEG asked at upload; per image, whether the input's own
    # picture was kept because it was smaller (NULL until the image is produced).
    """
    ALTER TABLE jobs ADD COLUMN progressive boolean NOT NULL DEFAULT false;
    ALTER TABLE images ADD COLUMN kept_input boolean;
    """,
    # Sizes: the extra longest sides asked at upload; per image, the outputs made for them
    # ([[size, name, width, height, bytes], ...], NULL until produced).
    """
    ALTER TABLE jobs ADD COLUMN sizes integer[] NOT NULL DEFAULT '{}';
    ALTER TABLE images ADD COLUMN renditions jsonb;
    """,
    # Reuse across jobs: whether a job may reuse, how many of its images did, which did;
    # and per owner ('' with API keys off), options key and URL, the output a later job
    # reuses when the host says the image is unchanged. It goes with the job whose output
    # it names.
    """
    ALTER TABLE jobs ADD COLUMN reuse boolean NOT NULL DEFAULT true;
    ALTER TABLE jobs ADD COLUMN reused_images integer NOT NULL DEFAULT 0;
    ALTER TABLE images ADD COLUMN reused boolean NOT NULL DEFAULT false;
    CREATE TABLE earlier_outputs (
        owner text NOT NULL,
        options_key text NOT NULL,
        url text COLLATE "C" NOT NULL,
        job_id text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        etag text,
        last_modified text,
        sha256 text NOT NULL,
        output_name text NOT NULL,
        bytes_in bigint,
        bytes_out bigint,
        width integer,
        height integer,
        kept_input boolean,
        renditions jsonb,
        PRIMARY KEY (owner, options_key, url)
    );
    CREATE INDEX earlier_outputs_by_job ON earlier_outputs (job_id);
    """,
    # Every image was also an entry of images_by_status, which no statement needs any more:
    # a job's images of one status are found through its primary key or its slices.
    """
    DROP INDEX images_by_status;
    """,
)


async def migrate(db: AsyncConnection[TupleRow]) -> None:
    """Apply the migrations this database has not seen yet, in one transaction.

    The transaction's advisory lock makes processes that start together wait for the first
    one: concurrent `CREATE TABLE IF NOT EXISTS` is not safe in PostgreSQL."""
    async with db.transaction():
        await db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        await db.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        row = await (await db.execute("SELECT max(version) FROM schema_version")).fetchone()
        version = (row[0] if row else None) or 0
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            await db.execute(script)
            await db.execute("INSERT INTO schema_version VALUES (%s)", (number,))
