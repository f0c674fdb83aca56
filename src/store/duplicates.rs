//! Duplicate Items: the same user linking the same bank login again, which Plaid bills as a
//! second Item. The view `plaid_sync.duplicate_items` (sql/schema.sql) lists those stored;
//! this is the check `plaid_exchange_public_token` makes before a new one exists. A read that
//! joins `items` and `accounts`, whose writes stay in their homes.

use crate::database::one;

/// The oldest live Item of `client_user_id` at `institution_id` whose live accounts are, as
/// `type:mask` sorted bytewise, exactly `accounts`; None when there is none.
pub fn live_duplicate(
    client_user_id: &str,
    institution_id: &str,
    accounts: &[String],
) -> Option<String> {
    one::<String>(
        r#"SELECT i.item_id FROM plaid_sync.items i
            WHERE i.client_user_id = $1 AND i.institution_id = $2
              AND i.status <> 'removed' AND i.purged_at IS NULL
              AND (SELECT array_agg(coalesce(a.type, '') || ':' || coalesce(a.mask, '')
                                    ORDER BY coalesce(a.type, '') || ':' || coalesce(a.mask, '') COLLATE "C")
                     FROM plaid_sync.accounts a
                    WHERE a.item_id = i.item_id AND a.removed_at IS NULL) = $3::text[]
            ORDER BY i.created_at, i.item_id LIMIT 1"#,
        &[
            client_user_id.into(),
            institution_id.into(),
            accounts.to_vec().into(),
        ],
    )
}
