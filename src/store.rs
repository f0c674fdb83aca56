//! The rows a sync writes. Plaid's JSON goes into Postgres as text and is taken apart in SQL,
//! so `numeric` columns get the exact digits Plaid sent.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

use crate::api::one;

fn run(sql: &str, args: &[DatumWithOid]) {
    crate::api::in_transaction(sql);
    Spi::run_with_args(sql, args).unwrap_or_else(|e| panic!("plaid_sync store: {e}"));
}

/// Stages one page of a sync in progress.
pub fn stage_page(run_id: i64, page: i32, body: &str) {
    run(
        "INSERT INTO plaid_sync.sync_pages (sync_run_id, page, body) VALUES ($1, $2, $3::jsonb)",
        &[run_id.into(), page.into(), body.into()],
    );
}

pub fn discard_pages(run_id: i64) {
    run(
        "DELETE FROM plaid_sync.sync_pages WHERE sync_run_id = $1",
        &[run_id.into()],
    );
}

const TXN_COLUMNS: &str = "transaction_id, item_id, account_id, amount, iso_currency_code,
    unofficial_currency_code, date, authorized_date, datetime, name, merchant_name,
    payment_channel, pending, pending_transaction_id, category, personal_finance_category, data,
    removed_at";

/// Applies every staged page of a run, in order: for each transaction the last thing the
/// pages said about it wins (an upsert, or a removal). Then drops the staged pages.
pub fn apply_pages(run_id: i64, item_id: &str) {
    let sql = format!(
        "WITH ev AS (
             SELECT p.page, 0 AS phase, k.kind, a.ord, a.e AS obj, a.e ->> 'transaction_id' AS id
               FROM plaid_sync.sync_pages p
              CROSS JOIN (VALUES (0, 'added'), (1, 'modified')) k(kind, key)
              CROSS JOIN LATERAL jsonb_array_elements(p.body -> k.key) WITH ORDINALITY a(e, ord)
              WHERE p.sync_run_id = $1
             UNION ALL
             SELECT p.page, 1, 2, a.ord, NULL, a.e ->> 'transaction_id'
               FROM plaid_sync.sync_pages p
              CROSS JOIN LATERAL jsonb_array_elements(p.body -> 'removed') WITH ORDINALITY a(e, ord)
              WHERE p.sync_run_id = $1),
         last_upsert AS (
             SELECT DISTINCT ON (id) id, obj FROM ev WHERE phase = 0
              ORDER BY id, page DESC, kind DESC, ord DESC),
         last_event AS (
             SELECT DISTINCT ON (id) id, phase FROM ev
              ORDER BY id, page DESC, phase DESC, kind DESC, ord DESC),
         upserted AS (
             INSERT INTO plaid_sync.transactions ({TXN_COLUMNS})
             SELECT u.id, $2, o ->> 'account_id', (o ->> 'amount')::numeric,
                    o ->> 'iso_currency_code', o ->> 'unofficial_currency_code',
                    (o ->> 'date')::date, (o ->> 'authorized_date')::date,
                    (o ->> 'datetime')::timestamptz, o ->> 'name', o ->> 'merchant_name',
                    o ->> 'payment_channel', coalesce((o ->> 'pending')::boolean, false),
                    o ->> 'pending_transaction_id',
                    CASE WHEN jsonb_typeof(o -> 'category') = 'array'
                         THEN ARRAY(SELECT jsonb_array_elements_text(o -> 'category')) END,
                    CASE WHEN jsonb_typeof(o -> 'personal_finance_category') = 'object'
                         THEN o -> 'personal_finance_category' END,
                    o,
                    CASE WHEN le.phase = 1 THEN now() END
               FROM last_upsert u
               JOIN last_event le USING (id)
              CROSS JOIN LATERAL (SELECT u.obj AS o) x
             ON CONFLICT (transaction_id) DO UPDATE SET
                    account_id = EXCLUDED.account_id, amount = EXCLUDED.amount,
                    iso_currency_code = EXCLUDED.iso_currency_code,
                    unofficial_currency_code = EXCLUDED.unofficial_currency_code,
                    date = EXCLUDED.date, authorized_date = EXCLUDED.authorized_date,
                    datetime = EXCLUDED.datetime, name = EXCLUDED.name,
                    merchant_name = EXCLUDED.merchant_name,
                    payment_channel = EXCLUDED.payment_channel, pending = EXCLUDED.pending,
                    pending_transaction_id = EXCLUDED.pending_transaction_id,
                    category = EXCLUDED.category,
                    personal_finance_category = EXCLUDED.personal_finance_category,
                    data = EXCLUDED.data, removed_at = EXCLUDED.removed_at, updated_at = now()
              WHERE transactions.item_id = EXCLUDED.item_id
             RETURNING pending_transaction_id),
         removed AS (
             -- Removals, and pending rows a posted row replaced (Plaid also lists them as
             -- removed, but not always on the same page).
             SELECT id FROM last_event WHERE phase = 1
             UNION SELECT pending_transaction_id FROM upserted WHERE pending_transaction_id IS NOT NULL)
         UPDATE plaid_sync.transactions t SET removed_at = now(), updated_at = now()
           FROM removed r
          WHERE t.transaction_id = r.id AND t.item_id = $2 AND t.removed_at IS NULL"
    );
    run(&sql, &[run_id.into(), item_id.into()]);
    // Accounts with balances, from the last page (sync lists only accounts with transactions).
    if let Some(accounts) = one::<pgrx::JsonB>(
        "SELECT body -> 'accounts' FROM plaid_sync.sync_pages
          WHERE sync_run_id = $1 AND jsonb_typeof(body -> 'accounts') = 'array'
          ORDER BY page DESC LIMIT 1",
        &[run_id.into()],
    ) {
        upsert_accounts(item_id, &accounts.0.to_string(), false);
    }
}

