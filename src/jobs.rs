//! Claim, run and record inbox jobs. `plaid_process_inbox` runs them inside the caller's
//! transaction; a worker runs the same functions with each database step in a short
//! transaction of its own (`db`), so no transaction is open while Plaid is called.

use std::panic::AssertUnwindSafe;

use pgrx::prelude::*;

use crate::database::{db, one};
use crate::gucs;
use crate::inbox::queue::{
    claim, mark_coalesced, queued_triggers, record, release, waiting_for_item,
};
use crate::job::{Job, Outcome};
use crate::plaid::{Client, Config};
use crate::sync;

thread_local! {
    /// The client of the last job and the settings it was built from: a worker reuses it
    /// (and its connections) until a reload changes them.
    static CLIENT: std::cell::RefCell<Option<(Config, std::rc::Rc<Client>)>> = const { std::cell::RefCell::new(None) };
}

/// The Plaid client for the current settings (read on the main thread).
pub fn client() -> Result<std::rc::Rc<Client>, String> {
    let secret = gucs::secret().ok_or("plaid_sync.secret is not set")?;
    let client_id = gucs::client_id().ok_or("plaid_sync.client_id is not set")?;
    let base_url = gucs::api_url()
        .unwrap_or_else(|| crate::plaid::client::base_url_for(gucs::environment().as_str()).into());
    let config = Config {
        base_url,
        client_id,
        secret,
        connect_timeout: std::time::Duration::from_millis(gucs::connect_timeout_ms()),
        request_timeout: std::time::Duration::from_millis(gucs::request_timeout_ms()),
        interrupted: crate::wake::interrupt_check(),
    };
    Ok(CLIENT.with(|cached| {
        let mut cached = cached.borrow_mut();
        match cached.as_ref() {
            Some((c, client)) if *c == config => client.clone(),
            _ => {
                let client = std::rc::Rc::new(Client::new(config.clone()));
                *cached = Some((config, client.clone()));
                client
            }
        }
    }))
}

/// Queued sync triggers of the same Item, received before this sync starts, are folded into
/// it. Plaid-origin ones are verified first: a forged one is rejected, not absorbed.
fn coalesce(job: &Job, client: &Client) {
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
        match crate::webhook::verify_job(qid, client) {
            Ok(()) => absorbed.push(qid),
            Err(crate::webhook::Refusal::Reject(r)) => {
                let job = Job {
                    id: qid,
                    attempts: 1,
                    ..job.clone()
                };
                db(|| record(&job, &Outcome::Rejected(format!("rejected: {r}"))));
            }
            Err(crate::webhook::Refusal::Retry(_)) => {} // it runs on its own later
        }
    }
    if !absorbed.is_empty() {
        db(|| mark_coalesced(job.id, absorbed));
    }
}

/// What the job is, dispatched.
pub fn run(job: &Job, client: &Client) -> Outcome {
    let Some(item_id) = job.item_id.as_deref() else {
        return Outcome::Done(Some("ignored: no item_id".into()));
    };
    if job.source == "plaid" {
        // Plaid may be quicker than the backend: a webhook for an Item nobody announced yet
        // waits for it, looking again every second, until the grace ends.
        let waiting = db(|| waiting_for_item(job.id, item_id));
        match waiting {
            Some(true) => {
                return Outcome::Wait(format!("waiting for Item {item_id} to be announced"));
            }
            Some(false) => {
                return Outcome::Done(Some(format!(
                    "ignored: Item {item_id} was not announced within plaid_sync.unknown_item_grace"
                )));
            }
            None => {}
        }
        match crate::webhook::verify_job(job.id, client) {
            Ok(()) => {}
            Err(crate::webhook::Refusal::Reject(r)) => {
                return Outcome::Rejected(format!("rejected: {r}"));
            }
            Err(crate::webhook::Refusal::Retry(r)) => return Outcome::Retry(r),
        }
        db(|| {
            Spi::run_with_args(
                "UPDATE plaid_sync.items SET last_webhook_at = now() WHERE item_id = $1",
                &[item_id.into()],
            )
            .expect("last_webhook_at")
        });
    }
    match (
        job.source.as_str(),
        job.webhook_type.as_str(),
        job.webhook_code.as_str(),
    ) {
        ("backend", "ITEM", "CREATED" | "UPDATED") => sync::refresh_item(job, client, item_id),
        ("backend", "ITEM", "WEBHOOK_UPDATE") => sync::update_webhook(job, client, item_id),
        ("backend", "ITEM", "REMOVE") => sync::remove_at_plaid(client, item_id),
        (_, "TRANSACTIONS", "RECURRING_TRANSACTIONS_UPDATE") => Outcome::Done(Some(
            "ignored: recurring transactions are not synced".into(),
        )),
        (_, "TRANSACTIONS", _) => {
            coalesce(job, client);
            sync::transactions(job, client, item_id)
        }
        ("plaid", "ITEM", _) => sync::item_webhook(job, item_id),
        (_, t, c) => Outcome::Done(Some(format!(
            "ignored: {t}/{c} is not a code plaid_sync acts on"
        ))),
    }
}

