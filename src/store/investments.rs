//! Investments: `securities` (shared by every Item, keyed by Plaid's `security_id`), `holdings`
//! (one row per account and security, from `/investments/holdings/get`, a full snapshot) and
//! `investment_transactions` (from `/investments/transactions/get`, read in offset pages
//! within a date window). Plaid never lists removed investment transactions: a stored one
//! whose date is inside a window read in full, but that the window no longer lists, was
//! cancelled and gets `removed_at`. Quantities and prices are `numeric` read from the JSON
//! text, so all 16 decimals Plaid sends stay.

use super::{COUNTS, counted};

/// Upserts the securities of `$src` (a CTE with a jsonb array column `arr`).
const SECURITIES: &str = "
    sec AS (
        SELECT DISTINCT ON (s ->> 'security_id') s
          FROM src, jsonb_array_elements(coalesce(src.arr, '[]')) s
         WHERE s ->> 'security_id' IS NOT NULL
         ORDER BY s ->> 'security_id'),
    sec_up AS (
        INSERT INTO plaid_sync.securities AS r (
               security_id, ticker_symbol, name, type, subtype, close_price, close_price_as_of,
               iso_currency_code, unofficial_currency_code, cusip, isin, sedol,
               institution_security_id, institution_id, market_identifier_code,
               is_cash_equivalent, data)
        SELECT s ->> 'security_id', s ->> 'ticker_symbol', s ->> 'name', s ->> 'type', s ->> 'subtype',
               (s ->> 'close_price')::numeric, (s ->> 'close_price_as_of')::date,
               s ->> 'iso_currency_code', s ->> 'unofficial_currency_code', s ->> 'cusip', s ->> 'isin',
               s ->> 'sedol', s ->> 'institution_security_id', s ->> 'institution_id',
               s ->> 'market_identifier_code', (s ->> 'is_cash_equivalent')::boolean, s
          FROM sec
        ON CONFLICT (security_id) DO UPDATE SET
               ticker_symbol = EXCLUDED.ticker_symbol, name = EXCLUDED.name, type = EXCLUDED.type,
               subtype = EXCLUDED.subtype, close_price = EXCLUDED.close_price,
               close_price_as_of = EXCLUDED.close_price_as_of,
               iso_currency_code = EXCLUDED.iso_currency_code,
               unofficial_currency_code = EXCLUDED.unofficial_currency_code,
               cusip = EXCLUDED.cusip, isin = EXCLUDED.isin, sedol = EXCLUDED.sedol,
               institution_security_id = EXCLUDED.institution_security_id,
               institution_id = EXCLUDED.institution_id,
               market_identifier_code = EXCLUDED.market_identifier_code,
               is_cash_equivalent = EXCLUDED.is_cash_equivalent, data = EXCLUDED.data, updated_at = EXCLUDED.updated_at
         WHERE r.data IS DISTINCT FROM EXCLUDED.data)";

/// Holdings added, changed and removed by the snapshot `body` (with its securities).
pub fn apply_holdings(item_id: &str, body: &str) -> (i32, i32, i32) {
    let sql = format!(
        "WITH b AS (SELECT $2::jsonb AS b),
         src AS (SELECT b -> 'securities' AS arr FROM b),
         {SECURITIES},
         h AS (
             SELECT DISTINCT ON (x ->> 'account_id', x ->> 'security_id')
                    x ->> 'account_id' AS account_id, x ->> 'security_id' AS security_id, x
               FROM b, jsonb_array_elements(coalesce(b -> 'holdings', '[]')) x
              WHERE x ->> 'account_id' IS NOT NULL AND x ->> 'security_id' IS NOT NULL
              ORDER BY x ->> 'account_id', x ->> 'security_id'),
         up AS (
             INSERT INTO plaid_sync.holdings AS r (
                    account_id, security_id, item_id, quantity, institution_price,
                    institution_price_as_of, institution_value, cost_basis, iso_currency_code,
                    unofficial_currency_code, data)
             SELECT account_id, security_id, $1, (x ->> 'quantity')::numeric,
                    (x ->> 'institution_price')::numeric, (x ->> 'institution_price_as_of')::date,
                    (x ->> 'institution_value')::numeric, (x ->> 'cost_basis')::numeric,
                    x ->> 'iso_currency_code', x ->> 'unofficial_currency_code', x
               FROM h
             ON CONFLICT (account_id, security_id, item_id) DO UPDATE SET
                    quantity = EXCLUDED.quantity,
                    institution_price = EXCLUDED.institution_price,
                    institution_price_as_of = EXCLUDED.institution_price_as_of,
                    institution_value = EXCLUDED.institution_value, cost_basis = EXCLUDED.cost_basis,
                    iso_currency_code = EXCLUDED.iso_currency_code,
                    unofficial_currency_code = EXCLUDED.unofficial_currency_code,
                    data = EXCLUDED.data, removed_at = NULL, updated_at = EXCLUDED.updated_at
              WHERE r.data IS DISTINCT FROM EXCLUDED.data OR r.removed_at IS NOT NULL
             RETURNING (r.xmax = 0) AS inserted),
         gone AS (
             UPDATE plaid_sync.holdings r SET removed_at = now(), updated_at = now()
              WHERE r.item_id = $1 AND r.removed_at IS NULL
                AND NOT EXISTS (SELECT FROM h WHERE h.account_id = r.account_id AND h.security_id = r.security_id)
             RETURNING 1)
         {COUNTS}"
    );
    counted(&sql, &[item_id.into(), body.into()])
}

