//! A transactions sync: pages held or staged as they arrive, then applied with the new cursor
//! in one transaction, and the run recorded in `sync_runs`.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{from_plaid, pagination, pause_item};
use crate::database::{db, subtransaction};
use crate::job::{Job, Outcome};
use crate::plaid::{Client, PlaidError};
use crate::store;

struct Fetch<'a> {
    client: &'a Client,
    token: &'a str,
    ask: &'a Ask<'a>,
}
impl pagination::FetchPage for Fetch<'_> {
    fn fetch(
        &mut self,
        cursor: Option<&str>,
        count: u32,
    ) -> Result<crate::plaid::Response, PlaidError> {
        self.client.transactions_sync(
            self.token,
            cursor,
            count,
            self.ask.options,
            self.ask.adds_product,
        )
    }
}
/// Earlier pages a run can copy are held in memory up to 2 MiB (three pages of 500 rich
/// transactions; the last is held apart), so most first syncs stage nothing: no write, read
/// back and delete of their pages. Past it, the pages held are staged and holding starts again.
const RUN_EARLY_BYTES: usize = 2 << 20;
/// What all of one worker's runs hold so, at most (calls_in_flight runs could hold 64 MiB).
const WORKER_EARLY_BYTES: usize = 16 << 20;
static WORKER_EARLY: AtomicUsize = AtomicUsize::new(0);

fn hold(size: usize) -> bool {
    WORKER_EARLY
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |h| {
            (h + size <= WORKER_EARLY_BYTES).then_some(h + size)
        })
        .is_ok()
}

struct Stage {
    run_id: i64,
    job_id: i64,
    item_id: String,
    /// The last page, held: it is applied from memory, never staged.
    held: Option<store::HeldPage>,
    /// Earlier pages held instead of staged (each copyable, RUN_EARLY_BYTES in all at most).
    early: Vec<store::HeldPage>,
    early_bytes: usize,
    /// Whether every page so far can be loaded by COPY, and what their rows post over.
    copyable: store::transactions::Copyable,
}
impl pagination::Pages for Stage {
    /// Every page but the last is staged at once (committed on its own, in a worker, renewing
    /// the job's lease), unless the run's pages so far are copyable and small.
    fn keep(
        &mut self,
        page: u32,
        response: &crate::plaid::Response,
        read: &crate::codec::sync_page::SyncPage,
        last: bool,
    ) {
        // Marked here, off the database's thread: the row stores only what nothing rebuilds,
        // and a page of new transactions comes with its rows as COPY text.
        let marked = crate::codec::lean::mark_page(read, &self.item_id);
        let raw_objects = raw_objects(response);
        let (body, copy, accounts) = (
            marked.body,
            marked.copy.filter(|_| raw_objects.is_none()),
            marked.accounts,
        );
        self.copyable.page(copy.as_ref());
        let page = store::HeldPage {
            page: page as i32,
            body,
            request_id: response.request_id.clone(),
            raw_objects,
            copy,
            accounts,
        };
        let size = page.body.len() + page.copy.as_ref().map_or(0, |c| c.text.len());
        if last {
            self.held = Some(page);
        } else if !self.copyable.broken && self.early_bytes + size <= RUN_EARLY_BYTES && hold(size)
        {
            self.early_bytes += size;
            self.early.push(page);
            db(|| crate::inbox::renew_lease(self.job_id));
        } else {
            let early = std::mem::take(&mut self.early);
            self.release();
            db(|| {
                store::stage_held(self.run_id, early.iter().chain([&page]));
                crate::inbox::renew_lease(self.job_id);
            });
        }
    }
    fn discard(&mut self) {
        self.held = None;
        self.early.clear();
        self.release();
        self.copyable = Default::default();
        db(|| store::discard_pages(self.run_id));
    }
}

impl Stage {
    fn release(&mut self) {
        WORKER_EARLY.fetch_sub(std::mem::take(&mut self.early_bytes), Ordering::SeqCst);
    }
}
impl Drop for Stage {
    fn drop(&mut self) {
        self.release();
    }
}

/// The objects of a page that held characters Postgres refuses, exactly as Plaid sent them:
/// `{"transactions": {id: text}, "accounts": {id: text}}`, or None when there are none.
pub fn raw_objects(response: &crate::plaid::Response) -> Option<String> {
    response.raw.as_ref()?;
    let mut transactions = serde_json::Map::new();
    for key in ["added", "modified"] {
        for (id, text) in response.altered(key, "transaction_id") {
            transactions.insert(id, text.into());
        }
    }
    let accounts: serde_json::Map<_, _> = response
        .altered("accounts", "account_id")
        .into_iter()
        .map(|(id, text)| (id, text.into()))
        .collect();
    Some(serde_json::json!({"transactions": transactions, "accounts": accounts}).to_string())
}

/// What a sync asks Plaid for: the settings' options, and whether it adds Transactions to
/// the Item (then `days_requested` goes with its first call).
pub struct Ask<'a> {
    pub options: &'a crate::plaid::SyncOptions,
    pub adds_product: bool,
}

