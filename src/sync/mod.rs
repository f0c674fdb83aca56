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
pub use transactions::{Ask, sync_transactions, transactions};

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
    /// The Item lists the product only in `consented_products`: this call adds it.
    pub adds_product: bool,
}

/// What every product's job does first (transactions, recurring streams, liabilities,
/// investments, the paid refresh): load the Item and open its token; leave a paused Item
/// alone; and call only when the Item has the product (`/item/get`), since a first call adds
/// the product to Plaid's bill. `Err` ends the job.
pub(crate) fn prologue(
    item_id: &str,
    product: &str,
    settings: &crate::job::JobSettings,
) -> Result<Callable, Outcome> {
    let add_consented = settings.add_consented_products;
    let (status, cursor, token, gate) = load_item_with(item_id, || {
        crate::store::products::callable(item_id, product, add_consented)
    })?;
    if PAUSED.contains(&status.as_str()) {
        return Err(Outcome::Done(Some(format!("skipped: Item is {status}"))));
    }
    let Some(adds_product) = gate else {
        return Err(not_callable(product));
    };
    Ok(Callable {
        cursor,
        token,
        adds_product,
    })
}

/// `store::products::callable`, with the job's settings.
pub(crate) fn gate(
    item_id: &str,
    product: &str,
    settings: &crate::job::JobSettings,
) -> Option<bool> {
    let add_consented = settings.add_consented_products;
    db(|| crate::store::products::callable(item_id, product, add_consented))
}

pub(crate) fn not_callable(product: &str) -> Outcome {
    Outcome::Done(Some(format!(
        "ignored: the Item does not have {product} (by /item/get), or Plaid ruled it out"
    )))
}

/// Run first in a job's apply step: `Some` (the job's end) when the Item was removed, revoked
/// or purged while the job called Plaid, so nothing it read comes back live.
pub(crate) fn withdrawn(item_id: &str) -> Option<Outcome> {
    (!crate::store::items::lock_live(item_id)).then(|| {
        Outcome::Done(Some(
            "skipped: the Item was removed or revoked while the job ran; nothing applied".into(),
        ))
    })
}

/// Statuses in which syncs are paused until the backend (or Plaid) says the Item is repaired.
/// `error` is only for errors the user must act on (NO_ACCOUNTS, PRODUCTS_NOT_SUPPORTED); any
/// other ITEM: ERROR is recorded and the Item keeps syncing (README, Item states).
pub const PAUSED: &[&str] = &[
    "login_required",
    "revoked",
    "invalid_token",
    "error",
    "removed",
];

/// Item, its status and its decrypted token; `Err` ends the job.
pub(crate) fn load_item(item_id: &str) -> Result<(String, Option<String>, String), Outcome> {
    load_item_with(item_id, || ()).map(|(status, cursor, token, ())| (status, cursor, token))
}

/// `load_item`, and `also` read in the same step: each step is a trip to the main thread and
/// a transaction of its own, which a webhook's sync waits for.
pub(crate) fn load_item_with<T: Send>(
    item_id: &str,
    also: impl FnOnce() -> T + Send,
) -> Result<(String, Option<String>, String, T), Outcome> {
    // One statement reads the state and the token; opened on the main thread (the key is a
    // setting).
    let read = db(|| {
        crate::store::items::for_job(item_id).map(|(status, cursor, envelope)| {
            let token = crate::store::token::open_envelope(item_id, envelope.as_deref());
            (status, cursor, token, also())
        })
    });
    let Some((status, cursor, token, also)) = read else {
        return Err(Outcome::Done(Some(format!("Item {item_id} is not known"))));
    };
    match token {
        Ok(Some(token)) => Ok((status, cursor, token, also)),
        Ok(None) => Err(Outcome::Done(Some(format!(
            "Item {item_id} has no access token (removed)"
        )))),
        Err(e) => Err(Outcome::Failed(e.to_string())),
    }
}
