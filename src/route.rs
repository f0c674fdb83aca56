//! Which handler takes which inbox row: a Plaid-origin row is verified first (and waits for
//! its Item if it came before the announcement), then each (source, type, code) goes to its
//! job in `sync/`. Running it (claim, lock, record) is `runner.rs`'s.

use crate::database::db;
use crate::inbox::{mark_coalesced, queued_triggers, record, waiting_for_item};
use crate::job::{Ctx, Job, Outcome};
use crate::sync;

/// Queued sync triggers of the same Item, received before this sync starts, are folded into
/// it. Plaid-origin ones are verified first: a forged one is rejected, not absorbed.
fn coalesce(job: &Job, ctx: &Ctx) {
    if job.webhook_type != "TRANSACTIONS" {
        return;
    }
    let queued = db(|| queued_triggers(job));
    let mut absorbed = Vec::new();
    for (qid, from_plaid) in queued {
        if !from_plaid {
            absorbed.push(qid);
            continue;
        }
        match crate::webhook::verify_job(qid, ctx) {
            Ok(()) => absorbed.push(qid),
            Err(refusal @ crate::webhook::Refusal::Reject(_)) => {
                let job = Job {
                    id: qid,
                    attempts: 1,
                    ..job.clone()
                };
                db(|| record(&job, &Outcome::Rejected(refusal.to_string())));
            }
            Err(crate::webhook::Refusal::Retry(_)) => {} // it runs on its own later
        }
    }
    if !absorbed.is_empty() {
        db(|| mark_coalesced(job.id, absorbed));
    }
}

/// What the job is, dispatched.
pub fn run(job: &Job, ctx: &Ctx) -> Outcome {
    let client = ctx.client.as_ref();
    let Some(item_id) = job.item_id.as_deref() else {
        return Outcome::Done(Some("ignored: no item_id".into()));
    };
    if job.source == "plaid" {
        // Verified first: a forged webhook is rejected at once, whatever Item it names.
        match crate::webhook::verify_job(job.id, ctx) {
            Ok(()) => {}
            Err(refusal @ crate::webhook::Refusal::Reject(_)) => {
                return Outcome::Rejected(refusal.to_string());
            }
            Err(crate::webhook::Refusal::Retry(r)) => return Outcome::Retry(r),
        }
        // Plaid may be quicker than the backend: a webhook for an Item nobody announced yet
        // sleeps until the announcement wakes it, or the grace ends. A purged Item keeps only
        // its id: nothing Plaid says of it is kept. One step: each is a trip to the main thread.
        let ends = db(|| match waiting_for_item(job.id, item_id) {
            Some(true) => Some(Outcome::Wait(format!(
                "waiting for Item {item_id} to be announced"
            ))),
            Some(false) => Some(Outcome::Done(Some(format!(
                "ignored: Item {item_id} was not announced within plaid_sync.unknown_item_grace"
            )))),
            None if crate::store::items::purged(item_id) => Some(Outcome::Done(Some(format!(
                "ignored: Item {item_id} was purged"
            )))),
            None => {
                crate::store::items::webhook_received(item_id);
                None
            }
        });
        if let Some(outcome) = ends {
            return outcome;
        }
    }
    match (
        job.source.as_str(),
        job.webhook_type.as_str(),
        job.webhook_code.as_str(),
    ) {
        ("backend", "ITEM", "CREATED" | "UPDATED") => sync::reread_item(job, ctx, item_id),
        ("backend", "ITEM", "WEBHOOK_UPDATE") => sync::update_webhook(job, client, item_id),
        ("backend", "ITEM", "REMOVE") => sync::remove_at_plaid(job, client, item_id),
        (_, "TRANSACTIONS", "RECURRING_TRANSACTIONS_UPDATE") => {
            sync::snapshot::snapshot(job, ctx, item_id, &sync::snapshot::RECURRING)
        }
        ("backend", "TRANSACTIONS", "REFRESH") => {
            sync::paid_refresh::refresh_transactions(job, client, item_id, &ctx.settings)
        }
        (_, "TRANSACTIONS", _) => {
            coalesce(job, ctx);
            sync::transactions(job, ctx, item_id)
        }
        (_, "HOLDINGS", "DEFAULT_UPDATE") => {
            sync::snapshot::snapshot(job, ctx, item_id, &sync::investments::HOLDINGS)
        }
        (_, "INVESTMENTS_TRANSACTIONS", "DEFAULT_UPDATE" | "HISTORICAL_UPDATE") => {
            sync::investments::investment_transactions(job, ctx, item_id)
        }
        (_, "LIABILITIES", "DEFAULT_UPDATE") => {
            sync::snapshot::snapshot(job, ctx, item_id, &sync::snapshot::LIABILITIES)
        }
        ("plaid", "ITEM", _) => sync::item_webhook(job, item_id, &ctx.settings),
        // A job made to panic, for the tests of how a bug in a job ends (debug builds only).
        #[cfg(debug_assertions)]
        ("backend", "PLAID_SYNC_TEST", "PANIC") => panic!("a job made to panic (src/route.rs:1:1)"),
        (_, t, c) => Outcome::Done(Some(format!(
            "ignored: {t}/{c} is not a code plaid_sync acts on"
        ))),
    }
}
