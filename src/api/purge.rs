//! `plaid_purge_item`: a user's deletion request. Every row that holds the Item's data is
//! deleted now, in the caller's transaction; the Item keeps one row saying it was purged and
//! when (so a late webhook for it is ignored), and the token lives only until a worker has
//! removed the Item at Plaid (`/item/remove`), which then destroys it.

use pgrx::prelude::*;

use super::item_status;
use crate::database::ok;
use crate::error::Result;
use crate::store::{consent, items};
use crate::validate;

fn purge_item(item_id: Option<&str>) -> Result<()> {
    let item_id = validate::item_id(item_id)?;
    crate::database::require_current_sql()?;
    item_status(item_id)?; // 22023 for an unknown Item; locks its row
    if items::purged(item_id) && !items::has_token(item_id) {
        return Ok(()); // purged already, and removed at Plaid: nothing left
    }
    // Its token still there means Plaid still has the Item (plaid_remove_item destroys the
    // token once Plaid removed it, or at once when asked not to remove it there).
    consent::purge_item(item_id, true);
    crate::wake::wake_on_commit();
    Ok(())
}

#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn plaid_purge_item(item_id: Option<&str>) {
    ok(purge_item(item_id))
}
