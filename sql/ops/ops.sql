-- The schema ops (SPEC 4): what people and tools read and call: the pipeline procedure,
-- the limbo, claim and funnel views, snapshots, alerts and the operator functions.
CREATE SCHEMA ops;
COMMENT ON SCHEMA ops IS 'Cabinet leads reconciliation: pipeline entry point, limbo views, snapshots and alerts.';
