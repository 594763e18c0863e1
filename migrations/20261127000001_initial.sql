-- The system of record: owners and their API tokens, conversion jobs (the queue is this
-- table), and the event log that the live stream replays.

CREATE TABLE owners (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL,
    is_admin    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Only a SHA-256 of each token is stored; the token itself is shown once.
CREATE TABLE api_tokens (
    id            UUID PRIMARY KEY,
    owner_id      UUID NOT NULL REFERENCES owners (id) ON DELETE CASCADE,
    token_sha256  BYTEA NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at  TIMESTAMPTZ,
    revoked_at    TIMESTAMPTZ
);

CREATE TYPE job_status AS ENUM ('queued', 'running', 'succeeded', 'failed', 'cancelled');

CREATE TABLE jobs (
    id                UUID PRIMARY KEY,
    owner_id          UUID NOT NULL REFERENCES owners (id) ON DELETE CASCADE,
    status            job_status NOT NULL DEFAULT 'queued',
    options           JSONB NOT NULL,
    source_name       TEXT NOT NULL,
    source_size       BIGINT NOT NULL,
    source_sha256     TEXT NOT NULL,
    source_key        TEXT NOT NULL,
    stage             TEXT,
    progress          REAL NOT NULL DEFAULT 0,
    attempts          INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER NOT NULL DEFAULT 3,
    run_after         TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_owner       TEXT,
    lease_expires_at  TIMESTAMPTZ,
    cancel_requested  BOOLEAN NOT NULL DEFAULT FALSE,
    error_code        TEXT,
    error_message     TEXT,
    report            JSONB,
    artifact_key      TEXT,
    artifact_size     BIGINT,
    artifact_sha256   TEXT,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at        TIMESTAMPTZ,
    finished_at       TIMESTAMPTZ,
    -- An artifact is visible only on a succeeded row.
    CONSTRAINT artifact_only_when_succeeded
        CHECK (artifact_key IS NULL OR status = 'succeeded')
);

-- The queue: claimable jobs in order.
CREATE INDEX jobs_claimable ON jobs (run_after, created_at) WHERE status = 'queued';
-- Expired leases, for the reaper.
CREATE INDEX jobs_leased ON jobs (lease_expires_at) WHERE status = 'running';
-- An owner's list, newest first.
CREATE INDEX jobs_by_owner ON jobs (owner_id, created_at DESC);
-- Reuse of an artifact for the same source and options.
CREATE INDEX jobs_by_source ON jobs (source_sha256) WHERE status = 'succeeded';

CREATE TABLE job_events (
    id          BIGSERIAL PRIMARY KEY,
    job_id      UUID NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    data        JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX job_events_by_job ON job_events (job_id, id);
