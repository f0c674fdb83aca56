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

-- Whether a claimed job's Item has another job running, read without passing the Item's
-- pile of pending rows (a pile of forged webhooks for one Item made each claim quadratic).
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

-- Plaid's own freshness (/item/get's status), and the mark a purge leaves.
ALTER TABLE plaid_sync.items ADD COLUMN plaid_status jsonb;
ALTER TABLE plaid_sync.items ADD COLUMN purged_at timestamptz;

-- Transactions now goes through the products gate: an Item that synced transactions before
-- keeps syncing even if no /item/get recorded its products yet (announced before 0.2.0).
INSERT INTO plaid_sync.item_products (item_id, product, state, last_synced_at)
SELECT item_id, 'transactions', 'ok', last_synced_at FROM plaid_sync.items
 WHERE (transactions_cursor IS NOT NULL OR last_synced_at IS NOT NULL) AND status <> 'removed'
ON CONFLICT (item_id, product) DO NOTHING;

-- An ITEM: ERROR the user need not act on no longer pauses an Item: those 0.2.0 paused go
-- back to syncing, their error kept.
UPDATE plaid_sync.items
   SET status = CASE WHEN last_synced_at IS NULL THEN 'pending' ELSE 'healthy' END, updated_at = now()
 WHERE status = 'error'
   AND coalesce(error ->> 'error_code', '') NOT IN ('NO_ACCOUNTS', 'PRODUCTS_NOT_SUPPORTED');

-- item_health: Plaid's freshness beside the mirror's, and each product's consent and Plaid
-- freshness.
CREATE OR REPLACE VIEW plaid_sync.item_health AS
    SELECT i.item_id,
           i.status,
           i.institution_name,
           i.last_synced_at,
           now() - i.last_synced_at AS sync_lag,
           i.last_webhook_at,
           (SELECT count(*) FROM plaid_sync.inbox q
             WHERE q.item_id = i.item_id AND q.status IN ('pending', 'running')) AS pending_jobs,
           (SELECT count(*) FROM plaid_sync.inbox q
             WHERE q.item_id = i.item_id AND q.status = 'failed') AS failed_jobs,
           coalesce(i.error ->> 'error_code',
                    (SELECT q.last_error FROM plaid_sync.inbox q
                      WHERE q.item_id = i.item_id AND q.last_error IS NOT NULL
                      ORDER BY q.id DESC LIMIT 1)) AS last_error,
           (SELECT r.outcome FROM plaid_sync.sync_runs r
             WHERE r.item_id = i.item_id ORDER BY r.id DESC LIMIT 1) AS last_sync_outcome,
           i.initial_update_complete,
           i.historical_update_complete,
           (SELECT count(*) FROM plaid_sync.sync_rejects s
             WHERE s.item_id = i.item_id AND s.resolved_at IS NULL) AS rejected_transactions,
           (SELECT jsonb_object_agg(p.product, jsonb_build_object('state', p.state,
                       'last_synced_at', p.last_synced_at, 'last_error', p.last_error ->> 'error_code',
                       'consented_only', p.consented_only,
                       'plaid_last_successful_update', i.plaid_status -> p.product ->> 'last_successful_update'))
              FROM plaid_sync.item_products p WHERE p.item_id = i.item_id) AS products,
           (i.plaid_status -> 'transactions' ->> 'last_successful_update')::timestamptz AS plaid_last_successful_update,
           (i.plaid_status -> 'transactions' ->> 'last_failed_update')::timestamptz AS plaid_last_failed_update,
           (i.plaid_status -> 'last_webhook' ->> 'sent_at')::timestamptz AS plaid_last_webhook_at,
           i.plaid_status -> 'last_webhook' ->> 'code_sent' AS plaid_last_webhook_code,
           i.purged_at
      FROM plaid_sync.items i;

