//! Claim, run and record inbox jobs. `plaid_process_inbox` runs them inside the caller's
//! transaction; a worker runs the same functions with each database step in a short
//! transaction of its own (`db`), so no transaction is open while Plaid is called.

use std::panic::AssertUnwindSafe;

use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;
use rand::Rng;

use crate::gucs;
use crate::plaid::{Client, Config};
use crate::sync::{self, Job, Outcome};

/// Runs `f` in the open transaction, or (in a worker, between steps) in a new one that
/// commits when `f` returns.
pub fn db<R>(f: impl FnOnce() -> R) -> R {
    if unsafe { pg_sys::IsTransactionState() } {
        f()
    } else {
        BackgroundWorker::transaction(AssertUnwindSafe(f))
    }
}

/// A long sync keeps its job's lease alive page by page.
pub fn renew_lease(job_id: i64) {
    Spi::run_with_args(
        "UPDATE plaid_sync.inbox SET locked_until = now() + make_interval(secs => $2)
          WHERE id = $1 AND status = 'running'",
        &[job_id.into(), gucs::job_lease_s().into()],
    )
    .expect("renew lease");
}

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
        interrupted: crate::worker::interrupt_check(),
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

/// Claims the oldest due job whose Item has no other job running, under a lease. A job whose
/// lease ran out, or whose process is gone (a crash), is claimable again.
pub fn claim() -> Option<Job> {
    // Kept plans: an idle worker woken by a commit runs this and nothing else.
    let job = crate::api::with_prepared(
        "WITH next AS (
             SELECT q.id FROM plaid_sync.inbox q
              WHERE q.status IN ('pending', 'running') AND q.run_after <= now()
                AND (q.status = 'pending' OR q.locked_until < now()
                     OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = q.locked_by))
                AND (q.item_id IS NULL OR NOT EXISTS (
                     SELECT 1 FROM plaid_sync.inbox r
                      WHERE r.item_id = q.item_id AND r.status = 'running'
                        AND r.locked_until >= now() AND r.id <> q.id
                        AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = r.locked_by)))
              ORDER BY q.id
              LIMIT 1
              FOR UPDATE SKIP LOCKED)
         UPDATE plaid_sync.inbox q
            SET status = 'running', attempts = q.attempts + 1,
                locked_until = now() + make_interval(secs => $1), locked_by = pg_backend_pid()
           FROM next WHERE q.id = next.id
         RETURNING q.id, q.source, q.webhook_type, q.webhook_code, q.item_id, q.body::text, q.attempts,
                   EXISTS (SELECT FROM plaid_sync.inbox m
                            WHERE m.status = 'pending' AND m.run_after <= now() AND m.id > q.id)",
        &[pg_sys::INT4OID],
        |c, stmt| {
            let rows = c
                .update(stmt, None, &[gucs::job_lease_s().into()])
                .expect("claim job");
            let r = rows.first();
            let id = r.get::<i64>(1).ok().flatten()?;
            let job = Job {
                id,
                source: r.get::<String>(2).ok()??,
                webhook_type: r.get::<String>(3).ok()??,
                webhook_code: r.get::<String>(4).ok()??,
                item_id: r.get::<String>(5).ok()?,
                body: serde_json::from_str(&r.get::<String>(6).ok()??).ok()?,
                attempts: r.get::<i32>(7).ok()??,
            };
            Some((job, r.get::<bool>(8).ok().flatten().unwrap_or(false)))
        },
    );
    let (job, more_due) = job?;
    // A sync a dead process left behind is closed, and its staged pages dropped.
    Spi::run_with_args(
        "WITH gone AS (
             UPDATE plaid_sync.sync_runs SET outcome = 'failed', finished_at = now(),
                    error = 'abandoned: the process running it stopped'
              WHERE inbox_id = $1 AND outcome = 'running' RETURNING id)
         DELETE FROM plaid_sync.sync_pages WHERE sync_run_id IN (SELECT id FROM gone)",
        &[job.id.into()],
    )
    .expect("close abandoned runs");
    crate::worker::on_claim(more_due);
    Some(job)
}

