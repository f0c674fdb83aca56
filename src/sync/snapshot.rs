//! Products Plaid answers with a full snapshot per call (recurring streams, liabilities,
//! holdings): one call, applied in one step with its `sync_runs` row and change notice, only
//! for Items that have the product. A product's error is recorded on the product and leaves
//! the Item alone. `investments.rs` shares the run bookkeeping here.

use super::{from_plaid, pause_item, prologue};
use crate::database::db;
use crate::job::{Ctx, Job, Outcome};
use crate::plaid::{Client, PlaidError, ProductState, Response};
use crate::store::{changes, products, runs};

/// A snapshot product: its name (Plaid's), its endpoint, the call and the apply (which
/// returns rows added, changed and removed).
pub struct Snapshot {
    pub product: &'static str,
    pub endpoint: &'static str,
    pub call: fn(&Client, &str) -> Result<Response, PlaidError>,
    pub apply: fn(&str, &str) -> (i32, i32, i32),
}

/// RECURRING_TRANSACTIONS_UPDATE, and once after an Item's history is complete.
pub const RECURRING: Snapshot = Snapshot {
    product: "recurring_transactions",
    endpoint: "/transactions/recurring/get",
    call: Client::transactions_recurring_get,
    apply: crate::store::recurring::apply,
};

/// LIABILITIES: DEFAULT_UPDATE, and once after an Item is first synced.
pub const LIABILITIES: Snapshot = Snapshot {
    product: "liabilities",
    endpoint: "/liabilities/get",
    call: Client::liabilities_get,
    apply: crate::store::liabilities::apply,
};

pub fn snapshot(job: &Job, ctx: &Ctx, item_id: &str, p: &Snapshot) -> Outcome {
    let client = ctx.client.as_ref();
    let token = match prologue(item_id, p.product, &ctx.settings) {
        Ok(c) => c.token,
        Err(o) => return o,
    };
    let trigger = format!("{}/{}", job.webhook_type, job.webhook_code);
    let run_id = db(|| runs::start(item_id, job.id, &trigger, Some(p.product)));
    match (p.call)(client, &token) {
        Ok(r) => db(|| {
            if let Some(end) = super::withdrawn(item_id) {
                finish_run(
                    item_id,
                    run_id,
                    (0, 0, 0),
                    std::slice::from_ref(&r.request_id),
                    &end,
                );
                return end;
            }
            let counts = (p.apply)(item_id, &r.body);
            products::synced(item_id, p.product);
            changes::notify(item_id, p.product, run_id, counts.0, counts.1, counts.2);
            let outcome = Outcome::Done(None);
            finish_run(
                item_id,
                run_id,
                counts,
                std::slice::from_ref(&r.request_id),
                &outcome,
            );
            outcome
        }),
        Err(e) => {
            let request_ids: Vec<String> = e.request_id().map(str::to_string).into_iter().collect();
            db(|| failed(item_id, run_id, p.product, p.endpoint, e, request_ids))
        }
    }
}

/// A failed call: a product error is recorded on the product and leaves the Item alone;
/// anything else is handled as for any call.
pub fn failed(
    item_id: &str,
    run_id: i64,
    product: &str,
    endpoint: &str,
    e: PlaidError,
    request_ids: Vec<String>,
) -> Outcome {
    let error = e.to_json().to_string();
    let outcome = match e.product_state() {
        Some(state) => {
            products::failed(item_id, product, Some(state.label()), &error);
            let msg = format!("Plaid {endpoint}: {e}");
            match state {
                ProductState::NotReady => Outcome::Retry(msg),
                _ => Outcome::Done(Some(format!("{product} is {}: {msg}", state.label()))),
            }
        }
        None => {
            products::failed(item_id, product, None, &error);
            pause_item(item_id, &e);
            from_plaid(endpoint, e)
        }
    };
    finish_run(item_id, run_id, (0, 0, 0), &request_ids, &outcome);
    outcome
}

pub fn finish_run(
    item_id: &str,
    run_id: i64,
    counts: (i32, i32, i32),
    request_ids: &[String],
    outcome: &Outcome,
) {
    runs::finish(
        item_id,
        run_id,
        &runs::Finished {
            pages: 1,
            restarts: 0,
            counts,
            request_ids,
            outcome: outcome.run_label(),
            error: outcome.message(),
            rejected: 0,
            applied_by: None,
        },
    );
}
