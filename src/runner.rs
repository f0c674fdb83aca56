//! Claim, run and record inbox jobs. `plaid_process_inbox` runs them one by one inside the
//! caller's transaction; a worker runs many at once (src/job_threads.rs), each on a job thread whose
//! database steps run on the main thread in short transactions of their own (`db`), so no
//! transaction is open while Plaid is called. Which handler a job goes to is `route.rs`'s.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use pgrx::prelude::*;

use crate::database::{one, try_db};
use crate::gucs;
use crate::inbox::{claim, record, release};
use crate::job::{Ctx, Job, Outcome};
use crate::plaid::{Client, Config};

thread_local! {
    /// The context of the last job and the settings it was made from: a worker reuses it
    /// (and the client's connections) until a reload changes them.
    static CONTEXT: std::cell::RefCell<Option<(Config, String, Arc<Ctx>)>> = const { std::cell::RefCell::new(None) };
}

/// The Plaid client and the job settings in force (read on the main thread, which is the
/// only one that may read settings).
pub fn context() -> Result<Arc<Ctx>, String> {
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
        max_idle_connections: gucs::calls_in_flight() as usize,
        pacer: None,
    };
    let limits = gucs::rate_limits();
    let settings = gucs::job_settings();
    Ok(CONTEXT.with(|cached| {
        let mut cached = cached.borrow_mut();
        match cached.as_ref() {
            Some((c, l, ctx)) if *c == config && *l == limits && ctx.settings == settings => {
                ctx.clone()
            }
            Some((c, l, ctx)) if *c == config && *l == limits => {
                // Only the job settings changed: the client (and its connections) stays.
                let ctx = Arc::new(Ctx {
                    client: ctx.client.clone(),
                    settings,
                });
                *cached = Some((config, limits, ctx.clone()));
                ctx
            }
            _ => {
                let pacer = crate::pace::SharedPacer {
                    // Checked when set (src/gucs.rs), so it parses.
                    limits: crate::plaid::limits::parse(&limits).unwrap_or_else(|_| {
                        crate::plaid::limits::parse("").expect("the default table parses")
                    }),
                };
                let ctx = Arc::new(Ctx {
                    client: Arc::new(Client::new(Config {
                        pacer: Some(Arc::new(pacer)),
                        ..config.clone()
                    })),
                    settings,
                });
                *cached = Some((config, limits, ctx.clone()));
                ctx
            }
        }
    }))
}

/// `plaid_process_inbox`: up to `max_jobs` due jobs, in this transaction. A paid call is left
/// to the workers: this transaction could roll back its booking after Plaid billed it.
pub fn process_inbox_in_transaction(max_jobs: i32) -> i32 {
    let mut ran = 0;
    let mut ctx = None;
    while ran < max_jobs {
        let Some((job, more_due)) = claim(0, 1) else {
            break;
        };
        crate::store::runs::close_abandoned(job.id, job.item_id.as_deref());
        crate::wake::on_claim(more_due);
        // Given back for a later claim: dated past this transaction's now(), so not met again here.
        if job.is_paid() || !lock_item(&job) {
            release(&job);
            continue;
        }
        if ctx.is_none() {
            ctx = Some(match context() {
                Ok(c) => c,
                Err(m) => {
                    crate::database::raise(crate::error::Error::not_configured(m));
                }
            });
        }
        crate::pace::set_lane(job.lane);
        let outcome = crate::route::run(&job, ctx.as_ref().unwrap());
        record(&job, &outcome);
        crate::tally::add(crate::tally::Counter::JobsFinished);
        ran += 1;
    }
    ran
}

