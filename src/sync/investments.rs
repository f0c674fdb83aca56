//! Investment transactions: `/investments/transactions/get` read in offset pages (500 at a
//! time) over a date window, staged as they arrive, then applied in one step. The window is
//! the last 90 days for DEFAULT_UPDATE, and Plaid's whole 24 months for the first read,
//! HISTORICAL_UPDATE, and a DEFAULT_UPDATE that reports cancellations (either spelling of
//! the counter). Offsets shift when Plaid adds a transaction mid-read, so a changed total
//! restarts the window (at most 3 times); only a window read in full marks anything removed.
//! Holdings are a snapshot (`snapshot::HOLDINGS`).

use super::snapshot::{self, Snapshot};
use crate::database::{db, one};
use crate::job::{Ctx, Job, Outcome};
use crate::plaid::{Client, PlaidError, Response};
use crate::store::{self, changes, products, runs};

pub const PRODUCT: &str = "investments";
const PAGE: u32 = 500;
const RESTARTS: u32 = 3;

/// The window to read, in days back from today.
fn window_days(job: &Job) -> i32 {
    let cancelled = [
        "cancelled_investments_transactions",
        "canceled_investments_transactions",
    ]
    .iter()
    .any(|k| job.body[k].as_f64().is_some_and(|n| n > 0.0));
    match job.webhook_code.as_str() {
        "DEFAULT_UPDATE" if !cancelled => 90,
        _ => 730,
    }
}

enum Read {
    Done {
        pages: u32,
        restarts: u32,
        request_ids: Vec<String>,
    },
    Failed(PlaidError, Vec<String>),
    Unsettled(Vec<String>),
}

fn read_window(
    client: &Client,
    token: &str,
    run_id: i64,
    job_id: i64,
    start: &str,
    end: &str,
) -> Read {
    let mut request_ids = Vec::new();
    for restart in 0..=RESTARTS {
        db(|| store::discard_pages(run_id));
        let (mut offset, mut total, mut page) = (0u32, None, 0u32);
        let settled = loop {
            let r: Response =
                match client.investments_transactions_get(token, start, end, offset, PAGE) {
                    Ok(r) => r,
                    Err(e) => return Read::Failed(e, request_ids),
                };
            request_ids.push(r.request_id.clone());
            let v = match r.json() {
                Ok(v) => v,
                Err(e) => return Read::Failed(e, request_ids),
            };
            let n = v["investment_transactions"].as_array().map_or(0, Vec::len) as u32;
            let t = v["total_investment_transactions"].as_u64().unwrap_or(0) as u32;
            if total.is_some_and(|was| was != t) {
                break false; // the list moved under the offsets
            }
            total = Some(t);
            page += 1;
            db(|| {
                store::stage_page(run_id, page as i32, &r.body, &r.request_id, None, None);
                crate::inbox::renew_lease(job_id);
            });
            offset += n;
            if n == 0 || offset >= t {
                break true;
            }
        };
        if settled {
            return Read::Done {
                pages: page,
                restarts: restart,
                request_ids,
            };
        }
    }
    Read::Unsettled(request_ids)
}

/// INVESTMENTS_TRANSACTIONS webhooks, and the first read.
pub fn investment_transactions(job: &Job, ctx: &Ctx, item_id: &str) -> Outcome {
    let client = ctx.client.as_ref();
    let token = match super::prologue(item_id, PRODUCT, &ctx.settings) {
        Ok(c) => c.token,
        Err(o) => return o,
    };
    let days = window_days(job);
    let (run_id, start, end) = db(|| {
        let trigger = format!("{}/{}", job.webhook_type, job.webhook_code);
        let run_id = runs::start(item_id, job.id, &trigger, Some("investments"));
        let start =
            // Plaid's date format, whatever DateStyle the session has.
            one::<String>("SELECT to_char(current_date - $1, 'YYYY-MM-DD')", &[days.into()])
                .expect("start");
        let end = one::<String>("SELECT to_char(current_date, 'YYYY-MM-DD')", &[]).expect("end");
        (run_id, start, end)
    });
    let read = read_window(client, &token, run_id, job.id, &start, &end);
    db(|| match read {
        Read::Done {
            pages,
            restarts,
            request_ids,
        } => {
            if let Some(end) = super::withdrawn(item_id) {
                store::discard_pages(run_id);
                snapshot::finish_run(item_id, run_id, (0, 0, 0), &request_ids, &end);
                return end;
            }
            let counts = store::investments::apply_transactions(run_id, item_id, &start, &end);
            store::discard_pages(run_id);
            products::synced(item_id, PRODUCT);
            changes::notify(item_id, PRODUCT, run_id, counts.0, counts.1, counts.2);
            let outcome = Outcome::Done(None);
            snapshot::finish_run(item_id, run_id, counts, &request_ids, &outcome);
            runs::record_pages(item_id, run_id, pages, restarts);
            outcome
        }
        Read::Failed(e, request_ids) => {
            store::discard_pages(run_id);
            snapshot::failed(
                item_id,
                run_id,
                PRODUCT,
                "/investments/transactions/get",
                e,
                request_ids,
            )
        }
        Read::Unsettled(request_ids) => {
            store::discard_pages(run_id);
            let outcome = Outcome::Retry(format!(
                "Plaid's investment transactions kept changing while they were read ({RESTARTS} restarts)"
            ));
            snapshot::finish_run(item_id, run_id, (0, 0, 0), &request_ids, &outcome);
            outcome
        }
    })
}

/// HOLDINGS: DEFAULT_UPDATE, and the first read.
pub const HOLDINGS: Snapshot = Snapshot {
    product: PRODUCT,
    endpoint: "/investments/holdings/get",
    call: Client::investments_holdings_get,
    apply: store::investments::apply_holdings,
};
