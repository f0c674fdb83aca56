//! The job behind `plaid_refresh_transactions`: one `/transactions/refresh`, recorded in
//! `paid_calls`. Plaid then checks the bank and says SYNC_UPDATES_AVAILABLE if anything changed.

use super::{PAUSED, from_plaid, load_item, pause_item};
use crate::database::db;
use crate::job::{Job, Outcome};
use crate::plaid::Client;
use crate::store::paid_calls;

pub fn refresh_transactions(job: &Job, client: &Client, item_id: &str) -> Outcome {
    let (status, _, token) = match load_item(item_id) {
        Ok(x) => x,
        Err(o) => return o,
    };
    if PAUSED.contains(&status.as_str()) {
        let note = format!("skipped: Item is {status}");
        db(|| paid_calls::record(job.id, None, "skipped", Some(&note)));
        return Outcome::Done(Some(note));
    }
    if !db(|| paid_calls::start(job.id)) {
        return Outcome::Done(Some(
            "skipped: this paid call was started once already (Plaid bills each one)".into(),
        ));
    }
    match client.transactions_refresh(&token) {
        Ok(r) => {
            db(|| paid_calls::record(job.id, Some(&r.request_id), "ok", None));
            Outcome::Done(None)
        }
        Err(e) => {
            pause_item(item_id, &e);
            let request_id = e.request_id().map(str::to_string);
            let outcome = from_plaid("/transactions/refresh", e);
            db(|| {
                paid_calls::record(
                    job.id,
                    request_id.as_deref(),
                    outcome.run_label(),
                    outcome.message(),
                )
            });
            outcome
        }
    }
}
