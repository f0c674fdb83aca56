//! Transactions: the staged pages of a sync in progress, and their apply, in which the last
//! thing the pages said about each transaction wins.

use crate::database::{one, run};

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
        super::upsert_accounts(item_id, &accounts.0.to_string(), false);
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
