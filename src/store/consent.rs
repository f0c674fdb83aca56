//! What ending consent does to an Item's data, across the tables (each statement is in its
//! table's home): marked removed (`removed_at`, rows kept, as `plaid_remove_item` and Plaid's
//! revocations do), or purged (deleted, for a user's deletion request or
//! `plaid_sync.purge_on_revoke`). `account_id` None: the whole Item.

use super::{accounts, investments, items, liabilities, paid_calls, products, recurring};
use super::{rejects, runs, transactions};

/// Every live row of the Item (or account) marked removed: accounts (so their balances),
/// transactions, holdings, investment transactions, liabilities, recurring streams.
pub fn mark_removed(item_id: &str, account_id: Option<&str>) {
    accounts::mark_removed(item_id, account_id);
    transactions::mark_removed(item_id, account_id);
    investments::mark_removed_holdings(item_id, account_id);
    investments::mark_removed_investment_transactions(item_id, account_id);
    liabilities::mark_removed(item_id, account_id);
    recurring::mark_removed(item_id, account_id);
}

/// Every row holding the Item's (or account's) data deleted. For the whole Item also its sync
/// runs and staged pages, rejects, products, paid calls and inbox rows; the Item keeps one row
/// saying it was purged (`items::mark_purged`), and its token is `token.rs`'s to destroy.
pub fn purge(item_id: &str, account_id: Option<&str>) {
    rejects::purge(item_id, account_id);
    transactions::purge(item_id, account_id);
    investments::purge_holdings(item_id, account_id);
    investments::purge_investment_transactions(item_id, account_id);
    liabilities::purge(item_id, account_id);
    recurring::purge(item_id, account_id);
    accounts::purge(item_id, account_id);
    if account_id.is_none() {
        crate::inbox::forget_item(item_id);
        runs::purge(item_id);
        products::purge(item_id);
        paid_calls::purge(item_id);
        items::mark_purged(item_id);
    }
}

/// A whole-Item purge: its data deleted, and its token either kept for the job that removes
/// the Item at Plaid (`at_plaid`, when it still has one), which destroys it after, or
/// destroyed now. The caller holds the Item's row lock.
pub fn purge_item(item_id: &str, at_plaid: bool) {
    purge(item_id, None);
    if at_plaid && items::has_token(item_id) {
        crate::inbox::enqueue_notice("ITEM", "REMOVE", item_id, r#"{"purge": true}"#, 0);
    } else {
        super::token::destroy(item_id);
    }
}
