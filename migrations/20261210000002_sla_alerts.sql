-- The SLA monitor's memory (src/sla/monitor.rs): which alerts are open, so
-- a restart or a second replica never pages again for an incident already
-- paged, and what it still has to tell PagerDuty and Slack.

-- One row per open alert: a (company, platform, metric) at warning or
-- breach. Healthy is the absence of a row.
CREATE TABLE sla_alerts (
    company_id uuid             NOT NULL,
    provider   text             NOT NULL CHECK (provider IN ('benevity', 'goodera', 'workday')),
    metric     text             NOT NULL,
    status     text             NOT NULL CHECK (status IN ('warning', 'breach')),
    value      double precision NOT NULL,
    threshold  double precision NOT NULL,
    opened_at  timestamptz      NOT NULL,
    changed_at timestamptz      NOT NULL,
    PRIMARY KEY (company_id, provider, metric)
);

-- An outbox: written in the transaction that changes an alert, sent by the
-- monitor in id order per channel, marked sent only on the receiver's
-- acceptance. The body is stored without the routing key or webhook URL
-- (the secrets are added when sending).
CREATE TABLE sla_notifications (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel         text        NOT NULL CHECK (channel IN ('pagerduty', 'slack')),
    company_id      uuid        NOT NULL,
    provider        text        NOT NULL,
    metric          text        NOT NULL,
    transition      text        NOT NULL,
    body            jsonb       NOT NULL,
    created_at      timestamptz NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    sent_at         timestamptz,
    -- Given up: refused as invalid (400) or the Slack webhook is gone.
    abandoned_at    timestamptz,
    last_error      text
);

CREATE INDEX sla_notifications_pending_idx
    ON sla_notifications (channel, id)
    WHERE sent_at IS NULL AND abandoned_at IS NULL;

-- The last evaluation per platform across companies, for the /metrics
-- gauges of every replica.
CREATE TABLE sla_platform_status (
    provider            text             PRIMARY KEY,
    status              text             NOT NULL,
    success_rate        double precision,
    breaching_companies integer          NOT NULL,
    evaluated_at        timestamptz      NOT NULL
);
