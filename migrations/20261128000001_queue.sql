-- The job queue and its event log: what the workers, the API and the live streams need on
-- top of the first schema.

-- The conversion options' canonical text (the reuse key), and which workers may claim a job
-- (`any`, `cpu` or `cuda`).
ALTER TABLE jobs
    ADD COLUMN options_key    TEXT NOT NULL DEFAULT '',
    ADD COLUMN device_class   TEXT NOT NULL DEFAULT 'any',
    -- Every write of the worker holding the lease names this token.
    ADD COLUMN lease_token    UUID,
    ADD COLUMN artifact_name  TEXT,
    ADD COLUMN reused_from    UUID REFERENCES jobs (id) ON DELETE SET NULL,
    -- The number of the job's last event (events are numbered per job).
    ADD COLUMN event_seq      BIGINT NOT NULL DEFAULT 0,
    ADD CONSTRAINT lease_only_when_running
        CHECK (lease_token IS NULL OR status = 'running'),
    ADD CONSTRAINT progress_is_a_fraction
        CHECK (progress >= 0 AND progress <= 1);

DROP INDEX jobs_by_source;
-- Reuse of an artifact for the same owner, source and options.
CREATE INDEX jobs_by_source ON jobs (owner_id, source_sha256, options_key)
    WHERE status = 'succeeded';
-- Every job, newest first (an admin's list).
CREATE INDEX jobs_by_created ON jobs (created_at DESC);
-- Whether other jobs still share an artifact before its file is deleted.
CREATE INDEX jobs_by_artifact ON jobs (artifact_key) WHERE artifact_key IS NOT NULL;

-- Events are numbered per job under the job row's lock, so their numbers follow commit
-- order: a reader that has seen number N has seen everything before it.
DROP TABLE job_events;
CREATE TABLE job_events (
    job_id      UUID NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    data        JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, seq)
);

-- Workers announce themselves and refresh `last_seen_at` while they run.
CREATE TABLE workers (
    id            TEXT PRIMARY KEY,
    device        TEXT NOT NULL,
    hostname      TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    started_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Wake idle workers when a job becomes claimable.
CREATE FUNCTION yolots_notify_queued() RETURNS trigger AS $$
BEGIN
    IF NEW.status = 'queued' AND (TG_OP = 'INSERT' OR OLD.status <> 'queued') THEN
        PERFORM pg_notify('yolots_queue', NEW.id::text);
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER jobs_notify_queued
    AFTER INSERT OR UPDATE OF status ON jobs
    FOR EACH ROW EXECUTE FUNCTION yolots_notify_queued();

-- Tell live event streams that a job has a new event.
CREATE FUNCTION yolots_notify_event() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('yolots_events', NEW.job_id::text || ':' || NEW.seq::text);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER job_events_notify
    AFTER INSERT ON job_events
    FOR EACH ROW EXECUTE FUNCTION yolots_notify_event();
