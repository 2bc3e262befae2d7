-- /metrics and /integrations/health read every stream's runs of the last
-- 24 hours and its last success at each scrape, and retention removes
-- finished runs oldest first: without these indexes each read the whole
-- table, which grows by one row per run (~300 ms a scrape at 2,000,000).
CREATE INDEX ingest_runs_finished ON ingest_runs (finished_at);
-- DESC NULLS LAST is the order the last-success query asks for, and one
-- the index above cannot give: so the planner never prefers a backward
-- scan of it, through every other stream's runs (seconds), to this one.
CREATE INDEX ingest_runs_succeeded ON ingest_runs (stream, finished_at DESC NULLS LAST)
    WHERE status = 'succeeded';
