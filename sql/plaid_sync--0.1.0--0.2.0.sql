-- plaid_sync 0.1.0 -> 0.2.0, run by ALTER EXTENSION plaid_sync UPDATE. Hand-written; once 0.2.0
-- is released (RELEASES) this file is frozen: later changes go into a new script.
-- Every change leaves the catalog as a fresh 0.2.0 install has it (tests/upgrade compares).

-- Text jsonb refuses (NUL, lone surrogates): the object as Plaid sent it (src/plaid/storable.rs).
ALTER TABLE plaid_sync.accounts ADD COLUMN raw_data text;
ALTER TABLE plaid_sync.transactions ADD COLUMN raw_data text;
-- The view's * was expanded when it was created: again, to take in raw_data.
CREATE OR REPLACE VIEW plaid_sync.live_transactions AS
    SELECT * FROM plaid_sync.transactions WHERE removed_at IS NULL;

-- A sync leaves out what it cannot apply, and says so.
ALTER TABLE plaid_sync.sync_runs ADD COLUMN rejected integer NOT NULL DEFAULT 0;
ALTER TABLE plaid_sync.sync_pages ADD COLUMN request_id text;
ALTER TABLE plaid_sync.sync_pages ADD COLUMN raw_objects jsonb;

CREATE TABLE plaid_sync.sync_rejects (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sync_run_id    bigint NOT NULL REFERENCES plaid_sync.sync_runs (id),
    item_id        text NOT NULL REFERENCES plaid_sync.items (item_id),
    transaction_id text,
    page           integer,
    request_id     text,
    error          text NOT NULL,
    data           text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    resolved_at    timestamptz
);
CREATE INDEX sync_rejects_open_idx ON plaid_sync.sync_rejects (item_id) WHERE resolved_at IS NULL;
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.sync_rejects', '');
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.sync_rejects_id_seq', '');

-- item_health gains the count of open rejects and each product's state (new last columns, so
-- OR REPLACE keeps grants). item_products is created first: the view reads it.
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
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.item_products', '');
-- Items 0.1.0 synced: their products as their last /item/get (items.data) listed them, so
-- product syncs start without waiting for the next ITEM/UPDATED.
INSERT INTO plaid_sync.item_products (item_id, product, consented_only)
SELECT i.item_id, p.product, bool_and(p.src = 'consented')
  FROM plaid_sync.items i,
       LATERAL (SELECT jsonb_array_elements_text(CASE WHEN jsonb_typeof(i.data -> 'products') = 'array'
                                                     THEN i.data -> 'products' ELSE '[]' END), 'products'
                UNION ALL
                SELECT jsonb_array_elements_text(CASE WHEN jsonb_typeof(i.data -> 'billed_products') = 'array'
                                                     THEN i.data -> 'billed_products' ELSE '[]' END), 'billed'
                UNION ALL
                SELECT jsonb_array_elements_text(CASE WHEN jsonb_typeof(i.data -> 'consented_products') = 'array'
                                                     THEN i.data -> 'consented_products' ELSE '[]' END), 'consented'
               ) p(product, src)
 WHERE jsonb_typeof(i.data) = 'object' AND i.status <> 'removed'
   AND p.product IN ('transactions', 'recurring_transactions', 'investments', 'liabilities')
 GROUP BY i.item_id, p.product;

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
                       'last_synced_at', p.last_synced_at, 'last_error', p.last_error ->> 'error_code'))
              FROM plaid_sync.item_products p WHERE p.item_id = i.item_id) AS products
      FROM plaid_sync.items i;

-- Lanes: fresh work before the backlog; rejected rows expire like done ones.
ALTER TABLE plaid_sync.inbox ADD COLUMN lane smallint NOT NULL DEFAULT 0;
-- A Plaid webhook's body is parsed when verified, no longer on receipt (see schema.sql).
ALTER TABLE plaid_sync.inbox ALTER COLUMN body DROP NOT NULL;
DROP INDEX plaid_sync.inbox_due_idx;
CREATE INDEX inbox_due_idx ON plaid_sync.inbox (lane, run_after, id) WHERE status IN ('pending', 'running');
DROP INDEX plaid_sync.inbox_finished_idx;
CREATE INDEX inbox_finished_idx ON plaid_sync.inbox (finished_at) WHERE status IN ('done', 'rejected');

-- plaid_sync.version(): the library's version, to compare with extversion.
CREATE FUNCTION plaid_sync."version"() RETURNS TEXT
STRICT STABLE SECURITY DEFINER PARALLEL SAFE
SET search_path TO @extschema@, pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'version_wrapper';
REVOKE ALL ON FUNCTION plaid_sync."version"() FROM PUBLIC;

-- The shared rate limiter's view of Plaid calls, and the server's sync progress.
CREATE FUNCTION plaid_sync."plaid_rate_status"() RETURNS TABLE (
    "endpoint" TEXT, "per_client_limit" INT, "per_item_limit" INT, "calls_last_minute" bigint,
    "in_flight" INT, "throttled_last_hour" bigint, "rate_share" double precision)
