//! Claim, run and record inbox jobs. `plaid_process_inbox` runs them here inside the caller's
//! transaction; the workers run the same functions.

use pgrx::prelude::*;
use rand::Rng;

use crate::gucs;
use crate::plaid::{Client, Config};
use crate::sync::{self, Job, Outcome};

/// The Plaid client from the current settings (read on the main thread).
pub fn client() -> Result<Client, String> {
    let secret = gucs::secret().ok_or("plaid_sync.secret is not set")?;
    let client_id = gucs::client_id().ok_or("plaid_sync.client_id is not set")?;
    let base_url = gucs::api_url()
        .unwrap_or_else(|| crate::plaid::client::base_url_for(gucs::environment().as_str()).into());
    Ok(Client::new(Config {
        base_url,
        client_id,
        secret,
        connect_timeout: std::time::Duration::from_millis(gucs::connect_timeout_ms()),
        request_timeout: std::time::Duration::from_millis(gucs::request_timeout_ms()),
    }))
}

/// Claims the oldest due job whose Item has no other job running, under a lease.
pub fn claim() -> Option<Job> {
    Spi::connect_mut(|c| {
        let rows = c
            .update(
                "WITH next AS (
                     SELECT q.id FROM plaid_sync.inbox q
                      WHERE q.status IN ('pending', 'running') AND q.run_after <= now()
                        AND (q.status = 'pending' OR q.locked_until < now())
                        AND (q.item_id IS NULL OR NOT EXISTS (
                             SELECT 1 FROM plaid_sync.inbox r
                              WHERE r.item_id = q.item_id AND r.status = 'running'
                                AND r.locked_until >= now() AND r.id <> q.id))
                      ORDER BY q.id
                      LIMIT 1
                      FOR UPDATE SKIP LOCKED)
                 UPDATE plaid_sync.inbox q
                    SET status = 'running', attempts = q.attempts + 1,
                        locked_until = now() + make_interval(secs => $1), locked_by = pg_backend_pid()
                   FROM next WHERE q.id = next.id
                 RETURNING q.id, q.source, q.webhook_type, q.webhook_code, q.item_id, q.body::text, q.attempts",
                None,
                &[gucs::job_lease_s().into()],
            )
            .expect("claim job");
        let r = rows.first();
        let id = r.get::<i64>(1).ok().flatten()?;
        Some(Job {
            id,
            source: r.get::<String>(2).ok()??,
            webhook_type: r.get::<String>(3).ok()??,
            webhook_code: r.get::<String>(4).ok()??,
            item_id: r.get::<String>(5).ok()?,
            body: serde_json::from_str(&r.get::<String>(6).ok()??).ok()?,
            attempts: r.get::<i32>(7).ok()??,
        })
    })
}

/// Queued sync triggers of the same Item are folded into the job that is about to run.
fn coalesce(job: &Job) {
    if job.webhook_type != "TRANSACTIONS" {
        return;
    }
    Spi::run_with_args(
        "UPDATE plaid_sync.inbox SET status = 'done', finished_at = now(),
                last_error = 'coalesced into job ' || $1
          WHERE item_id = $2 AND status = 'pending' AND id > $1 AND webhook_type = 'TRANSACTIONS'
            AND webhook_code <> 'RECURRING_TRANSACTIONS_UPDATE'
            AND NOT (source = 'backend' AND webhook_code = 'HISTORICAL_UPDATE')
            AND (source = 'backend' OR verification IS NOT NULL)",
        &[job.id.into(), job.item_id.clone().into()],
    )
    .expect("coalesce");
}

/// What the job is, dispatched.
pub fn run(job: &Job, client: &Client) -> Outcome {
    let Some(item_id) = job.item_id.as_deref() else {
        return Outcome::Done(Some("ignored: no item_id".into()));
    };
    if job.source == "plaid" {
        match crate::webhook::verify_job(job, client) {
            Ok(()) => {}
            Err(crate::webhook::Refusal::Reject(r)) => {
                return Outcome::Failed(format!("rejected: {r}"));
            }
            Err(crate::webhook::Refusal::Retry(r)) => return Outcome::Retry(r),
        }
        Spi::run_with_args(
            "UPDATE plaid_sync.items SET last_webhook_at = now() WHERE item_id = $1",
            &[item_id.into()],
        )
        .expect("last_webhook_at");
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
            coalesce(job);
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
    let (status, error, delay_ms): (&str, Option<String>, i64) = match outcome {
        Outcome::Done(note) => ("done", note.clone(), 0),
        Outcome::ItemPaused(m) => ("done", Some(format!("Item paused: {m}")), 0),
        Outcome::Failed(m) if m.starts_with("rejected: ") => ("rejected", Some(m.clone()), 0),
        Outcome::Failed(m) => ("failed", Some(m.clone()), 0),
        Outcome::Retry(m) if job.attempts >= gucs::max_attempts() => (
            "failed",
            Some(format!("{m} (gave up after {} attempts)", job.attempts)),
            0,
        ),
        Outcome::Retry(m) => ("pending", Some(m.clone()), backoff_ms(job.attempts)),
    };
    Spi::run_with_args(
        "UPDATE plaid_sync.inbox SET status = $2, last_error = $3, locked_until = NULL, locked_by = NULL,
                run_after = CASE WHEN $2 = 'pending' THEN now() + make_interval(secs => $4 / 1000.0) ELSE run_after END,
                finished_at = CASE WHEN $2 = 'pending' THEN NULL ELSE now() END
          WHERE id = $1",
        &[job.id.into(), status.into(), error.into(), (delay_ms as f64).into()],
    )
    .expect("record job");
}

/// `plaid_process_inbox`: up to `max_jobs` due jobs, in this transaction.
pub fn process_inbox_in_transaction(max_jobs: i32) -> i32 {
    let mut ran = 0;
    let mut client = None;
    while ran < max_jobs {
        let Some(job) = claim() else { break };
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