/// Any sync: pages staged as they come, then applied with the new cursor in one step.
#[allow(clippy::too_many_arguments)]
pub fn sync_transactions(
    job: &Job,
    client: &Client,
    item_id: &str,
    token: &str,
    cursor: Option<String>,
    trigger: &str,
    backfill: bool,
    ask: &Ask,
) -> Outcome {
    let run_id = db(|| store::runs::start(item_id, job.id, trigger, None));
    let start = if backfill { None } else { cursor };
    let mut stage = Stage {
        run_id,
        job_id: job.id,
        item_id: item_id.to_string(),
        held: None,
        early: Vec::new(),
        early_bytes: 0,
        copyable: Default::default(),
    };
    let result = pagination::sync_pages(
        &mut Fetch { client, token, ask },
        &mut stage,
        start.as_deref(),
    );
    // Everything below is one transaction: the pages, the cursor and the run's record
    // become visible together.
    // A backfill sees stored transactions again: only the SQL apply takes those.
    let copy = (!backfill && !stage.copyable.broken).then_some(&stage.copyable.posted_over[..]);
    let held = (&stage.early[..], stage.held.as_ref());
    db(|| finish_sync(run_id, item_id, backfill, result, held, copy))
}

fn finish_sync(
    run_id: i64,
    item_id: &str,
    backfill: bool,
    result: Result<pagination::Summary, (PlaidError, pagination::Summary)>,
    (early, last): (&[store::HeldPage], Option<&store::HeldPage>),
    copy: Option<&[String]>,
) -> Outcome {
    let mut rejected = 0;
    let mut applied_by = None;
    let (summary, outcome) = match result {
        Ok(s) if let Some(end) = super::withdrawn(item_id) => (s, end),
        Ok(s) => {
            // A run of new transactions only is loaded by COPY; if that fails for any reason
            // (an id already stored, a value a column refuses) the SQL apply takes the run.
            let copied = match (last, copy) {
                (Some(held), Some(posted_over)) if held.copy.is_some() => {
                    match subtransaction(true, || {
                        store::transactions::copy_run(run_id, item_id, early, held, posted_over)
                    }) {
                        Ok(()) => true,
                        Err(why) => {
                            // Expected now and then (Plaid sends a stored id again): not a warning.
                            pgrx::debug1!("plaid_sync: sync run {run_id} applied by SQL: {why}");
                            false
                        }
                    }
                }
                _ => false,
            };
            applied_by = Some(if copied { "copy" } else { "upsert" });
            let sent = last
                .and_then(|l| l.accounts.as_deref())
                .filter(|a| copied && a.starts_with('['));
            let last = store::Last::parse(last);
            let mut rejects = if copied {
                Vec::new()
            } else {
                // The SQL apply (and a backfill's sweep) reads every page from sync_pages.
                store::stage_held(run_id, early.iter());
                store::apply_pages(run_id, item_id, &last)
            };
            rejects.extend(store::apply_accounts(run_id, item_id, &last, sent));
            store::record_rejects(run_id, item_id, &rejects, &last);
            rejected = rejects.len() as i32;
            if backfill {
                store::remove_unseen(run_id, item_id, &last);
            }
            store::items::synced(
                item_id,
                s.next_cursor.as_deref(),
                s.update_status.as_deref(),
            );
            store::products::synced(item_id, "transactions");
            store::products::queue_first_reads(item_id);
            store::changes::notify(
                item_id,
                "transactions",
                run_id,
                s.added as i32,
                s.modified as i32,
                s.removed as i32,
            );
            let note = (rejected > 0).then(|| {
                format!("applied; {rejected} left out that could not be applied: see plaid_sync.sync_rejects")
            });
            (s, Outcome::Done(note))
        }
        Err((e, s)) => {
            pause_item(item_id, &e);
            (s, from_plaid("/transactions/sync", e))
        }
    };
    // Applied or abandoned, the staged pages are no longer needed.
    store::discard_pages(run_id);
    store::runs::finish(
        item_id,
        run_id,
        &store::runs::Finished {
            pages: summary.pages as i32,
            restarts: summary.restarts as i32,
            counts: (
                summary.added as i32,
                summary.modified as i32,
                summary.removed as i32,
            ),
            request_ids: &summary.request_ids,
            outcome: outcome.run_label(),
            error: outcome.message(),
            rejected,
            applied_by,
        },
    );
    outcome
}

/// TRANSACTIONS webhooks and backend backfills, and the scheduled resync.
pub fn transactions(job: &Job, ctx: &crate::job::Ctx, item_id: &str) -> Outcome {
    let (client, settings) = (ctx.client.as_ref(), &ctx.settings);
    let resync = job.body["reason"] == "resync_interval";
    let c = match super::prologue(item_id, "transactions", settings) {
        Ok(c) => c,
        // An Item without Transactions: its resync reads the Item and its accounts again.
        Err(o) if resync && o == super::not_callable("transactions") => {
            return super::reread_item(job, ctx, item_id);
        }
        Err(o) => return o,
    };
    if job.webhook_code == "SYNC_UPDATES_AVAILABLE" {
        let body = job.body.to_string();
        db(|| store::items::store_update_flags(item_id, &body));
    }
    // The daily resync also reads Plaid's own freshness (/item/get is free); a failure here
    // is the sync's to meet.
    if resync && let Ok(v) = client.item_get(&c.token).and_then(|r| r.json()) {
        let status = v["status"].to_string();
        db(|| store::items::store_plaid_status(item_id, &status));
    }
    let backfill = job.source == "backend" && job.webhook_code == "HISTORICAL_UPDATE";
    let trigger = if backfill {
        "backfill".to_string()
    } else {
        format!("{}/{}", job.webhook_type, job.webhook_code)
    };
    let ask = Ask {
        options: &settings.sync,
        adds_product: c.adds_product,
    };
    sync_transactions(
        job, client, item_id, &c.token, c.cursor, &trigger, backfill, &ask,
    )
}