-- plaid_purge_item: a user's deletion request. Granted to whoever may remove Items.
CREATE FUNCTION plaid_sync."plaid_purge_item"("item_id" TEXT) RETURNS void
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO plaid_sync, pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'plaid_purge_item_wrapper';
REVOKE ALL ON FUNCTION plaid_sync.plaid_purge_item(text) FROM PUBLIC;
ALTER FUNCTION plaid_sync.plaid_purge_item(text) SET log_min_error_statement = panic;
DO $$
DECLARE grantee regrole;
BEGIN
    FOR grantee IN SELECT a.grantee::regrole
                     FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
                    WHERE p.oid = 'plaid_sync.plaid_remove_item(text, boolean)'::regprocedure
                      AND a.privilege_type = 'EXECUTE' AND a.grantee <> 0 AND a.grantee <> p.proowner
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION plaid_sync.plaid_purge_item(text) TO %s', grantee);
    END LOOP;
END $$;

-- Items the same user linked twice at the same bank (Plaid bills each): a live Item listed
-- against each older live one of the same client_user_id and institution whose live accounts
-- have the same types and masks, or that shares an account's persistent_account_id.
CREATE VIEW plaid_sync.duplicate_items AS
    WITH live AS (
        SELECT i.item_id, i.client_user_id, i.institution_id, i.created_at,
               (SELECT array_agg(coalesce(a.type, '') || ':' || coalesce(a.mask, '')
                                 ORDER BY coalesce(a.type, '') || ':' || coalesce(a.mask, '') COLLATE "C")
                  FROM plaid_sync.accounts a
                 WHERE a.item_id = i.item_id AND a.removed_at IS NULL) AS accounts,
               (SELECT array_agg(a.data ->> 'persistent_account_id')
                  FROM plaid_sync.accounts a
                 WHERE a.item_id = i.item_id AND a.removed_at IS NULL
                   AND a.data ->> 'persistent_account_id' IS NOT NULL) AS persistent_account_ids
          FROM plaid_sync.items i
         WHERE i.status <> 'removed' AND i.purged_at IS NULL
           AND i.client_user_id IS NOT NULL AND i.institution_id IS NOT NULL)
    SELECT n.item_id,
           o.item_id AS duplicate_of,
           n.client_user_id,
           n.institution_id,
           CASE WHEN n.accounts = o.accounts THEN 'account_masks'
                ELSE 'persistent_account_id' END AS matched_on,
           n.created_at,
           o.created_at AS duplicate_of_created_at
      FROM live n
      JOIN live o ON o.client_user_id = n.client_user_id
                 AND o.institution_id = n.institution_id
                 AND (o.created_at, o.item_id) < (n.created_at, n.item_id)
     WHERE n.accounts = o.accounts OR n.persistent_account_ids && o.persistent_account_ids;