/// One job per Item at a time, whoever runs it. The claim has already skipped Items with a
/// job running in a live process; two claims racing for one Item are settled on the Item's
/// row, which only plaid_sync can lock (a row lock needs UPDATE on `items`; an advisory lock
/// any role with CONNECT could take and hold, stalling the Item). The row is locked without
/// waiting, then the Item is looked at again in a fresh snapshot: a job another process
/// claimed meanwhile is seen there. A worker's lock ends with its claim step (the `running`
/// row guards the Item from then on); `plaid_process_inbox` keeps it to the end of the
/// caller's transaction, where its `running` rows are not yet visible to others.
fn lock_item(job: &Job) -> bool {
    let Some(item_id) = job.item_id.as_deref() else {
        return true;
    };
    let locked = one::<bool>(
        "SELECT true FROM plaid_sync.items WHERE item_id = $1 FOR NO KEY UPDATE SKIP LOCKED",
        &[item_id.into()],
    )
    .is_some();
    if !locked
        && one::<bool>(
            "SELECT true FROM plaid_sync.items WHERE item_id = $1",
            &[item_id.into()],
        )
        .is_some()
    {
        return false; // another claim holds it
    }
    one::<bool>(
        "SELECT NOT EXISTS (
             SELECT 1 FROM plaid_sync.inbox r
              WHERE r.item_id = $1 AND r.id <> $2 AND r.status = 'running' AND r.locked_until >= now()
                AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = r.locked_by))",
        &[item_id.into(), job.id.into()],
    )
    .unwrap_or(false)
}

/// What a worker found when it looked for a job.
pub enum Next {
    /// Claimed and its Item locked; whether more jobs are due.
    Job(Job, bool),
    /// Nothing due in the lanes asked for.
    Idle,
    /// Claimed, but its Item is busy in another process: given back.
    Busy,
    /// No `plaid_sync` extension in the workers' database (not created yet, or dropped).
    NotInstalled,
    /// The SQL objects are another version than the library (the version they are).
    Skewed(String),
    /// The claim's step failed (its message); the worker goes on.
    Failed(String),
}

/// A worker's claim (a database step on the main thread): the next job in the first of
/// `lanes` that has one.
pub fn next(lanes: &[i16]) -> Next {
    let found = try_db(|| {
        if !crate::database::sql_is_current_recently() {
            match crate::database::sql_version() {
                None => return Next::NotInstalled,
                Some(v) if v != crate::database::LIBRARY_VERSION => return Next::Skewed(v),
                Some(_) => crate::database::sql_is_current_now(),
            }
        }
        // Lanes in order: one ordered index scan over both, or the backlog before fresh work.
        let claimed = match lanes {
            [0, 1] => claim(0, 1),
            _ => lanes.iter().find_map(|&l| claim(l, l)),
        };
        let Some((job, more_due)) = claimed else {
            return Next::Idle;
        };
        // A sync a dead process left behind is closed, and its staged pages dropped.
        crate::store::runs::close_abandoned(job.id, job.item_id.as_deref());
        if !lock_item(&job) {
            release(&job);
            return Next::Busy;
        }
        Next::Job(job, more_due)
    });
    found.unwrap_or_else(|e| {
        // Most likely the extension was dropped or updated under us: that is no error.
        crate::database::sql_version_unknown();
        match try_db(crate::database::sql_version) {
            Ok(None) => Next::NotInstalled,
            Ok(Some(v)) if v != crate::database::LIBRARY_VERSION => Next::Skewed(v),
            _ => Next::Failed(e),
        }
    })
}

/// Runs a claimed job on a job thread. An ERROR or panic inside the job fails that job, not
/// the worker.
pub fn run_claimed(job: &Job, ctx: &Ctx) -> Outcome {
    crate::pace::set_lane(job.lane);
    match std::panic::catch_unwind(AssertUnwindSafe(|| crate::route::run(job, ctx))) {
        Ok(o) => o,
        Err(payload) => Outcome::Internal(crate::job::internal_error(
            &crate::database::panic_message(payload),
        )),
    }
}

/// Records a finished job (a database step on the main thread). A bug
/// is logged here, once, with the job it ended.
pub fn finish(job: &Job, outcome: &Outcome) {
    crate::tally::add(crate::tally::Counter::JobsFinished);
    if let Outcome::Internal(m) = outcome {
        warning!(
            "plaid_sync: job {} ({}/{}) failed: {m}",
            job.id,
            job.webhook_type,
            job.webhook_code
        );
    }
    if let Err(e) = try_db(|| record(job, outcome)) {
        // The lease brings the job back.
        crate::database::sql_version_unknown();
        log!("plaid_sync: job {} could not be recorded: {e}", job.id);
    }
}
