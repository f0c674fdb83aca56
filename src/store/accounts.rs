//! Accounts, and a balance snapshot whenever an account's balances change; both marked
//! removed or deleted when consent ends.

use crate::database::run;

/// Upserts accounts from a JSON array of Plaid accounts, keeping a balance snapshot whenever
/// an account's balances change. With `complete` (an `/accounts/get` answer), the Item's
/// accounts missing from the list are marked removed. `raw` maps account ids to the text
/// Plaid sent, for accounts that held characters Postgres refuses (src/plaid/storable.rs).
pub fn upsert_accounts(item_id: &str, accounts_json: &str, complete: bool, raw: Option<&str>) {
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
                    a AS data, $4::jsonb ->> (a ->> 'account_id') AS raw_data
               FROM jsonb_array_elements($2::jsonb) a),
         changed AS (
             SELECT i.* FROM incoming i
               LEFT JOIN plaid_sync.accounts old ON old.account_id = i.account_id AND old.item_id = $1
              WHERE old.account_id IS NULL
                 OR (old.balance_available, old.balance_current, old.balance_limit,
                     old.iso_currency_code, old.unofficial_currency_code)
                    IS DISTINCT FROM (i.balance_available, i.balance_current, i.balance_limit,
                                      i.iso_currency_code, i.unofficial_currency_code)),
         up AS (
             INSERT INTO plaid_sync.accounts (account_id, item_id, name, official_name, mask, type,
                    subtype, balance_available, balance_current, balance_limit,
                    iso_currency_code, unofficial_currency_code, data, raw_data)
             SELECT account_id, $1, name, official_name, mask, type, subtype, balance_available,
                    balance_current, balance_limit, iso_currency_code, unofficial_currency_code, data,
                    raw_data
               FROM incoming
             ON CONFLICT (account_id, item_id) DO UPDATE SET
                    name = EXCLUDED.name, official_name = EXCLUDED.official_name,
                    mask = EXCLUDED.mask, type = EXCLUDED.type, subtype = EXCLUDED.subtype,
                    balance_available = EXCLUDED.balance_available,
                    balance_current = EXCLUDED.balance_current,
                    balance_limit = EXCLUDED.balance_limit,
                    iso_currency_code = EXCLUDED.iso_currency_code,
                    unofficial_currency_code = EXCLUDED.unofficial_currency_code,
                    data = EXCLUDED.data, raw_data = EXCLUDED.raw_data, removed_at = NULL, updated_at = EXCLUDED.updated_at
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
        &[item_id.into(), accounts_json.into(), complete.into(), raw.into()],
    );
}

/// Consent ended for the Item (`account_id` None) or one account: its live accounts are
/// marked removed (and kept, with their balance history).
pub fn mark_removed(item_id: &str, account_id: Option<&str>) {
    crate::database::run(
        "UPDATE plaid_sync.accounts SET removed_at = now(), updated_at = now()
          WHERE item_id = $1 AND ($2::text IS NULL OR account_id = $2) AND removed_at IS NULL",
        &[item_id.into(), account_id.into()],
    );
}

/// The Item's (or one account's) accounts and balance history deleted: a purge.
pub fn purge(item_id: &str, account_id: Option<&str>) {
    crate::database::run(
        "DELETE FROM plaid_sync.balance_snapshots WHERE item_id = $1 AND ($2::text IS NULL OR account_id = $2)",
        &[item_id.into(), account_id.into()],
    );
    crate::database::run(
        "DELETE FROM plaid_sync.accounts WHERE item_id = $1 AND ($2::text IS NULL OR account_id = $2)",
        &[item_id.into(), account_id.into()],
    );
}