-- Link from SQL (plaid_create_link_token, plaid_exchange_public_token): granted to whoever may
-- announce Items, which is what they do without handing the backend a token.
CREATE FUNCTION plaid_sync."plaid_create_link_token"(
	"client_user_id" TEXT,
	"products" TEXT[] DEFAULT ARRAY['transactions'],
	"item_id" TEXT DEFAULT NULL,
	"options" jsonb DEFAULT '{}'
) RETURNS jsonb
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO plaid_sync, pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'plaid_create_link_token_wrapper';
CREATE FUNCTION plaid_sync."plaid_exchange_public_token"(
	"public_token" TEXT,
	"client_user_id" TEXT DEFAULT NULL,
	"metadata" jsonb DEFAULT NULL
) RETURNS TEXT
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO plaid_sync, pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'plaid_exchange_public_token_wrapper';
REVOKE ALL ON FUNCTION plaid_sync.plaid_create_link_token(text, text[], text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION plaid_sync.plaid_exchange_public_token(text, text, jsonb) FROM PUBLIC;
ALTER FUNCTION plaid_sync.plaid_create_link_token(text, text[], text, jsonb) SET log_min_error_statement = panic;
ALTER FUNCTION plaid_sync.plaid_exchange_public_token(text, text, jsonb) SET log_min_error_statement = panic;
DO $$
DECLARE grantee regrole;
BEGIN
    FOR grantee IN SELECT a.grantee::regrole
                     FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
                    WHERE p.oid = 'plaid_sync.plaid_notify_item_created(text, text, text)'::regprocedure
                      AND a.privilege_type = 'EXECUTE' AND a.grantee <> 0 AND a.grantee <> p.proowner
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION plaid_sync.plaid_create_link_token(text, text[], text, jsonb) TO %s', grantee);
        EXECUTE format('GRANT EXECUTE ON FUNCTION plaid_sync.plaid_exchange_public_token(text, text, jsonb) TO %s', grantee);
    END LOOP;
END $$;

-- plaid_update_item_webhook's URL may be left out (plaid_sync.webhook_url is used). REPLACE
-- keeps the grants but not the settings, so the statement-logging guard is set again.
CREATE OR REPLACE FUNCTION plaid_sync."plaid_update_item_webhook"(
	"item_id" TEXT,
	"webhook_url" TEXT DEFAULT NULL
) RETURNS bigint
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO plaid_sync, pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'plaid_update_item_webhook_wrapper';
ALTER FUNCTION plaid_sync.plaid_update_item_webhook(text, text) SET log_min_error_statement = panic;

-- plaid_sync.history_retention deletes old sync runs, which checks each one for rejects.
CREATE INDEX sync_rejects_run_idx ON plaid_sync.sync_rejects (sync_run_id);
-- It reads only the runs (and paid calls) older than the retention, not every one the window
-- keeps (a full scan of sync_runs per maintenance round, at a million Items). started_at, set
-- once, keeps a run's updates HOT.
CREATE INDEX sync_runs_started_idx ON plaid_sync.sync_runs (started_at);
CREATE INDEX paid_calls_requested_at_idx ON plaid_sync.paid_calls (requested_at);

-- A sync's update of its Item stays HOT: the resync scan's index moves from last_synced_at
-- (which every sync changes) to its UTC day, and each page keeps room for new row versions
-- (existing pages get it as they are rewritten).
ALTER TABLE plaid_sync.items ADD COLUMN synced_on date;
UPDATE plaid_sync.items SET synced_on = (last_synced_at AT TIME ZONE 'UTC')::date WHERE last_synced_at IS NOT NULL;
DROP INDEX plaid_sync.items_last_synced_at_idx;
CREATE INDEX items_synced_on_idx ON plaid_sync.items (synced_on) WHERE status IN ('healthy', 'pending_expiration', 'pending_disconnect');
ALTER TABLE plaid_sync.items SET (fillfactor = 80);

-- Counters since the server started: jobs finished, Plaid calls, token decrypts.
CREATE FUNCTION plaid_sync."plaid_counters"() RETURNS TABLE ("counter" TEXT, "value" bigint)
STRICT VOLATILE SECURITY DEFINER PARALLEL SAFE
SET search_path TO @extschema@, pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'plaid_counters_wrapper';
REVOKE ALL ON FUNCTION plaid_sync."plaid_counters"() FROM PUBLIC;
ALTER FUNCTION plaid_sync.plaid_counters() SET log_min_error_statement = panic;

-- Notification webhooks to the backend (plaid_sync.notify_url): one row per event, written in
-- the transaction that makes the change, delivered by the workers at least once and in order
-- per Item (src/deliverer.rs, src/store/deliveries.rs).
CREATE TABLE plaid_sync.deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    item_id         text NOT NULL,
    event           jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    -- Also the lease of a delivery in flight: a worker that dies mid-send leaves it due again.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    last_error      text
);
CREATE INDEX deliveries_pending_idx ON plaid_sync.deliveries (item_id, id) WHERE status = 'pending';
CREATE INDEX deliveries_due_idx ON plaid_sync.deliveries (next_attempt_at) WHERE status = 'pending';
-- done_retention's deletes read the deliveries done before it, not every one it keeps.
CREATE INDEX deliveries_done_idx ON plaid_sync.deliveries (delivered_at) WHERE status = 'done';

-- Every event, a sync's or an Item's: NOTIFY plaid_sync, and a delivery when notify_url is set.
CREATE FUNCTION plaid_sync.send_event(item_id text, event jsonb) RETURNS void
    LANGUAGE sql SECURITY DEFINER SET search_path = plaid_sync, pg_catalog, pg_temp AS $$
    SELECT pg_notify('plaid_sync', event::text);
    INSERT INTO plaid_sync.deliveries (item_id, event)
    SELECT item_id, event WHERE coalesce(current_setting('plaid_sync.notify_url', true), '') <> '';
