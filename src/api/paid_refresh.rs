//! `plaid_refresh_transactions`: the backend asks for an extra bank check. Plaid bills each
//! `/transactions/refresh`, so plaid_sync never calls it on its own, and a request is queued
//! only within the daily budgets (`plaid_sync.refreshes_per_item_per_day`,
//! `plaid_sync.refreshes_per_day`). New data comes back as SYNC_UPDATES_AVAILABLE.

use pgrx::prelude::*;

use super::live_item;
use crate::database::ok;
use crate::error::{Error, Result};
use crate::inbox::enqueue_notice;
use crate::store::paid_calls;
use crate::{gucs, validate};

fn refresh_transactions(item_id: Option<&str>) -> Result<i64> {
    let item_id = validate::item_id(item_id)?;
    crate::database::require_current_sql()?;
    let status = live_item(item_id)?;
    if crate::sync::PAUSED.contains(&status.as_str()) {
        return Err(Error::invalid(format!(
            "Item {item_id} is {status}: Plaid cannot refresh it until it is repaired"
        )));
    }
    served_by_workers()?;
    // A request while another still waits is folded into it, and costs nothing more. When
    // the budget refuses, the error rolls the queued row back with everything else.
    let job = enqueue_notice("TRANSACTIONS", "REFRESH", item_id, "{}", 0);
    paid_calls::book(
        item_id,
        "/transactions/refresh",
        job,
        gucs::refreshes_per_item_per_day(),
        gucs::refreshes_per_day(),
    )?;
    Ok(job)
}

/// A paid call is made only by a worker, which books and marks it in transactions of its own
/// (`plaid_process_inbox` leaves it): without a worker serving this database, it would wait
/// forever.
fn served_by_workers() -> Result<()> {
    let (workers, served) = (gucs::workers(), gucs::database());
    let here =
        crate::database::one::<String>("SELECT current_database()::text", &[]).unwrap_or_default();
    if workers == 0 {
        return Err(Error::not_configured(
            "paid calls are made only by the workers, and plaid_sync.workers is 0",
        ));
    }
    if served != here {
        return Err(Error::not_configured(format!(
            "paid calls are made only by the workers, which serve database {served}, not {here}"
        )));
    }
    Ok(())
}

/// Queues one `/transactions/refresh` for the Item (a paid call) and returns the inbox id.
/// While one waits to run, asking again returns the same id.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn plaid_refresh_transactions(item_id: Option<&str>) -> i64 {
    ok(refresh_transactions(item_id))
}
