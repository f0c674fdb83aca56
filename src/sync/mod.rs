//! What each job does. A job reads what it needs from the database, calls Plaid, and writes
//! the result; `runner.rs` decides when, and records the outcome. Here: what every job shares
//! (Plaid errors to outcomes, pausing an Item, loading its token, the prologue of every
//! product's job); `item.rs` the ITEM jobs,
//! `transactions.rs` a sync, `pagination.rs` its loop, `paid_refresh.rs` the paid `/transactions/refresh`,
//! `snapshot.rs` products read as a whole per call (recurring streams, liabilities,
//! holdings), `investments.rs` investment transactions.

pub mod investments;
pub mod item;
pub mod pagination;
pub mod paid_refresh;
pub mod snapshot;
pub mod transactions;

pub use item::{item_webhook, remove_at_plaid, reread_item, update_webhook};
pub use transactions::{sync_transactions, transactions};

use crate::database::db;
use crate::job::Outcome;
use crate::plaid::{Class, PlaidError};

pub(crate) fn from_plaid(call: &str, e: PlaidError) -> Outcome {
    let msg = format!("Plaid {call}: {e}");
    if e.is_rate_limited() {
        return Outcome::Throttled(msg);
    }
    match e.class() {
        Class::Transient | Class::MutationDuringPagination => Outcome::Retry(msg),
        Class::ItemState(_) => Outcome::ItemPaused(msg),
        Class::Fatal => Outcome::Failed(msg),
    }
}

/// Sets the status an Item-level Plaid error implies, and keeps the error.
pub(crate) fn pause_item(item_id: &str, e: &PlaidError) {
    if let Class::ItemState(status) = e.class() {
        let error = e.to_json();
        let error = error.to_string();
        db(|| crate::store::items::pause(item_id, status, &error));
    }
}

/// An Item a product's job may call Plaid for.
pub(crate) struct Callable {
    pub cursor: Option<String>,
    pub token: String,
}

/// What every product's job does first (transactions, recurring streams, liabilities,
/// investments, the paid refresh): load the Item and open its token; leave a paused Item
/// alone; and, for a product other than Transactions, call only when the Item has it
/// (`/item/get`), since a first call adds the product to Plaid's bill. `Err` ends the job.
pub(crate) fn prologue(
    item_id: &str,
    product: Option<&str>,
    settings: &crate::job::JobSettings,
) -> Result<Callable, Outcome> {
    let (status, cursor, token) = load_item(item_id)?;
    if PAUSED.contains(&status.as_str()) {
        return Err(Outcome::Done(Some(format!("skipped: Item is {status}"))));
    }
    let add_consented = settings.add_consented_products;
    if let Some(p) = product
        && !db(|| crate::store::products::callable(item_id, p, add_consented))
    {
        return Err(Outcome::Done(Some(format!(
            "ignored: the Item does not have {p} (by /item/get), or Plaid ruled it out"
        ))));
    }
    Ok(Callable { cursor, token })
}

/// Statuses in which syncs are paused until the backend (or Plaid) says the Item is repaired.
pub const PAUSED: &[&str] = &[
    "login_required",
    "revoked",
    "invalid_token",
    "error",
    "removed",
];

/// Item, its status and its decrypted token; `Err` ends the job.
pub(crate) fn load_item(item_id: &str) -> Result<(String, Option<String>, String), Outcome> {
    // One step: the Item's state and its token read in the same transaction.
    let (item, token) = db(|| {
        let item = crate::store::items::status_and_cursor(item_id);
        let token = item.as_ref().map(|_| crate::store::token::open(item_id));
        (item, token)
    });
    let (Some((status, cursor)), Some(token)) = (item, token) else {
        return Err(Outcome::Done(Some(format!("Item {item_id} is not known"))));
    };
    match token {
        Ok(Some(token)) => Ok((status, cursor, token)),
        Ok(None) => Err(Outcome::Done(Some(format!(
            "Item {item_id} has no access token (removed)"
        )))),
        Err(e) => Err(Outcome::Failed(e.to_string())),
    }
}
