-- plaid_sync 0.2.0 -> 0.3.0, run by ALTER EXTENSION plaid_sync UPDATE. Hand-written; once 0.3.0
-- is released (RELEASES) this file is frozen: later changes go into a new script.
-- Every change leaves the catalog as a fresh 0.3.0 install has it (tests/upgrade compares).

-- A webhook's replay window is measured from the clock at receipt, not from the start of the
-- caller's transaction (which can be held open).
ALTER TABLE plaid_sync.inbox ALTER COLUMN received_at SET DEFAULT clock_timestamp();

-- Jobs run by plaid_process_inbox behave as on the workers, whatever the caller's session set.
ALTER FUNCTION plaid_sync.plaid_process_inbox(integer)
    SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC'
    SET extra_float_digits = 1 SET bytea_output = 'hex';

-- The Items with a job running, which a claim now reads once instead of once per row it
-- skips (a pile of forged webhooks for one Item made each claim quadratic).
CREATE INDEX inbox_running_idx ON plaid_sync.inbox (item_id) WHERE status = 'running';

-- No function of ours writes its failing statement to the server log (0.2.0 had four).
DO $$
DECLARE f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'plaid_sync'::regnamespace
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET log_min_error_statement = panic', f);
    END LOOP;
END $$;
