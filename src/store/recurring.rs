//! Recurring streams from `/transactions/recurring/get`. Each answer is a full snapshot of
//! the Item's streams, so the apply upserts every stream it lists and marks the Item's
//! streams it does not list removed (`removed_at`; the rows stay). One statement: readers see
//! all of a snapshot or none of it. Amounts are read from the JSON text into `numeric`.

use super::{COUNTS, counted};

/// Streams added, changed and removed by the snapshot `body` (the response's JSON text).
pub fn apply(item_id: &str, body: &str) -> (i32, i32, i32) {
    let sql = format!(
        "WITH b AS (SELECT $2::jsonb AS b),
                 s AS (
                     SELECT DISTINCT ON (s ->> 'stream_id') s ->> 'stream_id' AS stream_id, dir, s
                       FROM b, LATERAL (
                            SELECT 'inflow', x FROM jsonb_array_elements(coalesce(b -> 'inflow_streams', '[]')) x
                            UNION ALL
                            SELECT 'outflow', x FROM jsonb_array_elements(coalesce(b -> 'outflow_streams', '[]')) x
                       ) y(dir, s)
                      ORDER BY s ->> 'stream_id'),
                 up AS (
                     INSERT INTO plaid_sync.recurring_streams AS r (
                            stream_id, item_id, account_id, direction, description, merchant_name,
                            frequency, status, is_active, average_amount, last_amount,
                            iso_currency_code, unofficial_currency_code, first_date, last_date,
                            predicted_next_date, transaction_ids, personal_finance_category,
                            updated_datetime, data)
                     SELECT s.stream_id, $1, s ->> 'account_id', dir, s ->> 'description', s ->> 'merchant_name',
                            s ->> 'frequency', s ->> 'status', (s ->> 'is_active')::boolean,
                            (s -> 'average_amount' ->> 'amount')::numeric, (s -> 'last_amount' ->> 'amount')::numeric,
                            coalesce(s -> 'average_amount' ->> 'iso_currency_code', s -> 'last_amount' ->> 'iso_currency_code'),
                            coalesce(s -> 'average_amount' ->> 'unofficial_currency_code', s -> 'last_amount' ->> 'unofficial_currency_code'),
                            (s ->> 'first_date')::date, (s ->> 'last_date')::date, (s ->> 'predicted_next_date')::date,
                            ARRAY(SELECT jsonb_array_elements_text(coalesce(s -> 'transaction_ids', '[]'))),
                            s -> 'personal_finance_category', (b ->> 'updated_datetime')::timestamptz, s
                       FROM s, b
                     ON CONFLICT (stream_id, item_id) DO UPDATE SET
                            account_id = EXCLUDED.account_id,
                            direction = EXCLUDED.direction, description = EXCLUDED.description,
                            merchant_name = EXCLUDED.merchant_name, frequency = EXCLUDED.frequency,
                            status = EXCLUDED.status, is_active = EXCLUDED.is_active,
                            average_amount = EXCLUDED.average_amount, last_amount = EXCLUDED.last_amount,
                            iso_currency_code = EXCLUDED.iso_currency_code,
                            unofficial_currency_code = EXCLUDED.unofficial_currency_code,
                            first_date = EXCLUDED.first_date, last_date = EXCLUDED.last_date,
                            predicted_next_date = EXCLUDED.predicted_next_date,
                            transaction_ids = EXCLUDED.transaction_ids,
                            personal_finance_category = EXCLUDED.personal_finance_category,
                            updated_datetime = EXCLUDED.updated_datetime, data = EXCLUDED.data,
                            removed_at = NULL, updated_at = EXCLUDED.updated_at
                      WHERE r.data IS DISTINCT FROM EXCLUDED.data OR r.removed_at IS NOT NULL
                     RETURNING (r.xmax = 0) AS inserted),
                 gone AS (
                     UPDATE plaid_sync.recurring_streams r SET removed_at = now(), updated_at = now()
                      WHERE r.item_id = $1 AND r.removed_at IS NULL
                        AND NOT EXISTS (SELECT FROM s WHERE s.stream_id = r.stream_id)
                     RETURNING 1)
                 {COUNTS}"
    );
    counted(&sql, &[item_id.into(), body.into()])
}

/// Consent ended for the Item (`account_id` None) or one account: its live streams are marked
/// removed (and kept).
pub fn mark_removed(item_id: &str, account_id: Option<&str>) {
    crate::database::run(
        "UPDATE plaid_sync.recurring_streams SET removed_at = now(), updated_at = now()
          WHERE item_id = $1 AND ($2::text IS NULL OR account_id = $2) AND removed_at IS NULL",
        &[item_id.into(), account_id.into()],
    );
}

/// The Item's (or one account's) streams deleted: a purge.
pub fn purge(item_id: &str, account_id: Option<&str>) {
    crate::database::run(
        "DELETE FROM plaid_sync.recurring_streams WHERE item_id = $1 AND ($2::text IS NULL OR account_id = $2)",
        &[item_id.into(), account_id.into()],
    );
}