STRICT VOLATILE SECURITY DEFINER PARALLEL SAFE
SET search_path TO @extschema@, pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'plaid_rate_status_wrapper';
REVOKE ALL ON FUNCTION plaid_sync."plaid_rate_status"() FROM PUBLIC;

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
    -- ok, skipped, retry, item_error or failed; NULL until the job has run.
    outcome      text,
    error        text
);
-- The budget check: calls in the last 24 hours (for the server, and per Item).
CREATE INDEX paid_calls_requested_idx ON plaid_sync.paid_calls (endpoint, requested_at);
-- The job records its outcome by inbox id.
CREATE INDEX paid_calls_inbox_idx ON plaid_sync.paid_calls (inbox_id);
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.paid_calls', '');
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.paid_calls_id_seq', '');

-- plaid_refresh_transactions(item_id): one paid /transactions/refresh, within the budgets.
CREATE FUNCTION plaid_sync."plaid_refresh_transactions"("item_id" TEXT) RETURNS bigint
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO @extschema@, pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'plaid_refresh_transactions_wrapper';
REVOKE ALL ON FUNCTION plaid_sync."plaid_refresh_transactions"(TEXT) FROM PUBLIC;

-- Syncs of other products than Transactions are sync_runs too.
ALTER TABLE plaid_sync.sync_runs ADD COLUMN product text NOT NULL DEFAULT 'transactions';

-- /transactions/recurring/get: one row per stream. Each read is a full snapshot, so a stream
-- it no longer lists gets removed_at (and comes back if listed again). Amounts as Plaid sends
-- them: outflows positive, inflows negative.
CREATE TABLE plaid_sync.recurring_streams (
    stream_id                 text PRIMARY KEY,
    item_id                   text NOT NULL REFERENCES plaid_sync.items (item_id),
    account_id                text,
    direction                 text NOT NULL CHECK (direction IN ('inflow', 'outflow')),
    description               text,
    merchant_name             text,
    frequency                 text,
    status                    text,
    is_active                 boolean,
    average_amount            numeric,
    last_amount               numeric,
    iso_currency_code         text,
    unofficial_currency_code  text,
    first_date                date,
    last_date                 date,
    predicted_next_date       date,
    -- No foreign key: a stream may name transactions a sync already removed.
    transaction_ids           text[] NOT NULL DEFAULT '{}',
    personal_finance_category jsonb,
    -- The response's updated_datetime: when Plaid last changed the Item's streams.
    updated_datetime          timestamptz,
    data                      jsonb NOT NULL,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    removed_at                timestamptz
);
-- The apply's snapshot comparison, and reading an Item's streams.
CREATE INDEX recurring_streams_item_idx ON plaid_sync.recurring_streams (item_id);
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.recurring_streams', '');

-- /liabilities/get: one row per account and kind. Each read is a full snapshot, so a
-- liability it no longer lists gets removed_at. Typed columns for the figures people query;
-- data keeps Plaid's object (every field, e.g. a mortgage's property_address).
CREATE TABLE plaid_sync.liabilities (
    account_id                   text NOT NULL,
    kind                         text NOT NULL CHECK (kind IN ('credit', 'student', 'mortgage')),
    item_id                      text NOT NULL REFERENCES plaid_sync.items (item_id),
    -- The account's balances.current in the same response.
    current_balance              numeric,
    last_statement_balance       numeric,
    minimum_payment_amount       numeric,
    next_payment_due_date        date,
    -- Mortgages: the next monthly payment.
    next_monthly_payment         numeric,
    last_payment_amount          numeric,
    last_payment_date            date,
    is_overdue                   boolean,
    past_due_amount              numeric,
    -- Student: interest_rate_percentage; mortgage: interest_rate.percentage; credit: the
    -- purchase APR (every APR is in aprs).
    interest_rate_percentage     numeric,
    aprs                         jsonb,
    origination_principal_amount numeric,
    origination_date             date,
    data                         jsonb NOT NULL,
    created_at                   timestamptz NOT NULL DEFAULT now(),
    updated_at                   timestamptz NOT NULL DEFAULT now(),
    removed_at                   timestamptz,
    PRIMARY KEY (account_id, kind)
);
-- The apply's snapshot comparison, and reading an Item's liabilities.
CREATE INDEX liabilities_item_idx ON plaid_sync.liabilities (item_id);
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.liabilities', '');

-- Investments. securities: Plaid's securities, shared by every Item that holds or trades
-- them (security data is not account-specific), kept at their latest version.
CREATE TABLE plaid_sync.securities (
    security_id              text PRIMARY KEY,
    ticker_symbol            text,
    name                     text,
    type                     text,
    subtype                  text,
    close_price              numeric,
    close_price_as_of        date,
    iso_currency_code        text,
    unofficial_currency_code text,
    cusip                    text,
    isin                     text,
    sedol                    text,
    institution_security_id  text,
    institution_id           text,
    market_identifier_code   text,
    is_cash_equivalent       boolean,
    data                     jsonb NOT NULL,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now()
);