/// A backfill saw the whole history: live rows of the Item that no page mentioned are gone.
pub fn remove_unseen(run_id: i64, item_id: &str) -> i64 {
    one::<i64>(
        "WITH seen AS (
             SELECT a.e ->> 'transaction_id' AS id
               FROM plaid_sync.sync_pages p
              CROSS JOIN (VALUES ('added'), ('modified')) k(key)
              CROSS JOIN LATERAL jsonb_array_elements(p.body -> k.key) a(e)
              WHERE p.sync_run_id = $1),
         gone AS (
             UPDATE plaid_sync.transactions t SET removed_at = now(), updated_at = now()
              WHERE t.item_id = $2 AND t.removed_at IS NULL
                AND NOT EXISTS (SELECT 1 FROM seen WHERE seen.id = t.transaction_id)
             RETURNING 1)
         SELECT count(*) FROM gone",
        &[run_id.into(), item_id.into()],
    )
    .unwrap_or(0)
}

/// Upserts accounts from a JSON array of Plaid accounts, keeping a balance snapshot whenever
/// an account's balances change. With `complete` (an `/accounts/get` answer), the Item's
/// accounts missing from the list are marked removed.
pub fn upsert_accounts(item_id: &str, accounts_json: &str, complete: bool) {
    run(
        "WITH incoming AS (
             SELECT a ->> 'account_id' AS account_id, a ->> 'name' AS name,
                    a ->> 'official_name' AS official_name, a ->> 'mask' AS mask,
                    a ->> 'type' AS type, a ->> 'subtype' AS subtype,
                    (a -> 'balances' ->> 'available')::numeric AS balance_available,
                    (a -> 'balances' ->> 'current')::numeric AS balance_current,
                    (a -> 'balances' ->> 'limit')::numeric AS balance_limit,
                    a -> 'balances' ->> 'iso_currency_code' AS iso_currency_code,
                    a -> 'balances' ->> 'unofficial_currency_code' AS unofficial_currency_code,
                    a AS data
               FROM jsonb_array_elements($2::jsonb) a),
         changed AS (
             SELECT i.* FROM incoming i
               LEFT JOIN plaid_sync.accounts old USING (account_id)
              WHERE old.account_id IS NULL
                 OR (old.balance_available, old.balance_current, old.balance_limit,
                     old.iso_currency_code, old.unofficial_currency_code)
                    IS DISTINCT FROM (i.balance_available, i.balance_current, i.balance_limit,
                                      i.iso_currency_code, i.unofficial_currency_code)),
         up AS (
             INSERT INTO plaid_sync.accounts (account_id, item_id, name, official_name, mask, type,
                    subtype, balance_available, balance_current, balance_limit,
                    iso_currency_code, unofficial_currency_code, data)
             SELECT account_id, $1, name, official_name, mask, type, subtype, balance_available,
                    balance_current, balance_limit, iso_currency_code, unofficial_currency_code, data
               FROM incoming
             ON CONFLICT (account_id) DO UPDATE SET
                    name = EXCLUDED.name, official_name = EXCLUDED.official_name,
                    mask = EXCLUDED.mask, type = EXCLUDED.type, subtype = EXCLUDED.subtype,
                    balance_available = EXCLUDED.balance_available,
                    balance_current = EXCLUDED.balance_current,
                    balance_limit = EXCLUDED.balance_limit,
                    iso_currency_code = EXCLUDED.iso_currency_code,
                    unofficial_currency_code = EXCLUDED.unofficial_currency_code,
                    data = EXCLUDED.data, removed_at = NULL, updated_at = now()
              WHERE accounts.item_id = EXCLUDED.item_id
             RETURNING 1),
         gone AS (
             UPDATE plaid_sync.accounts SET removed_at = now(), updated_at = now()
              WHERE $3 AND item_id = $1 AND removed_at IS NULL
                AND account_id NOT IN (SELECT account_id FROM incoming)
             RETURNING 1)
         INSERT INTO plaid_sync.balance_snapshots (account_id, item_id, balance_available,
                balance_current, balance_limit, iso_currency_code, unofficial_currency_code)
         SELECT account_id, $1, balance_available, balance_current, balance_limit,
                iso_currency_code, unofficial_currency_code
           FROM changed",
        &[item_id.into(), accounts_json.into(), complete.into()],
    );
}

