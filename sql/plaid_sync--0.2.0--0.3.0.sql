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

-- plaid_notify takes its body as text and parses it itself. Given jsonb, Postgres parsed the
-- body before the function ran, and its error for malformed JSON quoted the text (and the
-- access token in it) in the server log; a number past f64 or nesting past 128 failed with
-- XX000. Text is what an untyped argument now resolves to; the jsonb form stays, as a wrapper.
CREATE FUNCTION plaid_sync."plaid_notify"("body" TEXT) RETURNS bigint
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO plaid_sync, pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'plaid_notify_text_wrapper';
CREATE OR REPLACE FUNCTION plaid_sync.plaid_notify(body jsonb) RETURNS bigint
    LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = plaid_sync, pg_catalog, pg_temp
    AS $$ SELECT plaid_sync.plaid_notify(body::text) $$;
-- Whoever may call the jsonb form may call the text form, which their untyped calls now reach.
REVOKE ALL ON FUNCTION plaid_sync.plaid_notify(text) FROM PUBLIC;
DO $$
DECLARE grantee regrole;
BEGIN
    FOR grantee IN SELECT a.grantee::regrole
                     FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
                    WHERE p.oid = 'plaid_sync.plaid_notify(jsonb)'::regprocedure
                      AND a.privilege_type = 'EXECUTE' AND a.grantee <> 0 AND a.grantee <> p.proowner
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION plaid_sync.plaid_notify(text) TO %s', grantee);
    END LOOP;
END $$;

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
