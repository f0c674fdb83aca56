-- Runs after every object of the extension exists.

-- pg_dump keeps the rows of these tables (and the positions of their identity sequences).
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.items', '');
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.accounts', '');
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.balance_snapshots', '');
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.transactions', '');
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

-- Nobody runs anything until granted (the README lists the GRANTs an application role needs).
REVOKE ALL ON SCHEMA plaid_sync FROM PUBLIC;
DO $$
DECLARE f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'plaid_sync'::regnamespace
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END $$;

-- Functions that receive access tokens (or bodies that might wrongly hold one) keep their
-- statement out of the server log when they raise an error.
ALTER FUNCTION plaid_sync.plaid_notify_item_created(text, text, text) SET log_min_error_statement = panic;
ALTER FUNCTION plaid_sync.plaid_notify_item_updated(text, text) SET log_min_error_statement = panic;
ALTER FUNCTION plaid_sync.plaid_notify(jsonb) SET log_min_error_statement = panic;
ALTER FUNCTION plaid_sync.plaid_receive_webhook(text, text) SET log_min_error_statement = panic;
