//! The SQL that takes jobs out of the inbox: claim under a lease, renew it, give a job back,
//! fold queued triggers into a running sync, and record how a job ended.

use pgrx::prelude::*;

use crate::database::{one, with_prepared};
use crate::gucs;
use rand::Rng;

use crate::job::{Job, Outcome, backoff_ms};

/// Claims the next due job of the lanes `first..=last` (lower lanes first) whose Item has no
/// other job running, under a lease, and
/// says whether more jobs are due. A job whose lease ran out, or whose process is gone (a
/// crash), is claimable again. Within a lane jobs go by `run_after`: an Item whose job just
/// ran has its other jobs moved behind the rest (see `record`), so one Item's pile does not
/// starve the others.
pub fn claim(first: i16, last: i16) -> Option<(Job, bool)> {
    // Kept plans: an idle worker woken by a commit runs this and nothing else.
    let job = with_prepared(
        "WITH busy AS MATERIALIZED (
             -- Items with a job running in a live process: found once, not once per row the
             -- scan passes (a pile of thousands of rows for one busy Item is skipped at the
             -- cost of reading them, not of looking the Item up for each).
             SELECT coalesce(array_agg(r.item_id), '{}') AS items FROM plaid_sync.inbox r
              WHERE r.status = 'running' AND r.locked_until >= now()
                AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = r.locked_by)),
         next AS (
             SELECT q.id FROM plaid_sync.inbox q, busy
              WHERE q.lane BETWEEN $2 AND $3 AND q.status IN ('pending', 'running') AND q.run_after <= now()
                AND (q.status = 'pending' OR q.locked_until < now()
                     OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = q.locked_by))
                AND (q.item_id IS NULL OR q.item_id <> ALL (busy.items))
              ORDER BY q.lane, q.run_after, q.id
              LIMIT 1
              FOR UPDATE OF q SKIP LOCKED)
         UPDATE plaid_sync.inbox q
            SET status = 'running', attempts = q.attempts + 1,
                locked_until = now() + make_interval(secs => $1), locked_by = pg_backend_pid()
           FROM next WHERE q.id = next.id
         RETURNING q.id, q.source, q.webhook_type, q.webhook_code, q.item_id, coalesce(q.body::text, q.raw_body), q.attempts,
                   EXISTS (SELECT FROM plaid_sync.inbox m
                            WHERE m.status = 'pending' AND m.run_after <= now() AND m.id > q.id),
                   q.lane",
        &[pg_sys::INT4OID, pg_sys::INT2OID, pg_sys::INT2OID],
        |c, stmt| {
            let rows = c
                .update(
                    stmt,
                    None,
                    &[gucs::job_lease_s().into(), first.into(), last.into()],
                )
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
                lane: r.get::<i16>(9).ok()??,
            };
            Some((job, r.get::<bool>(8).ok().flatten().unwrap_or(false)))
        },
    );
    job
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