/// Investment transactions added, changed and removed by the pages of run `run_id`, which
/// read the window `start`..=`end` (dates) in full.
pub fn apply_transactions(run_id: i64, item_id: &str, start: &str, end: &str) -> (i32, i32, i32) {
    let sql = format!(
        "WITH p AS (SELECT body FROM plaid_sync.sync_pages WHERE sync_run_id = $1),
         src AS (SELECT body -> 'securities' AS arr FROM p),
         {SECURITIES},
         t AS (
             SELECT DISTINCT ON (x ->> 'investment_transaction_id') x ->> 'investment_transaction_id' AS id, x
               FROM p, jsonb_array_elements(coalesce(p.body -> 'investment_transactions', '[]')) x
              WHERE x ->> 'investment_transaction_id' IS NOT NULL
              ORDER BY x ->> 'investment_transaction_id'),
         up AS (
             INSERT INTO plaid_sync.investment_transactions AS r (
                    investment_transaction_id, item_id, account_id, security_id, date,
                    transaction_datetime, name, quantity, amount, price, fees, type, subtype,
                    iso_currency_code, unofficial_currency_code, data)
             SELECT id, $2, x ->> 'account_id', x ->> 'security_id', (x ->> 'date')::date,
                    (x ->> 'transaction_datetime')::timestamptz, x ->> 'name',
                    (x ->> 'quantity')::numeric, (x ->> 'amount')::numeric, (x ->> 'price')::numeric,
                    (x ->> 'fees')::numeric, x ->> 'type', x ->> 'subtype',
                    x ->> 'iso_currency_code', x ->> 'unofficial_currency_code', x
               FROM t
             ON CONFLICT (investment_transaction_id, item_id) DO UPDATE SET
                    account_id = EXCLUDED.account_id,
                    security_id = EXCLUDED.security_id, date = EXCLUDED.date,
                    transaction_datetime = EXCLUDED.transaction_datetime, name = EXCLUDED.name,
                    quantity = EXCLUDED.quantity, amount = EXCLUDED.amount, price = EXCLUDED.price,
                    fees = EXCLUDED.fees, type = EXCLUDED.type, subtype = EXCLUDED.subtype,
                    iso_currency_code = EXCLUDED.iso_currency_code,
                    unofficial_currency_code = EXCLUDED.unofficial_currency_code,
                    data = EXCLUDED.data, removed_at = NULL, updated_at = EXCLUDED.updated_at
              WHERE r.data IS DISTINCT FROM EXCLUDED.data OR r.removed_at IS NOT NULL
             RETURNING (r.xmax = 0) AS inserted),
         gone AS (
             UPDATE plaid_sync.investment_transactions r SET removed_at = now(), updated_at = now()
              WHERE r.item_id = $2 AND r.removed_at IS NULL AND r.date BETWEEN $3::date AND $4::date
                AND NOT EXISTS (SELECT FROM t WHERE t.id = r.investment_transaction_id)
             RETURNING 1)
         {COUNTS}"
    );
    counted(
        &sql,
        &[run_id.into(), item_id.into(), start.into(), end.into()],
    )
}

/// Consent ended for the Item (`account_id` None) or one account: its live holdings are marked
/// removed (and kept).
pub fn mark_removed_holdings(item_id: &str, account_id: Option<&str>) {
    crate::database::run(
        "UPDATE plaid_sync.holdings SET removed_at = now(), updated_at = now()
          WHERE item_id = $1 AND ($2::text IS NULL OR account_id = $2) AND removed_at IS NULL",
        &[item_id.into(), account_id.into()],
    );
}

/// The Item's (or one account's) holdings deleted: a purge.
pub fn purge_holdings(item_id: &str, account_id: Option<&str>) {
    crate::database::run(
        "DELETE FROM plaid_sync.holdings WHERE item_id = $1 AND ($2::text IS NULL OR account_id = $2)",
        &[item_id.into(), account_id.into()],
    );
}

/// Consent ended for the Item (`account_id` None) or one account: its live investment transactions are marked
/// removed (and kept).
pub fn mark_removed_investment_transactions(item_id: &str, account_id: Option<&str>) {
    crate::database::run(
        "UPDATE plaid_sync.investment_transactions SET removed_at = now(), updated_at = now()
          WHERE item_id = $1 AND ($2::text IS NULL OR account_id = $2) AND removed_at IS NULL",
        &[item_id.into(), account_id.into()],
    );
}

/// The Item's (or one account's) investment transactions deleted: a purge.
pub fn purge_investment_transactions(item_id: &str, account_id: Option<&str>) {
    crate::database::run(
        "DELETE FROM plaid_sync.investment_transactions WHERE item_id = $1 AND ($2::text IS NULL OR account_id = $2)",
        &[item_id.into(), account_id.into()],
    );
}