$$;
-- An Item's events, sent as the change notices are (send_event): its status
-- changed (from, to, Plaid's error code, and for pending_expiration the consent's end), Plaid
-- has new accounts for it, or it was purged. NOTIFY is sent when the change commits. On one
-- server the trigger below sees every statement that changes an Item, whichever code path or
-- role runs it; on a distributed install Citus would run it on the worker holding the shard,
-- so the statements plaid_sync runs call send_item_events themselves (src/store/item_events.rs).
-- What of an Item its events compare: the same for the trigger and for the statements.
CREATE FUNCTION plaid_sync.item_event_state(status text, error jsonb, consent_expiration_time timestamptz,
                                            data jsonb, purged_at timestamptz) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY DEFINER
    SET search_path = plaid_sync, pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object('status', status, 'error_code', error ->> 'error_code',
                              'consent_expiration_time', consent_expiration_time,
                              'new_accounts_available', data ->> 'new_accounts_available',
                              'purged', purged_at IS NOT NULL)
$$;
CREATE FUNCTION plaid_sync.send_item_events(item_id text, old jsonb, new jsonb) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = plaid_sync, pg_catalog, pg_temp AS $$
BEGIN
    IF new ->> 'status' IS DISTINCT FROM old ->> 'status' THEN
        PERFORM plaid_sync.send_event(item_id, jsonb_build_object('type', 'item', 'item_id', item_id,
            'event', 'status', 'from', old ->> 'status', 'to', new ->> 'status',
            'error_code', new ->> 'error_code',
            'consent_expiration_time', CASE WHEN new ->> 'status' = 'pending_expiration'
                                            THEN new -> 'consent_expiration_time' END));
    END IF;
    IF new ->> 'new_accounts_available' = 'true'
       AND (old ->> 'new_accounts_available') IS DISTINCT FROM 'true' THEN
        PERFORM plaid_sync.send_event(item_id, jsonb_build_object('type', 'item', 'item_id', item_id,
            'event', 'new_accounts_available'));
    END IF;
    IF (new ->> 'purged')::boolean AND NOT (old ->> 'purged')::boolean THEN
        PERFORM plaid_sync.send_event(item_id, jsonb_build_object('type', 'item', 'item_id', item_id,
            'event', 'purged'));
    END IF;
END $$;
CREATE FUNCTION plaid_sync.item_events() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = plaid_sync, pg_catalog, pg_temp AS $$
BEGIN
    PERFORM plaid_sync.send_item_events(NEW.item_id,
        plaid_sync.item_event_state(OLD.status, OLD.error, OLD.consent_expiration_time, OLD.data, OLD.purged_at),
        plaid_sync.item_event_state(NEW.status, NEW.error, NEW.consent_expiration_time, NEW.data, NEW.purged_at));
    RETURN NULL;
END $$;
-- A sync's own update of its Item (cursor, last_synced_at) changes none of these: the WHEN
-- test keeps the function from being called at all.
CREATE TRIGGER item_events AFTER UPDATE ON plaid_sync.items FOR EACH ROW
    WHEN (NEW.status IS DISTINCT FROM OLD.status
          OR (NEW.purged_at IS NOT NULL AND OLD.purged_at IS NULL)
          OR (NEW.data ->> 'new_accounts_available') IS DISTINCT FROM (OLD.data ->> 'new_accounts_available'))
    EXECUTE FUNCTION plaid_sync.item_events();
