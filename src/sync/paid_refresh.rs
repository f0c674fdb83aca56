//! The job behind `plaid_refresh_transactions`: one `/transactions/refresh`, recorded in
//! `paid_calls`. Plaid then checks the bank and says SYNC_UPDATES_AVAILABLE if anything changed.

use super::{from_plaid, pause_item, prologue};
use crate::database::db;
use crate::job::{Job, Outcome};
use crate::plaid::{Client, PlaidError};
use crate::store::paid_calls;

pub fn refresh_transactions(
    job: &Job,
    client: &Client,
    item_id: &str,
    settings: &crate::job::JobSettings,
) -> Outcome {
    let token = match prologue(item_id, "transactions", settings) {
        Ok(c) => c.token,
        Err(ended) => {
            // Not made (a paused Item, or no token any more): the booking says why.
            db(|| paid_calls::record(job.id, None, "skipped", ended.message()));
            return ended;
        }
    };
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
            // Plaid answered with an error: it bills only successful calls, so a retry may
            // call again. A call with no answer (a timeout) may have been billed: never again.
            let answered = matches!(e, PlaidError::Api { .. });
            let request_id = e.request_id().map(str::to_string);
            let outcome = from_plaid("/transactions/refresh", e);
            let again = answered && matches!(outcome, Outcome::Retry(_) | Outcome::Throttled(_));
            db(|| {
                if again {
                    paid_calls::unmark(job.id, request_id.as_deref(), outcome.message());
                } else {
                    paid_calls::record(
                        job.id,
                        request_id.as_deref(),
                        outcome.run_label(),
                        outcome.message(),
                    )
                }
            });
            outcome
        }
    }
}
