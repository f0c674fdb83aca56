-- plaid_sync tables and views. Loaded first (bootstrap); the SQL functions come after, and
-- sql/finalize.sql last. Column names follow Plaid's field names; every data row also keeps
-- Plaid's whole object in `data` so nothing Plaid adds later is lost. Money is numeric.

-- One database per server: while the workers run (preloaded with plaid_sync.workers > 0)
-- they serve plaid_sync.database alone, so the extension belongs there and nowhere else.
-- (With no workers, jobs run through plaid_process_inbox() in whichever database calls it.)
DO $$
BEGIN
    IF coalesce(nullif(current_setting('plaid_sync.workers', true), ''), '0')::int > 0
       AND current_setting('plaid_sync.database', true) IS DISTINCT FROM current_database() THEN
        RAISE EXCEPTION 'plaid_sync''s workers serve database "%", so the extension cannot be created in "%"',
                        current_setting('plaid_sync.database', true), current_database()
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('Create it in database "%s", or set plaid_sync.database = ''%s'' in postgresql.conf and restart the server.',
                                current_setting('plaid_sync.database', true), current_database());
    END IF;
END $$;

-- Closed sets of values are domains, not CHECK constraints: a domain's check is parsed once
-- per backend (type cache), a CHECK constraint at every statement execution, which on the
-- entry points' single-row writes was a fifth of the cost. Columns still read as text.
CREATE DOMAIN plaid_sync.item_status AS text CHECK (VALUE IN (
    'pending', 'healthy', 'login_required', 'pending_expiration', 'pending_disconnect',
    'revoked', 'invalid_token', 'error', 'removed'));
CREATE DOMAIN plaid_sync.environment AS text CHECK (VALUE IN ('sandbox', 'production'));
CREATE DOMAIN plaid_sync.inbox_source AS text CHECK (VALUE IN ('backend', 'plaid'));
CREATE DOMAIN plaid_sync.job_status AS text CHECK (VALUE IN ('pending', 'running', 'done', 'failed', 'rejected'));
CREATE DOMAIN plaid_sync.sync_outcome AS text CHECK (VALUE IN ('running', 'ok', 'retry', 'item_error', 'failed'));

CREATE TABLE plaid_sync.items (
    item_id                    text PRIMARY KEY,
    status                     plaid_sync.item_status NOT NULL DEFAULT 'pending',
    client_user_id             text,
    institution_id             text,
    institution_name           text,
    -- The envelope of src/crypto.rs (documented in the README); NULL once the Item is removed.
    access_token_encrypted     bytea,
    environment                plaid_sync.environment NOT NULL,
    transactions_cursor        text,
    error                      jsonb,
    consent_expiration_time    timestamptz,
    webhook                    text,
    last_synced_at             timestamptz,
    last_webhook_at            timestamptz,
    initial_update_complete    boolean NOT NULL DEFAULT false,
    historical_update_complete boolean NOT NULL DEFAULT false,
    data                       jsonb,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now(),
    -- /item/get's `status`: Plaid's own last successful and failed update per product, and
    -- its last webhook (item_health shows them beside the mirror's last sync).
    plaid_status               jsonb,
    -- Set by plaid_purge_item: the row keeps only the id (a late webhook is then ignored).
    purged_at                  timestamptz,
    -- The UTC day of last_synced_at: what the resync scan's index holds. An index on
    -- last_synced_at itself would make every sync's update of the row a non-HOT one (a new
    -- index entry and a dead tuple per sync); this changes once a day at most.
    synced_on                  date
);
-- Room on each page for the new versions of the row each sync writes (HOT updates).
ALTER TABLE plaid_sync.items SET (fillfactor = 80);
-- The self-healing scan looks for Items whose last sync is old.
CREATE INDEX items_synced_on_idx ON plaid_sync.items (synced_on) WHERE status IN ('healthy', 'pending_expiration', 'pending_disconnect');
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

CREATE TABLE plaid_sync.accounts (
    account_id               text NOT NULL,
    item_id                  text NOT NULL REFERENCES plaid_sync.items (item_id),
    name                     text,
    official_name            text,
    mask                     text,
    type                     text,
    subtype                  text,
    balance_available        numeric,
    balance_current          numeric,
    balance_limit            numeric,
    iso_currency_code        text,
    unofficial_currency_code text,
    data                     jsonb NOT NULL,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    removed_at               timestamptz,
    -- Plaid's object exactly as sent, only when it held a character jsonb refuses (NUL, a lone
    -- surrogate): `data` then has U+FFFD in its place (src/plaid/storable.rs).
    raw_data                 text,
    -- Every key of an Item's rows holds item_id, so the rows of one Item can live together on
    -- one node of a distributed install (plaid_sync.distribute(), src/api/distribute.rs).
    CONSTRAINT accounts_pkey PRIMARY KEY (account_id, item_id)
);
CREATE INDEX accounts_item_id_idx ON plaid_sync.accounts (item_id);