/// Stores an `/item/get` (or `/accounts/get`) `item` object on the Item.
pub fn update_item(item_id: &str, item_json: &str) {
    run(
        "UPDATE plaid_sync.items i SET
                institution_id = coalesce(x.o ->> 'institution_id', i.institution_id),
                institution_name = coalesce(x.o ->> 'institution_name', i.institution_name),
                webhook = x.o ->> 'webhook',
                consent_expiration_time = (x.o ->> 'consent_expiration_time')::timestamptz,
                data = x.o, updated_at = now()
           FROM (SELECT $2::jsonb AS o) x
          WHERE i.item_id = $1",
        &[item_id.into(), item_json.into()],
    );
}

/// The cached institution name, if we have it.
pub fn institution_cached(institution_id: &str) -> bool {
    one::<bool>(
        "SELECT true FROM plaid_sync.institutions WHERE institution_id = $1",
        &[institution_id.into()],
    )
    .is_some()
}

pub fn store_institution(institution_json: &str) {
    run(
        "WITH x AS (SELECT $1::jsonb AS o)
         INSERT INTO plaid_sync.institutions (institution_id, name, data)
         SELECT o ->> 'institution_id', o ->> 'name', o FROM x
         ON CONFLICT (institution_id) DO UPDATE SET name = EXCLUDED.name, data = EXCLUDED.data,
                fetched_at = now()",
        &[institution_json.into()],
    );
}

pub fn name_institution(item_id: &str) {
    run(
        "UPDATE plaid_sync.items i SET institution_name = n.name
           FROM plaid_sync.institutions n
          WHERE i.item_id = $1 AND n.institution_id = i.institution_id
            AND i.institution_name IS DISTINCT FROM n.name",
        &[item_id.into()],
    );
}
