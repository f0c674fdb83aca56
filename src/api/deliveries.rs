//! The notification webhooks' function: send one again.

use pgrx::prelude::*;

use crate::database::ok;
use crate::error::{Error, Result};

fn redeliver(id: Option<i64>) -> Result<()> {
    let id = id.ok_or_else(|| Error::invalid("id must not be NULL"))?;
    crate::database::require_current_sql()?;
    if crate::store::deliveries::redeliver(id) {
        Ok(())
    } else {
        Err(Error::invalid(format!("no delivery {id}")))
    }
}

/// The delivery goes out again (once its Item's earlier events have), whatever its state:
/// done, dead, or waiting for its next try.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn plaid_redeliver(id: Option<i64>) {
    ok(redeliver(id))
}
