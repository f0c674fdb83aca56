//! Liabilities from `/liabilities/get`: one row per account and kind (credit, student,
//! mortgage). Each answer is a full snapshot, so the Item's rows it does not list are marked
//! removed (`removed_at`; the rows stay). One statement: readers see all of a snapshot or
//! none. The figures people query get typed columns, read from the JSON text into `numeric`;
//! `data` keeps Plaid's object. Plaid's schema lets a credit or student row lack its
//! `account_id`: such a row has no key here and is not stored (the README says so).

use super::{COUNTS, counted};

/// Rows added, changed and removed by the snapshot `body` (the response's JSON text).
pub fn apply(item_id: &str, body: &str) -> (i32, i32, i32) {
    let sql = format!(
        "WITH b AS (SELECT $2::jsonb AS b),
                 acct AS (
                     SELECT a ->> 'account_id' AS account_id, (a -> 'balances' ->> 'current')::numeric AS current
                       FROM b, jsonb_array_elements(coalesce(b -> 'accounts', '[]')) a),
                 l AS (
                     SELECT DISTINCT ON (x ->> 'account_id', kind) x ->> 'account_id' AS account_id, kind, x
                       FROM b, LATERAL (VALUES ('credit'), ('student'), ('mortgage')) k(kind),
                            LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(b -> 'liabilities' -> kind) = 'array'
                                                              THEN b -> 'liabilities' -> kind ELSE '[]' END) x
                      WHERE x ->> 'account_id' IS NOT NULL
                      ORDER BY x ->> 'account_id', kind),
                 up AS (
                     INSERT INTO plaid_sync.liabilities AS r (
                            account_id, kind, item_id, current_balance, last_statement_balance,
                            minimum_payment_amount, next_payment_due_date, next_monthly_payment,
                            last_payment_amount, last_payment_date, is_overdue, past_due_amount,
                            interest_rate_percentage, aprs, origination_principal_amount,
                            origination_date, data)
                     SELECT l.account_id, l.kind, $1, acct.current, (x ->> 'last_statement_balance')::numeric,
                            (x ->> 'minimum_payment_amount')::numeric, (x ->> 'next_payment_due_date')::date,
                            (x ->> 'next_monthly_payment')::numeric,
                            (x ->> 'last_payment_amount')::numeric, (x ->> 'last_payment_date')::date,
                            (x ->> 'is_overdue')::boolean, (x ->> 'past_due_amount')::numeric,
                            CASE l.kind
                                WHEN 'student' THEN (x ->> 'interest_rate_percentage')::numeric
                                WHEN 'mortgage' THEN (x -> 'interest_rate' ->> 'percentage')::numeric
                                ELSE (SELECT (a ->> 'apr_percentage')::numeric
                                        FROM jsonb_array_elements(coalesce(x -> 'aprs', '[]')) a
                                       WHERE a ->> 'apr_type' = 'purchase_apr' LIMIT 1) END,
                            CASE WHEN l.kind = 'credit' THEN coalesce(x -> 'aprs', '[]') END,
                            (x ->> 'origination_principal_amount')::numeric, (x ->> 'origination_date')::date, x
                       FROM l LEFT JOIN acct USING (account_id)
                     ON CONFLICT (account_id, kind, item_id) DO UPDATE SET
                            current_balance = EXCLUDED.current_balance,
                            last_statement_balance = EXCLUDED.last_statement_balance,
                            minimum_payment_amount = EXCLUDED.minimum_payment_amount,
                            next_payment_due_date = EXCLUDED.next_payment_due_date,
                            next_monthly_payment = EXCLUDED.next_monthly_payment,
                            last_payment_amount = EXCLUDED.last_payment_amount,
                            last_payment_date = EXCLUDED.last_payment_date,
                            is_overdue = EXCLUDED.is_overdue, past_due_amount = EXCLUDED.past_due_amount,
                            interest_rate_percentage = EXCLUDED.interest_rate_percentage,
                            aprs = EXCLUDED.aprs,
                            origination_principal_amount = EXCLUDED.origination_principal_amount,
                            origination_date = EXCLUDED.origination_date, data = EXCLUDED.data,
                            removed_at = NULL, updated_at = EXCLUDED.updated_at
                      WHERE r.data IS DISTINCT FROM EXCLUDED.data OR r.removed_at IS NOT NULL
                         OR r.current_balance IS DISTINCT FROM EXCLUDED.current_balance
                     RETURNING (r.xmax = 0) AS inserted),
                 gone AS (
                     UPDATE plaid_sync.liabilities r SET removed_at = now(), updated_at = now()
                      WHERE r.item_id = $1 AND r.removed_at IS NULL
                        AND NOT EXISTS (SELECT FROM l WHERE l.account_id = r.account_id AND l.kind = r.kind)
                     RETURNING 1)
                 {COUNTS}"
    );
    counted(&sql, &[item_id.into(), body.into()])
}

/// Consent ended for the Item (`account_id` None) or one account: its live liabilities are marked
/// removed (and kept).
pub fn mark_removed(item_id: &str, account_id: Option<&str>) {
    crate::database::run(
        "UPDATE plaid_sync.liabilities SET removed_at = now(), updated_at = now()
          WHERE item_id = $1 AND ($2::text IS NULL OR account_id = $2) AND removed_at IS NULL",
        &[item_id.into(), account_id.into()],
    );
}

/// The Item's (or one account's) liabilities deleted: a purge.
pub fn purge(item_id: &str, account_id: Option<&str>) {
    crate::database::run(
        "DELETE FROM plaid_sync.liabilities WHERE item_id = $1 AND ($2::text IS NULL OR account_id = $2)",
        &[item_id.into(), account_id.into()],
    );
}
