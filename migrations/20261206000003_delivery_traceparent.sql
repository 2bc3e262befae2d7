-- The W3C traceparent of the request that created a delivery, so that the
-- attempts a worker makes later join that request's trace (docs/tracing.md).
-- NULL when tracing is off or the request carried no sampled trace.
ALTER TABLE impact_deliveries ADD COLUMN traceparent text;