/// Gives a claimed job back untouched (its Item is busy elsewhere), or folds it into an
/// identical notice queued meanwhile.
pub fn release(job: &Job) {
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

/// Sync triggers of the job's Item queued behind it: (id, came from Plaid).
pub fn queued_triggers(job: &Job) -> Vec<(i64, bool)> {
    Spi::connect(|c| {
        c.select(
            "SELECT id, source = 'plaid' FROM plaid_sync.inbox
              WHERE item_id = $2 AND status = 'pending' AND id <> $1 AND webhook_type = 'TRANSACTIONS'
                AND webhook_code <> 'RECURRING_TRANSACTIONS_UPDATE'
                AND NOT (source = 'backend' AND webhook_code = 'REFRESH')
                AND NOT (source = 'backend' AND webhook_code = 'HISTORICAL_UPDATE')
              ORDER BY id LIMIT 10000",
            None,
            &[job.id.into(), job.item_id.as_deref().into()],
        )
        .expect("queued triggers")
        .filter_map(|r| Some((r.get::<i64>(1).ok()??, r.get::<bool>(2).ok()??)))
        .collect()
    })
}

/// The rows `absorbed` are done: job `into` does their work.
pub fn mark_coalesced(into: i64, absorbed: Vec<i64>) {
    Spi::run_with_args(
        "UPDATE plaid_sync.inbox SET status = 'done', finished_at = now(),
                last_error = 'coalesced into job ' || $1
          WHERE id = ANY($2) AND status = 'pending'",
        &[into.into(), absorbed.into()],
    )
    .expect("coalesce");
}

/// For a Plaid-origin job whose Item is not announced: Some(true) while it may still wait,
/// Some(false) once the grace is over; None when the Item exists.
pub fn waiting_for_item(job_id: i64, item_id: &str) -> Option<bool> {
    one::<bool>(
        "SELECT q.received_at > now() - make_interval(secs => $2)
           FROM plaid_sync.inbox q
          WHERE q.id = $3 AND NOT EXISTS (SELECT 1 FROM plaid_sync.items i WHERE i.item_id = $1)",
        &[
            item_id.into(),
            gucs::unknown_item_grace_s().into(),
            job_id.into(),
        ],
    )
}

/// Writes the outcome on the inbox row. A job that ran moves its Item's next due jobs (at most
/// 100: a pile of thousands would make every job rewrite it) behind the rest of the queue
/// (fair share between Items).
pub fn record(job: &Job, outcome: &Outcome) {
    // (status, when it is due again, attempts given back)
    let (status, due, undo_attempt): (&str, Due, i32) = match outcome {
        Outcome::Done(_) | Outcome::ItemPaused(_) => ("done", Due::Keep, 0),
        Outcome::Rejected(_) => ("rejected", Due::Keep, 0),
        Outcome::Failed(_) | Outcome::Internal(_) => ("failed", Due::Keep, 0),
        Outcome::Retry(_) if job.attempts >= gucs::max_attempts() => ("failed", Due::Keep, 0),
        Outcome::Retry(_) => (
            "pending",
            Due::In(backoff_ms(
                job.attempts,
                gucs::retry_base_ms(),
                gucs::retry_max_ms(),
                &mut rand::thread_rng(),
            )),
            0,
        ),
        // Rate-limited: soon, spread out, and not an attempt.
        Outcome::Throttled(_) => (
            "pending",
            Due::In(rand::thread_rng().gen_range(5_000..15_000)),
            1,
        ),
        // Asleep until its Item is announced (announcing wakes it) or the grace ends.
        Outcome::Wait(_) => ("pending", Due::GraceEnd, 1),
    };
    let error = match outcome {
        Outcome::Retry(m) if status == "failed" => {
            Some(format!("{m} (gave up after {} attempts)", job.attempts))
        }
        Outcome::Done(None) => None,
        other => Some(other.to_string()),
    };
    let (due_kind, delay_ms) = match due {
        Due::Keep => (0, 0),
        Due::In(ms) => (1, ms),
        Due::GraceEnd => (2, 0),
    };
    Spi::run_with_args(
        "WITH me AS (
             UPDATE plaid_sync.inbox SET status = $2, last_error = $3, locked_until = NULL, locked_by = NULL,
                    attempts = attempts - $5,
                    run_after = CASE $6 WHEN 1 THEN now() + make_interval(secs => $4 / 1000.0)
                                        WHEN 2 THEN received_at + make_interval(secs => $7)
                                        ELSE run_after END,
                    finished_at = CASE WHEN $2 = 'pending' THEN NULL ELSE now() END
              WHERE id = $1
              RETURNING item_id)
         UPDATE plaid_sync.inbox o SET run_after = now()
          WHERE o.id IN (SELECT p.id FROM plaid_sync.inbox p, me
                          WHERE $2 <> 'pending' AND p.item_id = me.item_id AND p.status = 'pending'
                            AND p.run_after < now() AND p.id <> $1
                          ORDER BY p.run_after LIMIT 100)",
        &[
            job.id.into(),
            status.into(),
            error.into(),
            (delay_ms as f64).into(),
            undo_attempt.into(),
            due_kind.into(),
            gucs::unknown_item_grace_s().into(),
        ],
    )
    .expect("record job");
}

enum Due {
    Keep,
    In(i64),
    GraceEnd,
}

/// Puts failed jobs (of one Item, or all) back in the queue; returns how many. A failed
/// notice whose twin is already queued is folded into it instead.
pub fn retry_failed(item_id: Option<&str>) -> i64 {
    one::<i64>(
        "WITH twin AS (
             UPDATE plaid_sync.inbox f SET status = 'done', finished_at = now(),
                    last_error = f.last_error || ' (superseded by a newer identical notice)'
              WHERE f.status = 'failed' AND ($1::text IS NULL OR f.item_id = $1) AND f.source = 'backend'
                AND EXISTS (SELECT 1 FROM plaid_sync.inbox q
                             WHERE q.item_id = f.item_id AND q.webhook_type = f.webhook_type
                               AND q.webhook_code = f.webhook_code AND q.source = 'backend'
                               AND q.status = 'pending' AND q.attempts = 0)
             RETURNING f.id),
         requeued AS (
             UPDATE plaid_sync.inbox SET status = 'pending', attempts = 0, run_after = now(),
                    locked_until = NULL, locked_by = NULL, finished_at = NULL
              WHERE status = 'failed' AND ($1::text IS NULL OR item_id = $1)
                AND id NOT IN (SELECT id FROM twin)
              RETURNING 1)
         SELECT count(*) FROM requeued",
        &[item_id.into()],
    )
    .unwrap_or(0)
}