/// Queued sync triggers of the same Item, received before this sync starts, are folded into
/// it. Plaid-origin ones are verified first: a forged one is rejected, not absorbed.
fn coalesce(job: &Job, client: &Client) {
    if job.webhook_type != "TRANSACTIONS" {
        return;
    }
    let queued: Vec<(i64, bool)> = db(|| {
        Spi::connect(|c| {
            c.select(
                "SELECT id, source = 'plaid' FROM plaid_sync.inbox
                  WHERE item_id = $2 AND status = 'pending' AND id <> $1 AND webhook_type = 'TRANSACTIONS'
                    AND webhook_code <> 'RECURRING_TRANSACTIONS_UPDATE'
                    AND NOT (source = 'backend' AND webhook_code = 'HISTORICAL_UPDATE')
                  ORDER BY id LIMIT 10000",
                None,
                &[job.id.into(), job.item_id.as_deref().into()],
            )
            .expect("queued triggers")
            .filter_map(|r| Some((r.get::<i64>(1).ok()??, r.get::<bool>(2).ok()??)))
            .collect()
        })
    });
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
        db(|| {
            Spi::run_with_args(
                "UPDATE plaid_sync.inbox SET status = 'done', finished_at = now(),
                        last_error = 'coalesced into job ' || $1
                  WHERE id = ANY($2) AND status = 'pending'",
                &[job.id.into(), absorbed.into()],
            )
            .expect("coalesce")
        });
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
        let grace = gucs::unknown_item_grace_s();
        let waiting = db(|| {
            crate::api::one::<bool>(
                "SELECT q.received_at > now() - make_interval(secs => $2)
                   FROM plaid_sync.inbox q
                  WHERE q.id = $3 AND NOT EXISTS (SELECT 1 FROM plaid_sync.items i WHERE i.item_id = $1)",
                &[item_id.into(), grace.into(), job.id.into()],
            )
        });
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

/// Capped exponential backoff with jitter, in milliseconds.
pub fn backoff_ms(attempts: i32) -> i64 {
    let base = gucs::retry_base_ms();
    let exp = base.saturating_mul(1i64 << (attempts.clamp(1, 30) - 1));
    let capped = exp.min(gucs::retry_max_ms());
    rand::thread_rng().gen_range(capped / 2..=capped.max(1))
}

/// Writes the outcome on the inbox row.
pub fn record(job: &Job, outcome: &Outcome) {
    // (status, delay before it is due again, attempts given back)
    let (status, delay_ms, undo_attempt): (&str, i64, i32) = match outcome {
        Outcome::Done(_) | Outcome::ItemPaused(_) => ("done", 0, 0),
        Outcome::Rejected(_) => ("rejected", 0, 0),
        Outcome::Failed(_) => ("failed", 0, 0),
        Outcome::Retry(_) if job.attempts >= gucs::max_attempts() => ("failed", 0, 0),
        Outcome::Retry(_) => ("pending", backoff_ms(job.attempts), 0),
        // Re-checked every second: the Item's announcement does not have to find it.
        Outcome::Wait(_) => ("pending", 1_000, 1),
    };
    let error = match outcome {
        Outcome::ItemPaused(m) => Some(format!("Item paused: {m}")),
        Outcome::Retry(m) if status == "failed" => {
            Some(format!("{m} (gave up after {} attempts)", job.attempts))
        }
        other => other.message().map(str::to_string),
    };
    Spi::run_with_args(
        "UPDATE plaid_sync.inbox SET status = $2, last_error = $3, locked_until = NULL, locked_by = NULL,
                attempts = attempts - $5,
                run_after = CASE WHEN $2 = 'pending' THEN now() + make_interval(secs => $4 / 1000.0) ELSE run_after END,
                finished_at = CASE WHEN $2 = 'pending' THEN NULL ELSE now() END
          WHERE id = $1",
        &[job.id.into(), status.into(), error.into(), (delay_ms as f64).into(), undo_attempt.into()],
    )
    .expect("record job");
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
                    crate::api::raise(crate::error::Error::not_configured(m));
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
    crate::api::one::<bool>(sql, &[ITEM_LOCK.into(), item_id.into()]).unwrap_or(false)
}

fn unlock_item(job: &Job) {
    if let Some(item_id) = job.item_id.as_deref() {
        crate::api::one::<bool>(
            "SELECT pg_advisory_unlock($1, hashtext($2))",
            &[ITEM_LOCK.into(), item_id.into()],
        );
    }
}

/// Gives a claimed job back untouched (its Item is busy elsewhere), or folds it into an
/// identical notice queued meanwhile.
fn release(job: &Job) {
    Spi::run_with_args(
        "WITH twin AS (
             SELECT q.id FROM plaid_sync.inbox q
               JOIN plaid_sync.inbox me ON q.item_id = me.item_id AND q.webhook_type = me.webhook_type
                                       AND q.webhook_code = me.webhook_code
              WHERE me.id = $1 AND me.source = 'backend' AND me.attempts = 1
                AND q.source = 'backend' AND q.status = 'pending' AND q.attempts = 0
              LIMIT 1)
         UPDATE plaid_sync.inbox SET
                status = CASE WHEN EXISTS (SELECT 1 FROM twin) THEN 'done' ELSE 'pending' END,
                finished_at = CASE WHEN EXISTS (SELECT 1 FROM twin) THEN now() END,
                last_error = coalesce('folded into job ' || (SELECT id FROM twin), last_error),
                attempts = attempts - 1, locked_until = NULL, locked_by = NULL,
                run_after = now() + interval '200 milliseconds'
          WHERE id = $1",
        &[job.id.into()],
    )
    .expect("release job");
}

/// True once `CREATE EXTENSION plaid_sync` has run in this database.
fn extension_ready() -> bool {
    crate::api::one_prepared::<bool>(
        "SELECT true FROM pg_extension WHERE extname = 'plaid_sync'",
        &[],
        &[],
    )
    .is_some()
}

/// What a worker's step did.
pub enum Step {
    Ran,
    Idle,
    NotInstalled,
}

/// One job, worker style: claim and commit, run with each database step in its own short
/// transaction and no transaction open during Plaid calls, then record and commit. An ERROR
/// or panic inside the job fails that job, not the worker.
pub fn run_next() -> Step {
    let claimed = db(|| {
        if !extension_ready() {
            return Err(Step::NotInstalled);
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
    use pgrx::pg_sys::panic::CaughtError;
    if let Some(e) = payload.downcast_ref::<CaughtError>() {
        return match e {
            CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r.message().to_string(),
            CaughtError::RustPanic { ereport, .. } => ereport.message().to_string(),
        };
    }
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}