/// `plaid_process_inbox`: up to `max_jobs` due jobs, in this transaction.
pub fn process_inbox_in_transaction(max_jobs: i32) -> i32 {
    let mut ran = 0;
    let mut client = None;
    while ran < max_jobs {
        let Some(job) = claim() else { break };
        if !lock_item(&job, false) {
            release(&job);
            continue;
        }
        if client.is_none() {
            client = Some(match self::client() {
                Ok(c) => c,
                Err(m) => {
                    crate::database::raise(crate::error::Error::not_configured(m));
                }
            });
        }
        let outcome = run(&job, client.as_ref().unwrap());
        record(&job, &outcome);
        ran += 1;
    }
    ran
}

/// Advisory-lock class for "a job of this Item is running" (hashtext of the item_id is the key).
const ITEM_LOCK: i32 = 0x504c_4144; // "PLAD"

/// One job per Item at a time, whoever runs it: a worker holds a session lock for the job's
/// duration, `plaid_process_inbox` a transaction lock.
fn lock_item(job: &Job, session: bool) -> bool {
    let Some(item_id) = job.item_id.as_deref() else {
        return true;
    };
    let sql = if session {
        "SELECT pg_try_advisory_lock($1, hashtext($2))"
    } else {
        "SELECT pg_try_advisory_xact_lock($1, hashtext($2))"
    };
    one::<bool>(sql, &[ITEM_LOCK.into(), item_id.into()]).unwrap_or(false)
}

fn unlock_item(job: &Job) {
    if let Some(item_id) = job.item_id.as_deref() {
        one::<bool>(
            "SELECT pg_advisory_unlock($1, hashtext($2))",
            &[ITEM_LOCK.into(), item_id.into()],
        );
    }
}

/// What a worker's step did.
pub enum Step {
    Ran,
    Idle,
    NotInstalled,
    /// The SQL objects are another version than the library (the version they are).
    Skewed(String),
}

/// One job, worker style: claim and commit, run with each database step in its own short
/// transaction and no transaction open during Plaid calls, then record and commit. An ERROR
/// or panic inside the job fails that job, not the worker.
pub fn run_next() -> Step {
    let claimed = db(|| {
        match crate::database::sql_version() {
            None => return Err(Step::NotInstalled),
            Some(v) if v != crate::database::LIBRARY_VERSION => return Err(Step::Skewed(v)),
            Some(_) => {}
        }
        let job = claim().ok_or(Step::Idle)?;
        if !lock_item(&job, true) {
            release(&job);
            return Err(Step::Ran);
        }
        Ok(job)
    });
    let job = match claimed {
        Ok(job) => job,
        Err(step) => return step,
    };
    let outcome = match client() {
        Err(m) => Outcome::Retry(format!("not configured: {m}")),
        Ok(client) => match std::panic::catch_unwind(AssertUnwindSafe(|| run(&job, &client))) {
            Ok(o) => o,
            Err(payload) => {
                // Leave the failed transaction before touching the database again.
                unsafe {
                    pg_sys::FlushErrorState();
                    pg_sys::AbortCurrentTransaction();
                }
                Outcome::Failed(format!("internal error: {}", panic_message(payload)))
            }
        },
    };
    db(|| {
        record(&job, &outcome);
        unlock_item(&job);
    });
    Step::Ran
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(e) = payload.downcast_ref::<pgrx::pg_sys::panic::CaughtError>() {
        return crate::database::message(e);
    }
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}
