"""Forward-only schema migrations, so a newer release opens a file written by an older one.

Each migration is a list of SQL statements applied in one transaction; ``schema_version`` records the
highest applied number. Never edit a released migration: append a new one.
"""
from __future__ import annotations

import sqlalchemy as sa

MIGRATIONS: list[list[str]] = [
    # 1: the initial schema
    [
        "CREATE SEQUENCE IF NOT EXISTS datasets_id_seq START 1",
        """CREATE TABLE datasets (
            id INTEGER PRIMARY KEY DEFAULT nextval('datasets_id_seq'),
            name VARCHAR NOT NULL UNIQUE,
            source VARCHAR NOT NULL,          -- 'microlens' | 'generic' | 'demo'
            root VARCHAR,                      -- folder media paths are relative to
            params VARCHAR NOT NULL,           -- JSON: preprocessing choices
            stats VARCHAR NOT NULL,            -- JSON: counts computed at import
            warnings VARCHAR NOT NULL,         -- JSON list of import warnings
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
        )""",
        """CREATE TABLE items (
            dataset_id INTEGER NOT NULL,
            idx INTEGER NOT NULL,              -- dense 0-based index: row of every feature tensor
            item_id VARCHAR NOT NULL,          -- external id
            title VARCHAR,
            video_path VARCHAR,
            cover_path VARCHAR,
            meta VARCHAR,                      -- JSON: free metadata columns
            PRIMARY KEY (dataset_id, idx)
        )""",
        """CREATE TABLE users (
            dataset_id INTEGER NOT NULL,
            idx INTEGER NOT NULL,
            user_id VARCHAR NOT NULL,
            PRIMARY KEY (dataset_id, idx)
        )""",
        """CREATE TABLE interactions (
            dataset_id INTEGER NOT NULL,
            user_idx INTEGER NOT NULL,
            pos INTEGER NOT NULL,              -- 0-based position in the user's time-ordered sequence
            item_idx INTEGER NOT NULL,
            ts BIGINT,                         -- original timestamp when the source has one
            role VARCHAR NOT NULL              -- split role: 'train' | 'val' | 'test'
        )""",
        """CREATE TABLE splits (
            dataset_id INTEGER NOT NULL,
            name VARCHAR NOT NULL,             -- 'leave_one_out'
            params VARCHAR NOT NULL,           -- JSON
            PRIMARY KEY (dataset_id, name)
        )""",
        "CREATE SEQUENCE IF NOT EXISTS feature_sets_id_seq START 1",
        """CREATE TABLE feature_sets (
            id INTEGER PRIMARY KEY DEFAULT nextval('feature_sets_id_seq'),
            dataset_id INTEGER NOT NULL,
            name VARCHAR NOT NULL,
            backbone VARCHAR NOT NULL,         -- backbone spec string
            kind VARCHAR NOT NULL DEFAULT 'hidden',   -- 'hidden' | 'caption'
            inputs VARCHAR NOT NULL,           -- JSON list: frames / title / cover
            pooling VARCHAR NOT NULL,
            params VARCHAR NOT NULL,           -- JSON: frames, frame size, batch size ...
            num_layers INTEGER NOT NULL,
            dim INTEGER NOT NULL,
            dtype VARCHAR NOT NULL,            -- 'float16' | 'float32'
            layer_names VARCHAR,               -- JSON list, one name per layer
            status VARCHAR NOT NULL,           -- 'running' | 'complete' | 'partial' | 'failed'
            storage VARCHAR NOT NULL DEFAULT 'duckdb',  -- 'duckdb' | 'parquet'
            location VARCHAR NOT NULL,         -- vectors table name or shard folder
            stats VARCHAR NOT NULL DEFAULT '{}',       -- JSON: timings, throughput
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
            UNIQUE (dataset_id, name)
        )""",
        """CREATE TABLE feature_failures (
            feature_set_id INTEGER NOT NULL,
            item_idx INTEGER NOT NULL,
            reason VARCHAR NOT NULL,
            PRIMARY KEY (feature_set_id, item_idx)
        )""",
        """CREATE TABLE captions (
            feature_set_id INTEGER NOT NULL,
            item_idx INTEGER NOT NULL,
            text VARCHAR NOT NULL,
            PRIMARY KEY (feature_set_id, item_idx)
        )""",
        "CREATE SEQUENCE IF NOT EXISTS runs_id_seq START 1",
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY DEFAULT nextval('runs_id_seq'),
            dataset_id INTEGER NOT NULL,
            feature_set_id INTEGER,
            strategy VARCHAR NOT NULL,
            layers VARCHAR,                    -- JSON list of layer indices
            config VARCHAR NOT NULL,           -- JSON
            status VARCHAR NOT NULL,           -- 'running' | 'done' | 'failed' | 'cancelled' | 'interrupted'
            study VARCHAR,                     -- sweep/study group name
            job_id INTEGER,
            seed INTEGER,
            best_epoch INTEGER,
            epochs_run INTEGER,
            seconds DOUBLE,
            seconds_per_epoch DOUBLE,
            result VARCHAR,                    -- JSON: final metrics, layer weights, breakdowns
            error VARCHAR,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
            finished_at TIMESTAMP
        )""",
        """CREATE TABLE metrics (
            run_id INTEGER NOT NULL,
            epoch INTEGER NOT NULL,
            split VARCHAR NOT NULL,            -- 'train' | 'val' | 'test'
            name VARCHAR NOT NULL,
            value DOUBLE NOT NULL,
            PRIMARY KEY (run_id, epoch, split, name)
        )""",
        "CREATE SEQUENCE IF NOT EXISTS jobs_id_seq START 1",
        """CREATE TABLE jobs (
            id INTEGER PRIMARY KEY DEFAULT nextval('jobs_id_seq'),
            kind VARCHAR NOT NULL,             -- 'extract' | 'train' | 'sweep' | ...
            params VARCHAR NOT NULL,           -- JSON
            status VARCHAR NOT NULL,           -- queued | running | done | failed | cancelled | interrupted
            progress DOUBLE NOT NULL DEFAULT 0,
            step VARCHAR,
            eta_seconds DOUBLE,
            log VARCHAR NOT NULL DEFAULT '',
            error VARCHAR,
            result VARCHAR,                    -- JSON
            group_name VARCHAR,
            parent_id INTEGER,
            worker_pid INTEGER,
            cancel_requested BOOLEAN NOT NULL DEFAULT false,
            heartbeat TIMESTAMP,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
            started_at TIMESTAMP,
            finished_at TIMESTAMP
        )""",
    ],
    # 2: how each run ended (dff_core.train.endings), backfilled from the stored result, config and history
    [
        "ALTER TABLE runs ADD COLUMN ending VARCHAR",
        "UPDATE runs SET ending = 'cancelled' WHERE status = 'cancelled'",
        # evaluations after the best one = stored validation epochs after best_epoch (the per-epoch history);
        # early-stopped: the result says so, the run stopped before its cap, or its last `patience`
        # evaluations brought nothing (the trainer checks patience before the cap)
        """UPDATE runs SET ending = CASE
            WHEN coalesce(TRY_CAST(json_extract_string(result, '$.stopped_early') AS BOOLEAN), false)
                THEN 'early_stopped'
            WHEN epochs_run < coalesce(TRY_CAST(json_extract_string(config, '$.epochs') AS INTEGER), epochs_run)
                THEN 'early_stopped'
            WHEN coalesce(TRY_CAST(json_extract_string(config, '$.patience') AS INTEGER), 5) > 0
                 AND (SELECT count(DISTINCT m.epoch) FROM metrics m WHERE m.run_id = runs.id AND m.split = 'val'
                      AND m.epoch > runs.best_epoch)
                     >= coalesce(TRY_CAST(json_extract_string(config, '$.patience') AS INTEGER), 5)
                THEN 'early_stopped'
            WHEN coalesce(TRY_CAST(json_extract_string(config, '$.patience') AS INTEGER), 5) <= 0
                 AND (SELECT count(DISTINCT m.epoch) FROM metrics m WHERE m.run_id = runs.id AND m.split = 'val'
                      AND m.epoch > runs.best_epoch) >= 5
                THEN 'capped_converged'
            ELSE 'capped_improving' END
        WHERE status = 'done'""",
    ],
    # 3: one writer per job (storage.owners): the claim token a runner writes under and the identity
    # (host:pid:start) of the process that owns the job; a feature set remembers the job or process writing it
    [
        "ALTER TABLE jobs ADD COLUMN claim_token VARCHAR",
        "ALTER TABLE jobs ADD COLUMN owner VARCHAR",
        "ALTER TABLE feature_sets ADD COLUMN job_id INTEGER",
        "ALTER TABLE feature_sets ADD COLUMN writer VARCHAR",
    ],
]

LATEST = len(MIGRATIONS)


def current_version(conn: sa.Connection) -> int:
    exists = conn.execute(sa.text(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'")).scalar()
    if not exists:
        return 0
    return int(conn.execute(sa.text("SELECT max(version) FROM schema_version")).scalar() or 0)


def migrate(conn: sa.Connection, migrations: list[list[str]] | None = None) -> int:
    """Apply every migration newer than the file's version; returns the version reached."""
    migrations = MIGRATIONS if migrations is None else migrations
    conn.execute(sa.text("CREATE TABLE IF NOT EXISTS schema_version ("
                         "version INTEGER NOT NULL, applied_at TIMESTAMP DEFAULT current_timestamp)"))
    version = current_version(conn)
    if version > len(migrations):
        raise RuntimeError(
            f"this database was written by a newer DFF Studio (schema {version}, this release knows "
            f"{len(migrations)}); upgrade DFF Studio to open it")
    for number in range(version + 1, len(migrations) + 1):
        for statement in migrations[number - 1]:
            conn.execute(sa.text(statement))
        conn.execute(sa.text("INSERT INTO schema_version (version) VALUES (:v)"), {"v": number})
    return max(version, len(migrations))