CREATE TABLE plaid_sync.balance_snapshots (
    id                       bigint GENERATED ALWAYS AS IDENTITY,
    account_id               text NOT NULL,
    item_id                  text NOT NULL REFERENCES plaid_sync.items (item_id),
    balance_available        numeric,
    balance_current          numeric,
    balance_limit            numeric,
    iso_currency_code        text,
    unofficial_currency_code text,
    observed_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT balance_snapshots_pkey PRIMARY KEY (id, item_id),
    CONSTRAINT balance_snapshots_account_id_fkey FOREIGN KEY (account_id, item_id)
        REFERENCES plaid_sync.accounts (account_id, item_id)
);
CREATE INDEX balance_snapshots_account_idx ON plaid_sync.balance_snapshots (account_id, observed_at);

-- Transactions as stored. Plaid's object is kept lean (src/plaid/lean.rs): `rest` holds what
-- neither a typed column nor the codec's template holds, `absent` the keys the object lacked.
-- Read them through the view plaid_sync.transactions, whose `data` is Plaid's object exactly.
CREATE TABLE plaid_sync.transaction_rows (
    -- Constraint and index names are 0.1.0's, from when this table was `transactions`.
    transaction_id            text NOT NULL,
    item_id                   text NOT NULL
                              CONSTRAINT transactions_item_id_fkey REFERENCES plaid_sync.items (item_id),
    account_id                text NOT NULL,
    amount                    numeric NOT NULL,
    iso_currency_code         text,
    unofficial_currency_code  text,
    date                      date,
    authorized_date           date,
    datetime                  timestamptz,
    name                      text,
    merchant_name             text,
    payment_channel           text,
    pending                   boolean NOT NULL DEFAULT false,
    pending_transaction_id    text,
    category                  text[],
    personal_finance_category jsonb,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    -- NULL while live; removed rows are kept so annotations keyed by transaction_id survive.
    removed_at                timestamptz,
    -- As for accounts: Plaid's object exactly as sent when `data` had to replace a character.
    raw_data                  text,
    rest                      jsonb NOT NULL,
    absent                    text[],
    codec                     smallint NOT NULL DEFAULT 1,
    CONSTRAINT transactions_pkey PRIMARY KEY (transaction_id, item_id)
);
-- An Item's rows: the view filtered by item_id (what applications ask first), the worker's
-- removals and the backfill's sweep. Removed rows too, or a query without removed_at IS NULL
-- would scan the table.
CREATE INDEX transactions_item_idx ON plaid_sync.transaction_rows (item_id);
-- An account's transactions by date: what applications ask most (README, "Read your data").
CREATE INDEX transactions_account_date_idx ON plaid_sync.transaction_rows (account_id, date);
-- The pending row a posted one replaces (the apply's posted_over), tiny: pending rows only.
CREATE INDEX transactions_pending_id_idx ON plaid_sync.transaction_rows (pending_transaction_id) WHERE pending_transaction_id IS NOT NULL;

-- The template's and the typed columns' keys that `o` lacks: what a stored row marks absent.
CREATE FUNCTION plaid_sync.transaction_absent(o jsonb) RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT SECURITY DEFINER
    SET search_path = plaid_sync, pg_catalog, pg_temp AS $$
    SELECT ARRAY(SELECT k FROM jsonb_object_keys('{"account_owner": null, "authorized_datetime": null, "check_number": null, "counterparties": [], "location": {"address": null, "city": null, "country": null, "lat": null, "lon": null, "postal_code": null, "region": null, "store_number": null}, "logo_url": null, "merchant_entity_id": null, "payment_meta": {"by_order_of": null, "payee": null, "payer": null, "payment_method": null, "payment_processor": null, "ppd_id": null, "reason": null, "reference_number": null}, "transaction_code": null, "website": null}'::jsonb
                     || '{"account_id": 0, "amount": 0, "authorized_date": 0, "category": 0, "date": 0,
                          "datetime": 0, "iso_currency_code": 0, "merchant_name": 0, "name": 0,
                          "payment_channel": 0, "pending": 0, "pending_transaction_id": 0,
                          "personal_finance_category": 0, "transaction_id": 0,
                          "unofficial_currency_code": 0}') k
                  WHERE NOT o ? k ORDER BY k) $$;

-- Every transaction, with Plaid's object rebuilt in `data`.
CREATE VIEW plaid_sync.transactions AS
    SELECT transaction_id, item_id, account_id, amount, iso_currency_code, unofficial_currency_code,
           date, authorized_date, datetime, name, merchant_name, payment_channel, pending,
           pending_transaction_id, category, personal_finance_category,
           -- Codec 1's template is src/plaid/lean.rs TEMPLATE (frozen; a test checks).
           ((CASE codec WHEN 1 THEN '{"account_owner": null, "authorized_datetime": null, "check_number": null, "counterparties": [], "location": {"address": null, "city": null, "country": null, "lat": null, "lon": null, "postal_code": null, "region": null, "store_number": null}, "logo_url": null, "merchant_entity_id": null, "payment_meta": {"by_order_of": null, "payee": null, "payer": null, "payment_method": null, "payment_processor": null, "ppd_id": null, "reason": null, "reference_number": null}, "transaction_code": null, "website": null}'::jsonb END || jsonb_build_object(
                 'transaction_id', transaction_id, 'account_id', account_id, 'amount', amount,
                 'iso_currency_code', iso_currency_code,
                 'unofficial_currency_code', unofficial_currency_code, 'date', date,
                 'authorized_date', authorized_date,
                 'datetime', to_char(datetime AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                 'name', name, 'merchant_name', merchant_name, 'payment_channel', payment_channel,
                 'pending', pending, 'pending_transaction_id', pending_transaction_id,
                 'category', category, 'personal_finance_category', personal_finance_category))
             - coalesce(absent, '{}')) || rest AS data,
           created_at, updated_at, removed_at, raw_data
      FROM plaid_sync.transaction_rows;
ALTER VIEW plaid_sync.transactions ALTER COLUMN pending SET DEFAULT false;
ALTER VIEW plaid_sync.transactions ALTER COLUMN created_at SET DEFAULT now();
ALTER VIEW plaid_sync.transactions ALTER COLUMN updated_at SET DEFAULT now();

-- Writes through the view (the workers write transaction_rows): `data` is stored whole, with
-- the keys it lacks marked absent, so it reads back exactly as written.
CREATE FUNCTION plaid_sync.transactions_write() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = plaid_sync, pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        DELETE FROM plaid_sync.transaction_rows WHERE transaction_id = OLD.transaction_id;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    INSERT INTO plaid_sync.transaction_rows (transaction_id, item_id, account_id, amount,
        iso_currency_code, unofficial_currency_code, date, authorized_date, datetime, name,
        merchant_name, payment_channel, pending, pending_transaction_id, category,
        personal_finance_category, created_at, updated_at, removed_at, raw_data, rest, absent)
    VALUES (NEW.transaction_id, NEW.item_id, NEW.account_id, NEW.amount, NEW.iso_currency_code,
        NEW.unofficial_currency_code, NEW.date, NEW.authorized_date, NEW.datetime, NEW.name,
        NEW.merchant_name, NEW.payment_channel, NEW.pending, NEW.pending_transaction_id,
        NEW.category, NEW.personal_finance_category, NEW.created_at, NEW.updated_at,
        NEW.removed_at, NEW.raw_data, NEW.data, plaid_sync.transaction_absent(NEW.data));
    RETURN NEW;
END $$;
CREATE TRIGGER transactions_write INSTEAD OF INSERT OR UPDATE OR DELETE ON plaid_sync.transactions
    FOR EACH ROW EXECUTE FUNCTION plaid_sync.transactions_write();

CREATE TABLE plaid_sync.inbox (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The clock at receipt, not the transaction's start: the 5-minute replay window of a
    -- webhook's iat is measured from here, and a caller's transaction can be held open.
    received_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    source       plaid_sync.inbox_source NOT NULL,
    webhook_type text NOT NULL,
    webhook_code text NOT NULL,
    item_id      text,
    -- Never an access token: backend notices are stored without it, and Plaid bodies with one
    -- are refused. A Plaid webhook's body is NULL until the worker verifies it: only raw_body
    -- is written on receipt, and one that is rejected keeps a NULL body. (No CHECK says so: a
    -- CHECK is compiled anew for every INSERT through a kept plan, 3% of this entry point.)
    body         jsonb DEFAULT '{}',
    -- Plaid-origin rows only: the exact bytes the signature covers, and the JWT header.
    raw_body     text,
    plaid_verification text,
    verification text,
    status       plaid_sync.job_status NOT NULL DEFAULT 'pending',
    attempts     integer NOT NULL DEFAULT 0,
    run_after    timestamptz NOT NULL DEFAULT now(),
    locked_until timestamptz,
    locked_by    integer,
    last_error   text,
    finished_at  timestamptz,
    -- 0: fresh work (webhooks, notices for Items that synced before); 1: the backlog (first
    -- syncs of a migration, scheduled resyncs). Fresh work is claimed first.
    lane         smallint NOT NULL DEFAULT 0
);
-- Workers claim due rows lane by lane, in run_after order.
CREATE INDEX inbox_due_idx ON plaid_sync.inbox (lane, run_after, id) WHERE status IN ('pending', 'running');
-- One job per Item at a time; coalescing looks up an Item's open rows, and so does the fold
-- of a repeated backend notice (src/inbox.rs). No unique index does that fold: every index
-- here is paid by every notice and webhook, and the Item's row lock already orders them.
CREATE INDEX inbox_item_open_idx ON plaid_sync.inbox (item_id) WHERE status IN ('pending', 'running');
-- Whether the claimed job's Item has another job running (src/runner.rs, lock_item), read
-- without passing the Item's pile of pending rows. Rows enter it only when claimed, so a
-- notice or webhook never pays for it.
CREATE INDEX inbox_running_idx ON plaid_sync.inbox (item_id) WHERE status = 'running';
-- Retention deletes old done and rejected rows (a flood of forged webhooks cannot fill the disk).
CREATE INDEX inbox_finished_idx ON plaid_sync.inbox (finished_at) WHERE status IN ('done', 'rejected');

CREATE TABLE plaid_sync.sync_runs (
    id          bigint GENERATED ALWAYS AS IDENTITY,
    item_id     text NOT NULL REFERENCES plaid_sync.items (item_id),
    inbox_id    bigint,
    trigger     text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    pages       integer NOT NULL DEFAULT 0,
    restarts    integer NOT NULL DEFAULT 0,
    added       integer NOT NULL DEFAULT 0,
    modified    integer NOT NULL DEFAULT 0,
    removed     integer NOT NULL DEFAULT 0,
    request_ids text[] NOT NULL DEFAULT '{}',
    outcome     plaid_sync.sync_outcome NOT NULL DEFAULT 'running',
    error       text,
    -- Transactions (or a page's accounts) the apply had to leave out: see sync_rejects.
    rejected    integer NOT NULL DEFAULT 0,
    -- What was synced: transactions, recurring_transactions, … (Plaid's product names).
    product     text NOT NULL DEFAULT 'transactions',
    -- How a transactions sync was applied: 'copy' (a run that only added new transactions,
    -- loaded by COPY) or 'upsert' (the SQL apply); NULL when nothing was applied.
    applied_by  text,
    CONSTRAINT sync_runs_pkey PRIMARY KEY (id, item_id)
);
CREATE INDEX sync_runs_item_idx ON plaid_sync.sync_runs (item_id, started_at DESC);
-- history_retention's deletes read only the runs older than the retention (src/store/runs.rs,
-- `prune`); started_at, set once, keeps a run's updates HOT.
CREATE INDEX sync_runs_started_idx ON plaid_sync.sync_runs (started_at);

-- Pages of a sync in progress, written as they arrive so memory stays bounded and no
-- transaction is open during a Plaid call; applied (and deleted) in one transaction at the end.
-- Unlogged and uncompressed: a page lives for seconds, and after a crash its run is abandoned
-- and the sync starts again from the stored cursor, so WAL and compression would be wasted.
CREATE UNLOGGED TABLE plaid_sync.sync_pages (
    -- No foreign key to sync_runs: pages stay on the node the workers run on, runs go with
    -- their Item (plaid_sync.distribute()); whoever deletes a run deletes its pages.
    sync_run_id bigint NOT NULL,
    page        integer NOT NULL,
    body        jsonb,
    request_id  text,
    -- Objects that held characters jsonb refuses, as Plaid sent them:
    -- {"transactions": {id: text}, "accounts": {id: text}}; NULL for almost every page.
    raw_objects jsonb,
    -- The page's new transactions as COPY text for transaction_rows (src/plaid/copy_text.rs),
    -- when the page only adds transactions that fit the typed columns. Such a page keeps its
    -- body as text, parsed only if the run is applied by SQL after all.
    copy_rows   text,
    body_text   text,
    PRIMARY KEY (sync_run_id, page)
);
ALTER TABLE plaid_sync.sync_pages ALTER COLUMN body SET STORAGE EXTERNAL;
ALTER TABLE plaid_sync.sync_pages ALTER COLUMN copy_rows SET STORAGE EXTERNAL;
ALTER TABLE plaid_sync.sync_pages ALTER COLUMN body_text SET STORAGE EXTERNAL;
ALTER TABLE plaid_sync.sync_pages ADD CONSTRAINT sync_pages_one_body CHECK ((body IS NULL) <> (body_text IS NULL));

-- What a sync could not apply (a bug on our side, or an object no code could read): the rest
-- of the sync is applied without it, the cursor advances, and the row stays here with the
-- page's request_id (quote it to Plaid support) until a later sync applies that transaction.
CREATE TABLE plaid_sync.sync_rejects (
    id             bigint GENERATED ALWAYS AS IDENTITY,
    sync_run_id    bigint NOT NULL,
    item_id        text NOT NULL REFERENCES plaid_sync.items (item_id),
    -- NULL when the page's accounts were left out.
    transaction_id text,
    page           integer,
    request_id     text,
    error          text NOT NULL,
    -- The object as the page had it (jsonb text).
    data           text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    resolved_at    timestamptz,
    CONSTRAINT sync_rejects_pkey PRIMARY KEY (id, item_id),
    CONSTRAINT sync_rejects_sync_run_id_fkey FOREIGN KEY (sync_run_id, item_id)
        REFERENCES plaid_sync.sync_runs (id, item_id)
);
CREATE INDEX sync_rejects_open_idx ON plaid_sync.sync_rejects (item_id) WHERE resolved_at IS NULL;
-- Deleting an old sync run checks for its rejects (plaid_sync.history_retention).
CREATE INDEX sync_rejects_run_idx ON plaid_sync.sync_rejects (sync_run_id);

-- Calls Plaid bills per request (/transactions/refresh), one row per plaid_refresh_transactions
-- the budgets allowed: the daily budgets count them, and they show what was spent.
CREATE TABLE plaid_sync.paid_calls (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    item_id      text NOT NULL REFERENCES plaid_sync.items (item_id),
    endpoint     text NOT NULL,
    inbox_id     bigint,
    requested_at timestamptz NOT NULL DEFAULT now(),
    called_at    timestamptz,
    request_id   text,
    -- calling (marked before the call, so a job run again never calls twice), then ok, skipped,
    -- retry, item_error or failed; NULL until the job has run.
    outcome      text,
    error        text
);
-- The budget check: calls in the last 24 hours (for the server, and per Item).
CREATE INDEX paid_calls_requested_idx ON plaid_sync.paid_calls (endpoint, requested_at);
-- history_retention's deletes read the calls older than it, not every one it keeps.
CREATE INDEX paid_calls_requested_at_idx ON plaid_sync.paid_calls (requested_at);
-- The job records its outcome by inbox id.
CREATE INDEX paid_calls_inbox_idx ON plaid_sync.paid_calls (inbox_id);

-- Which Plaid products each Item has (from /item/get) and where each stands. Only products
-- plaid_sync mirrors get a row. state: pending (not read yet), ok, not_ready (retried),
-- unsupported, no_accounts, needs_consent (waiting for Link update mode), absent (no longer
-- on the Item; its rows stay).
CREATE TABLE plaid_sync.item_products (
    item_id         text NOT NULL REFERENCES plaid_sync.items (item_id),
    product         text NOT NULL,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN
                        ('pending', 'ok', 'not_ready', 'unsupported', 'no_accounts', 'needs_consent', 'absent')),
    -- Listed only in consented_products: calling it adds the product (and its billing).
    consented_only  boolean NOT NULL DEFAULT false,
    last_synced_at  timestamptz,
    last_attempt_at timestamptz,
    last_error      jsonb,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (item_id, product)
);

-- /institutions/get_by_id results, cached.
CREATE TABLE plaid_sync.institutions (
    institution_id text PRIMARY KEY,
    name           text,
    data           jsonb NOT NULL,
    fetched_at     timestamptz NOT NULL DEFAULT now()
);

-- Plaid's webhook verification keys (JWKs), cached by kid. A kid Plaid does not know is
-- remembered too (jwk NULL) so forged headers cannot make us call Plaid for every webhook.
CREATE TABLE plaid_sync.webhook_keys (
    kid        text PRIMARY KEY,
    jwk        jsonb,
    created_at timestamptz,
    expired_at timestamptz,
    fetched_at timestamptz NOT NULL DEFAULT now()
);

CREATE VIEW plaid_sync.live_transactions AS
    SELECT * FROM plaid_sync.transactions WHERE removed_at IS NULL;

CREATE VIEW plaid_sync.item_health AS
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
