-- Queued work is announced by the service (delivery::signal), not by a
-- trigger: a transaction that runs NOTIFY holds a database-wide lock from
-- its commit until the commit is flushed, so with the trigger every accepted
-- delivery committed one after another. The service wakes its own workers
-- directly and sends at most one NOTIFY per 50 ms for the other replicas;
-- rows written by anything else are picked up by the workers' poll.
DROP TRIGGER impact_deliveries_due_notify ON impact_deliveries;
DROP FUNCTION impact_deliveries_notify_due();
