-- Retention removes schedule firings older than RETENTION_DAYS, oldest
-- first, in batches: this index is what each batch reads.
CREATE INDEX schedule_firings_fired_idx ON schedule_firings (fired_at);