-- /investments/holdings/get: one row per account and security. Each read is a full
-- snapshot: a position sold out (or moved to a new security_id) gets removed_at.
CREATE TABLE plaid_sync.holdings (
    account_id               text NOT NULL,
    security_id              text NOT NULL,
    item_id                  text NOT NULL REFERENCES plaid_sync.items (item_id),
    -- Up to 16 decimals from Plaid, kept as sent.
    quantity                 numeric,
    institution_price        numeric,
    institution_price_as_of  date,
    -- As the institution reports it, not quantity × price.
    institution_value        numeric,
    -- The position's total cost basis.
    cost_basis               numeric,
    iso_currency_code        text,
    unofficial_currency_code text,
    data                     jsonb NOT NULL,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    removed_at               timestamptz,
    PRIMARY KEY (account_id, security_id)
);
-- The apply's snapshot comparison, and reading an Item's holdings.
CREATE INDEX holdings_item_idx ON plaid_sync.holdings (item_id);

-- /investments/transactions/get, read over date windows. Plaid lists no removals: one a
-- window read in full no longer lists was cancelled and gets removed_at.
CREATE TABLE plaid_sync.investment_transactions (
    investment_transaction_id text PRIMARY KEY,
    item_id                   text NOT NULL REFERENCES plaid_sync.items (item_id),
    account_id                text,
    security_id               text,
    date                      date,
    transaction_datetime      timestamptz,
    name                      text,
    quantity                  numeric,
    -- Positive: cash debited (a purchase); negative: cash credited.
    amount                    numeric,
    price                     numeric,
    fees                      numeric,
    type                      text,
    subtype                   text,
    iso_currency_code         text,
    unofficial_currency_code  text,
    data                      jsonb NOT NULL,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    removed_at                timestamptz
);
-- The apply's window comparison (an Item's rows by date).
CREATE INDEX investment_transactions_item_date_idx ON plaid_sync.investment_transactions (item_id, date);
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.securities', '');
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.holdings', '');
SELECT pg_catalog.pg_extension_config_dump('plaid_sync.investment_transactions', '');


-- Transactions stored lean (src/plaid/lean.rs): the table becomes transaction_rows, read
-- through the view plaid_sync.transactions, whose `data` is Plaid's object exactly. Rows
-- already stored keep their object whole in `rest` (exact); each slims down when Plaid next
-- sends it. The space the old column took is reused by new rows (VACUUM FULL returns it).
DROP VIEW plaid_sync.live_transactions;
ALTER TABLE plaid_sync.transactions RENAME TO transaction_rows;
DO $$
DECLARE c record;
BEGIN
    -- PostgreSQL 18 names NOT NULL constraints after the table, as a fresh install does.
    -- (The key, foreign key and indexes keep their names: a fresh install has them too.)
    FOR c IN SELECT conname FROM pg_constraint
              WHERE conrelid = 'plaid_sync.transaction_rows'::regclass
                AND conname LIKE 'transactions\_%\_not\_null' LOOP
        EXECUTE format('ALTER TABLE plaid_sync.transaction_rows RENAME CONSTRAINT %I TO %I',
                       c.conname, 'transaction_rows' || substr(c.conname, 13));
    END LOOP;
END $$;
ALTER TABLE plaid_sync.transaction_rows ADD COLUMN rest jsonb, ADD COLUMN absent text[],
    ADD COLUMN codec smallint NOT NULL DEFAULT 1;

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

REVOKE ALL ON FUNCTION plaid_sync.transaction_absent(jsonb) FROM PUBLIC;
UPDATE plaid_sync.transaction_rows
   SET rest = data, absent = nullif(plaid_sync.transaction_absent(data), '{}');
ALTER TABLE plaid_sync.transaction_rows ALTER COLUMN rest SET NOT NULL;
ALTER TABLE plaid_sync.transaction_rows DROP COLUMN data;

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
REVOKE ALL ON FUNCTION plaid_sync.transactions_write() FROM PUBLIC;

CREATE VIEW plaid_sync.live_transactions AS
    SELECT * FROM plaid_sync.transactions WHERE removed_at IS NULL;

-- A run that only adds new transactions is loaded by COPY (src/store/bulk.rs): each staged page
-- carries its rows as COPY text, and the run records how it was applied.
ALTER TABLE plaid_sync.sync_pages ADD COLUMN copy_rows text;
ALTER TABLE plaid_sync.sync_pages ADD COLUMN body_text text;
ALTER TABLE plaid_sync.sync_pages ALTER COLUMN body DROP NOT NULL;
ALTER TABLE plaid_sync.sync_pages ALTER COLUMN copy_rows SET STORAGE EXTERNAL;
ALTER TABLE plaid_sync.sync_pages ALTER COLUMN body_text SET STORAGE EXTERNAL;
ALTER TABLE plaid_sync.sync_pages ADD CONSTRAINT sync_pages_one_body CHECK ((body IS NULL) <> (body_text IS NULL));
ALTER TABLE plaid_sync.sync_runs ADD COLUMN applied_by text;
