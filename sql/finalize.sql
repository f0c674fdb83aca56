-- Runs after every object of the extension exists.

-- Progress of the whole server's syncing: Items, jobs due by lane, Plaid calls against their
-- limits, 429s, and when the backlog of first syncs should be done at the recent pace.
CREATE VIEW plaid_sync.sync_progress AS
    WITH i AS (
        SELECT count(*) FILTER (WHERE status <> 'removed') AS items_announced,
               count(*) FILTER (WHERE status <> 'removed' AND last_synced_at IS NULL) AS items_never_synced,
               count(*) FILTER (WHERE last_synced_at IS NOT NULL) AS items_synced
          FROM plaid_sync.items),
    q AS (
        SELECT count(*) FILTER (WHERE status = 'pending' AND run_after <= now() AND lane = 0) AS fresh_jobs_due,
               count(*) FILTER (WHERE status = 'pending' AND run_after <= now() AND lane = 1) AS backlog_jobs_due,
               count(*) FILTER (WHERE status = 'running') AS jobs_running
          FROM plaid_sync.inbox WHERE status IN ('pending', 'running')),
    r AS (
        SELECT sum(in_flight)::bigint AS calls_in_flight,
               sum(throttled_last_hour)::bigint AS throttled_last_hour,
               jsonb_object_agg(endpoint, jsonb_build_object(
                   'calls_last_minute', calls_last_minute, 'per_client_limit', per_client_limit,
                   'per_item_limit', per_item_limit, 'rate_share', rate_share))
                   FILTER (WHERE calls_last_minute > 0 OR per_client_limit IS NOT NULL) AS calls_per_minute
          FROM plaid_sync.plaid_rate_status()),
    pace AS (
        SELECT count(*) AS first_syncs_5min FROM plaid_sync.sync_runs
         WHERE trigger = 'item_refresh' AND outcome = 'ok' AND finished_at > now() - interval '5 minutes')
    SELECT i.items_announced, i.items_never_synced, i.items_synced,
           q.fresh_jobs_due, q.backlog_jobs_due, q.jobs_running,
           r.calls_in_flight, r.calls_per_minute, r.throttled_last_hour,
           CASE WHEN i.items_never_synced = 0 THEN interval '0'
                WHEN pace.first_syncs_5min > 0
                THEN interval '5 minutes' * (i.items_never_synced::float8 / pace.first_syncs_5min) END AS backlog_eta
      FROM i, q, r, pace;

-- pg_dump keeps the rows of these tables (and the positions of their identity sequences).
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.items', '');
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.accounts', '');
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.balance_snapshots', '');
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.transaction_rows', '');
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.inbox', '');
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.sync_runs', '');
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.institutions', '');
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.webhook_keys', '');
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.balance_snapshots_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.inbox_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.sync_runs_id_seq', '');
-- Added in 0.2.0 (last, in the order the upgrade script registers them).
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.sync_rejects', '');
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.sync_rejects_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.item_products', '');
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.paid_calls', '');
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.paid_calls_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.recurring_streams', '');
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.liabilities', '');
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.securities', '');
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.holdings', '');
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.investment_transactions', '');
-- Added in 0.3.0.
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.deliveries', '');
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.deliveries_id_seq', '');

-- Jobs run by plaid_process_inbox behave as on the workers, whatever the caller's session set
-- (a German DateStyle once reached Plaid as a date); the workers pin the same for theirs.
ALTER FUNCTION plaid_sync.plaid_process_inbox(integer)
    SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC'
    SET extra_float_digits = 1 SET bytea_output = 'hex';

-- Nobody runs anything until granted (the README lists the GRANTs an application role needs),
-- and no function writes its failing statement to the server log: a token in it (or passed
-- in the wrong argument) would be there.
REVOKE ALL ON SCHEMA plaid_sync FROM PUBLIC;
DO $$
DECLARE f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'plaid_sync'::regnamespace
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('ALTER FUNCTION %s SET log_min_error_statement = panic', f);
    END LOOP;
END $$;