REVOKE ALL ON FUNCTION plaid_sync.item_events() FROM PUBLIC;
REVOKE ALL ON FUNCTION plaid_sync.send_event(text, jsonb) FROM PUBLIC;
ALTER FUNCTION plaid_sync.send_event(text, jsonb) SET log_min_error_statement = panic;
ALTER FUNCTION plaid_sync.item_events() SET log_min_error_statement = panic;
REVOKE ALL ON FUNCTION plaid_sync.send_item_events(text, jsonb, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION plaid_sync.item_event_state(text, jsonb, timestamptz, jsonb, timestamptz) FROM PUBLIC;
ALTER FUNCTION plaid_sync.send_item_events(text, jsonb, jsonb) SET log_min_error_statement = panic;
ALTER FUNCTION plaid_sync.item_event_state(text, jsonb, timestamptz, jsonb, timestamptz) SET log_min_error_statement = panic;
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.deliveries', '');
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.deliveries_id_seq', '');

-- Notification webhooks: send one again.
CREATE FUNCTION plaid_sync."plaid_redeliver"("id" bigint) RETURNS void
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO @extschema@, pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'plaid_redeliver_wrapper';
REVOKE ALL ON FUNCTION plaid_sync."plaid_redeliver"(bigint) FROM PUBLIC;
ALTER FUNCTION plaid_sync.plaid_redeliver(bigint) SET log_min_error_statement = panic;

-- Every key of an Item's rows holds item_id, so one Item's rows can live together on one node
-- of a distributed install (plaid_sync.distribute()): Citus wants each primary key and foreign
-- key between distributed tables to include the column that places the rows. The leading
-- column stays the same, so every lookup the index served it still serves. Staged pages lose
-- their foreign key to sync_runs: they stay on the workers' node while runs go with their Item,
-- and whoever deletes runs deletes their pages (src/store/runs.rs).
ALTER TABLE plaid_sync.sync_pages DROP CONSTRAINT sync_pages_sync_run_id_fkey;
ALTER TABLE plaid_sync.sync_rejects DROP CONSTRAINT sync_rejects_sync_run_id_fkey;
ALTER TABLE plaid_sync.balance_snapshots DROP CONSTRAINT balance_snapshots_account_id_fkey;
ALTER TABLE plaid_sync.accounts DROP CONSTRAINT accounts_pkey,
    ADD CONSTRAINT accounts_pkey PRIMARY KEY (account_id, item_id);
ALTER TABLE plaid_sync.balance_snapshots DROP CONSTRAINT balance_snapshots_pkey,
    ADD CONSTRAINT balance_snapshots_pkey PRIMARY KEY (id, item_id),
    ADD CONSTRAINT balance_snapshots_account_id_fkey FOREIGN KEY (account_id, item_id)
        REFERENCES plaid_sync.accounts (account_id, item_id);
ALTER TABLE plaid_sync.transaction_rows DROP CONSTRAINT transactions_pkey,
    ADD CONSTRAINT transactions_pkey PRIMARY KEY (transaction_id, item_id);
ALTER TABLE plaid_sync.sync_runs DROP CONSTRAINT sync_runs_pkey,
    ADD CONSTRAINT sync_runs_pkey PRIMARY KEY (id, item_id);
ALTER TABLE plaid_sync.sync_rejects DROP CONSTRAINT sync_rejects_pkey,
    ADD CONSTRAINT sync_rejects_pkey PRIMARY KEY (id, item_id),
    ADD CONSTRAINT sync_rejects_sync_run_id_fkey FOREIGN KEY (sync_run_id, item_id)
        REFERENCES plaid_sync.sync_runs (id, item_id);
ALTER TABLE plaid_sync.recurring_streams DROP CONSTRAINT recurring_streams_pkey,
    ADD CONSTRAINT recurring_streams_pkey PRIMARY KEY (stream_id, item_id);
ALTER TABLE plaid_sync.liabilities DROP CONSTRAINT liabilities_pkey,
    ADD CONSTRAINT liabilities_pkey PRIMARY KEY (account_id, kind, item_id);
ALTER TABLE plaid_sync.holdings DROP CONSTRAINT holdings_pkey,
    ADD CONSTRAINT holdings_pkey PRIMARY KEY (account_id, security_id, item_id);
ALTER TABLE plaid_sync.investment_transactions DROP CONSTRAINT investment_transactions_pkey,
    ADD CONSTRAINT investment_transactions_pkey PRIMARY KEY (investment_transaction_id, item_id);

-- An Item's transactions by item_id alone (the view filtered by Item, what applications ask
-- first) read the index, not the whole table: it covered live rows only, so such a query
-- scanned every row (a tenth of a second at 600,000 rows). Removed rows are few, so indexing
-- them costs writes next to nothing. Rebuilt here: a large table takes a while.
DROP INDEX plaid_sync.transactions_item_idx;
CREATE INDEX transactions_item_idx ON plaid_sync.transaction_rows (item_id);

-- plaid_sync on a Citus cluster (sql/distribute.sql).
-- Citus-placed tables in the order they are distributed: items first, as the others
-- reference it and are co-located with it.
CREATE FUNCTION plaid_sync.distributed_tables() RETURNS TABLE (name regclass, placement text)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY DEFINER
    SET search_path = plaid_sync, pg_catalog, pg_temp AS $$
    VALUES ('plaid_sync.items'::regclass, 'by item_id'),
           ('plaid_sync.accounts', 'by item_id'),
           ('plaid_sync.balance_snapshots', 'by item_id'),
           ('plaid_sync.transaction_rows', 'by item_id'),
           ('plaid_sync.sync_runs', 'by item_id'),
           ('plaid_sync.sync_rejects', 'by item_id'),
           ('plaid_sync.item_products', 'by item_id'),
           ('plaid_sync.recurring_streams', 'by item_id'),
           ('plaid_sync.liabilities', 'by item_id'),
           ('plaid_sync.holdings', 'by item_id'),
           ('plaid_sync.investment_transactions', 'by item_id'),
           ('plaid_sync.institutions', 'reference'),
           ('plaid_sync.securities', 'reference'),
           ('plaid_sync.webhook_keys', 'reference')
$$;

CREATE FUNCTION plaid_sync.distribute(shard_count integer DEFAULT NULL) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = plaid_sync, pg_catalog, pg_temp AS $$
DECLARE
    t record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'plaid_sync.distribute() needs Citus in this database'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'CREATE EXTENSION citus, add the worker nodes, then call it again.';
    END IF;
    IF shard_count IS NOT NULL AND shard_count NOT BETWEEN 1 AND 64000 THEN
        RAISE EXCEPTION 'shard_count must be between 1 and 64000, not %', shard_count
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT citus_is_coordinator() THEN
        RAISE EXCEPTION 'plaid_sync.distribute() runs on the Citus coordinator'
            USING ERRCODE = 'feature_not_supported';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'plaid_sync.items'::regclass) THEN
        RAISE NOTICE 'plaid_sync is already distributed';
        RETURN;
    END IF;
    -- Citus would run the trigger on the worker that holds the shard, away from the deliveries
    -- queue and the listeners of NOTIFY: the statements that change an Item send its events
    -- instead (src/store/item_events.rs).
    DROP TRIGGER item_events ON plaid_sync.items;
    -- A local table may not reference a distributed one: paid_calls stays with the queue.
    ALTER TABLE plaid_sync.paid_calls DROP CONSTRAINT IF EXISTS paid_calls_item_id_fkey;
    FOR t IN SELECT * FROM plaid_sync.distributed_tables() LOOP
        IF t.placement = 'reference' THEN
            PERFORM create_reference_table(t.name);
        ELSIF t.name = 'plaid_sync.items'::regclass THEN
            PERFORM create_distributed_table(t.name, 'item_id',
                shard_count => coalesce(shard_count, current_setting('citus.shard_count')::integer));
        ELSE
            PERFORM create_distributed_table(t.name, 'item_id', colocate_with => 'plaid_sync.items');
        END IF;
    END LOOP;
    -- The rows are now in the shards; the coordinator's copies would only take space.
    FOR t IN SELECT * FROM plaid_sync.distributed_tables() LOOP
        PERFORM truncate_local_data_after_distributing_table(t.name);
    END LOOP;
END $$;
REVOKE ALL ON FUNCTION plaid_sync.distributed_tables() FROM PUBLIC;
REVOKE ALL ON FUNCTION plaid_sync.distribute(integer) FROM PUBLIC;
ALTER FUNCTION plaid_sync.distributed_tables() SET log_min_error_statement = panic;
ALTER FUNCTION plaid_sync.distribute(integer) SET log_min_error_statement = panic;
