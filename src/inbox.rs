//! `plaid_sync.inbox`, the table's one home: every notice and webhook is a row, and jobs are
//! claimed from it under a lease. In the order a row lives: queued (a notice, folded into an
//! identical one still waiting; a webhook, stored as received), claimed, renewed, recorded
//! (`Outcome::disposition` says how), and dropped by retention or a purge.

use pgrx::datum::DatumWithOid;

use crate::database::{one, row, rows, run};
use crate::gucs;
use crate::job::{Due, Job, Outcome, RetryPolicy};

/// Queues a new Item's first sync, ending a statement whose CTE `$cte` returns the Item's
/// `item_id` (`store::items::announce`: the Item and its first job in one statement).
#[macro_export]
macro_rules! queue_first_sync_from {
    ($cte:literal) => {
        concat!(
            "INSERT INTO plaid_sync.inbox (source, webhook_type, webhook_code, item_id, lane)
         SELECT 'backend', 'ITEM', 'CREATED', item_id, 1 FROM ",
            $cte,
            " RETURNING id"
        )
    };
}

/// A backend notice. While an earlier identical notice for the Item still waits, this one is
/// folded into it (its body, e.g. a webhook URL, replaced by the newer one), so repeating a
/// notice never queues the same work twice (the fold keeps the fresher lane). The inbox id.
///
/// The fold is a lookup, not a unique index (see sql/schema.sql), so it needs the Item's row
/// lock: two notices for one Item then run one after the other, and the second one's lookup,
/// a later statement, sees the first one's row. A claim that takes the queued row meanwhile
/// makes the lookup skip it (FOR UPDATE re-checks the row), and a new row is queued.
pub fn enqueue_notice(
    webhook_type: &str,
    webhook_code: &str,
    item_id: &str,
    body: &str,
    lane: i16,
) -> i64 {
    one::<bool>(
        "SELECT true FROM plaid_sync.items WHERE item_id = $1 FOR UPDATE",
        &[item_id.into()],
    );
    let args: [DatumWithOid; 5] = [
        webhook_type.into(),
        webhook_code.into(),
        item_id.into(),
        body.into(),
        lane.into(),
    ];
    let id = one::<i64>(
        "WITH queued AS (
             SELECT id FROM plaid_sync.inbox
              WHERE item_id = $3 AND webhook_type = $1 AND webhook_code = $2
                AND source = 'backend' AND status = 'pending' AND attempts = 0
              ORDER BY id LIMIT 1
              FOR UPDATE),
         folded AS (
             UPDATE plaid_sync.inbox q SET body = $4::jsonb, lane = least(q.lane, $5) FROM queued
              WHERE q.id = queued.id RETURNING q.id),
         added AS (
             INSERT INTO plaid_sync.inbox (source, webhook_type, webhook_code, item_id, body, lane)
             SELECT 'backend', $1, $2, $3, $4::jsonb, $5 WHERE NOT EXISTS (SELECT FROM queued)
             RETURNING id)
         SELECT id FROM folded UNION ALL SELECT id FROM added",
        &args,
    )
    .expect("enqueue returns an id");
    crate::wake::wake_on_commit();
    id
}

/// A webhook from Plaid, stored exactly as received; verified before it is acted on. Its
/// `body` stays NULL until then (`webhook::verify_job` fills it in): parsing and storing the
/// JSON twice was a fifth of this entry point's cost, and an unverified body is not data.
pub fn enqueue_webhook(
    webhook_type: &str,
    webhook_code: &str,
    item_id: Option<&str>,
    raw_body: &str,
    plaid_verification: Option<&str>,
) -> i64 {
    let args: [DatumWithOid; 5] = [
        webhook_type.into(),
        webhook_code.into(),
        item_id.into(),
        raw_body.into(),
        plaid_verification.into(),
    ];
    // Until ALTER EXTENSION UPDATE, the 0.1.0 table needs the body as jsonb too: webhooks
    // keep being queued while the workers wait for the update.
    let sql = if crate::database::sql_is_current() {
        "INSERT INTO plaid_sync.inbox
             (source, webhook_type, webhook_code, item_id, body, raw_body, plaid_verification)
         VALUES ('plaid', $1, $2, $3, NULL, $4, $5)
         RETURNING id"
    } else {
        "INSERT INTO plaid_sync.inbox
             (source, webhook_type, webhook_code, item_id, body, raw_body, plaid_verification)
         VALUES ('plaid', $1, $2, $3, $4::jsonb, $4, $5)
         RETURNING id"
    };
    let id = crate::database::one::<i64>(sql, &args).expect("insert returns an id");
    crate::wake::wake_on_commit();
    id
}

/// Verified webhooks that came before their Item was announced sleep until it is: the Item's
/// first job wakes them (the notice itself stays the two rows it must write).
pub fn wake_waiting_webhooks(item_id: &str) {
    crate::database::run(
        "UPDATE plaid_sync.inbox SET run_after = now()
          WHERE item_id = $1 AND status = 'pending' AND source = 'plaid' AND run_after > now()",
        &[item_id.into()],
    );
}

/// The Item is removed: nothing queued for it runs, and a job running for it is done.
pub fn cancel_item_jobs(item_id: &str) {
    crate::database::run(
        "UPDATE plaid_sync.inbox SET status = 'done', finished_at = now(),
                last_error = 'cancelled: Item removed'
          WHERE item_id = $1 AND status IN ('pending', 'running')",
        &[item_id.into()],
    );
}

/// A Plaid-origin row verified: it may run, and its body, kept as text until now, becomes its
/// `jsonb`.
pub fn mark_verified(id: i64, verification: &str) {
    crate::database::run(
        "UPDATE plaid_sync.inbox SET verification = $2, body = coalesce(body, raw_body::jsonb)
          WHERE id = $1",
        &[id.into(), verification.into()],
    );
}

/// Every inbox row of the Item deleted, whatever its state: a purge (webhook bodies and
/// notices hold the Item's data). A job running for it records into nothing.
pub fn forget_item(item_id: &str) {
    crate::database::run(
        "DELETE FROM plaid_sync.inbox WHERE item_id = $1",
        &[item_id.into()],
    );
}

/// Claims the next due job of the lanes `first..=last` (lower lanes first) whose Item no
/// worker has a job in flight for (src/busy_items.rs), under a lease, and says whether more
/// jobs are due. A job whose lease ran out, or whose process is gone (a crash), is claimable
/// again. Within a lane jobs go by `run_after`: an Item whose job just ran has its other jobs
/// moved behind the rest (see `record`), so one Item's pile does not starve the others.
pub fn claim(first: i16, last: i16) -> Option<(Job, bool)> {
    // Kept plans: an idle worker woken by a commit runs this and nothing else.
    let busy = crate::busy_items::all();
    row(
        "WITH next AS (
             SELECT q.id FROM plaid_sync.inbox q
              WHERE q.lane BETWEEN $2 AND $3 AND q.status IN ('pending', 'running') AND q.run_after <= now()
                AND (q.status = 'pending' OR q.locked_until < now()
                     OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = q.locked_by))
                AND (q.item_id IS NULL OR q.item_id <> ALL ($4))
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
        &[gucs::job_lease_s().into(), first.into(), last.into(), busy.into()],
        |r| {
            let job = Job {
                id: r.get::<i64>(1).ok()??,
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
    )
}

/// A long sync keeps its job's lease alive page by page.
pub fn renew_lease(job_id: i64) {
    run(
        "UPDATE plaid_sync.inbox SET locked_until = now() + make_interval(secs => $2)
          WHERE id = $1 AND status = 'running'",
        &[job_id.into(), gucs::job_lease_s().into()],
    );
}

/// A Plaid webhook's body as received, its Plaid-Verification header and when it came (Unix
/// seconds): what its signature check reads.
pub fn signed(job_id: i64) -> Option<(String, Option<String>, i64)> {
    row(
        "SELECT raw_body, plaid_verification, extract(epoch FROM received_at)::bigint
           FROM plaid_sync.inbox WHERE id = $1",
        &[job_id.into()],
        |r| {
            Some((
                r.get::<String>(1).ok().flatten().unwrap_or_default(),
                r.get::<String>(2).ok().flatten(),
                r.get::<i64>(3).ok().flatten().unwrap_or(0),
            ))
        },
    )
}

/// Gives a claimed job back untouched (its Item is busy elsewhere), or folds it into an
/// identical notice queued meanwhile.
pub fn release(job: &Job) {
    run(
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
    );
}

/// Sync triggers of the job's Item queued behind it: (id, came from Plaid).
pub fn queued_triggers(job: &Job) -> Vec<(i64, bool)> {
    rows(
        "SELECT id, source = 'plaid' FROM plaid_sync.inbox
              WHERE item_id = $2 AND status = 'pending' AND id <> $1 AND webhook_type = 'TRANSACTIONS'
                AND webhook_code <> 'RECURRING_TRANSACTIONS_UPDATE'
                AND NOT (source = 'backend' AND webhook_code = 'REFRESH')
                AND NOT (source = 'backend' AND webhook_code = 'HISTORICAL_UPDATE')
              ORDER BY id LIMIT 10000",
        &[job.id.into(), job.item_id.as_deref().into()],
        |r| Some((r.get::<i64>(1).ok()??, r.get::<bool>(2).ok()??)),
    )
}

/// The rows `absorbed` are done: job `into` does their work.
pub fn mark_coalesced(into: i64, absorbed: Vec<i64>) {
    run(
        "UPDATE plaid_sync.inbox SET status = 'done', finished_at = now(),
                last_error = 'coalesced into job ' || $1
          WHERE id = ANY($2) AND status = 'pending'",
        &[into.into(), absorbed.into()],
    );
}

/// For a Plaid-origin job whose Item is not announced: Some(true) while it may still wait,
/// Some(false) once the grace is over; None when the Item exists.
/// Two statements: on a distributed install the inbox stays local and items is not, and
/// Citus joins neither way.
pub fn waiting_for_item(job_id: i64, item_id: &str) -> Option<bool> {
    if one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM plaid_sync.items WHERE item_id = $1)",
        &[item_id.into()],
    )
    .unwrap_or(false)
    {
        return None;
    }
    one::<bool>(
        "SELECT received_at > now() - make_interval(secs => $1) FROM plaid_sync.inbox WHERE id = $2",
        &[gucs::unknown_item_grace_s().into(), job_id.into()],
    )
}

/// Writes the outcome on the inbox row. A job that ran moves its Item's next due jobs (at most
/// 100: a pile of thousands would make every job rewrite it) behind the rest of the queue
/// (fair share between Items).
pub fn record(job: &Job, outcome: &Outcome) {
    let policy = RetryPolicy {
        max_attempts: gucs::max_attempts(),
        base_ms: gucs::retry_base_ms(),
        max_ms: gucs::retry_max_ms(),
    };
    let d = outcome.disposition(job.attempts, &policy, &mut rand::thread_rng());
    let (due_kind, delay_ms) = match d.due {
        Due::Keep => (0, 0),
        Due::In(ms) => (1, ms),
        Due::GraceEnd => (2, 0),
    };
    run(
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
            d.status.into(),
            d.error.into(),
            (delay_ms as f64).into(),
            d.undo_attempt.into(),
            due_kind.into(),
            gucs::unknown_item_grace_s().into(),
        ],
    );
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

/// Worker 0's housekeeping: drop old done and rejected rows, in batches of 1,000 while they
/// come back full, for at most a quarter second a round.
pub fn maintenance() {
    let retention = gucs::done_retention_s();
    let start = std::time::Instant::now();
    while retention > 0 && start.elapsed() < std::time::Duration::from_millis(250) {
        let gone: Option<i64> = one(
            "WITH gone AS (DELETE FROM plaid_sync.inbox WHERE id IN (
                 SELECT id FROM plaid_sync.inbox
                  WHERE status IN ('done', 'rejected') AND finished_at < now() - make_interval(secs => $1)
                  ORDER BY finished_at LIMIT 1000) RETURNING 1)
             SELECT count(*) FROM gone",
            &[retention.into()],
        );
        if gone.unwrap_or(0) < 1000 {
            return;
        }
    }
}

/// Queues a sync for each of `stale` (the self-healing scan's Items, stalest first) that has
/// no job open, at most 100; how many.
pub fn queue_resyncs(stale: &[String]) -> i64 {
    if stale.is_empty() {
        return 0;
    }
    one::<i64>(
        "WITH queued AS (
             INSERT INTO plaid_sync.inbox (source, webhook_type, webhook_code, item_id, body, lane)
             SELECT 'backend', 'TRANSACTIONS', 'SYNC_UPDATES_AVAILABLE', s.item_id,
                    '{\"reason\": \"resync_interval\"}', 1
               FROM unnest($1::text[]) WITH ORDINALITY AS s(item_id, n)
              WHERE NOT EXISTS (SELECT 1 FROM plaid_sync.inbox q
                                 WHERE q.item_id = s.item_id AND q.status IN ('pending', 'running'))
              ORDER BY s.n LIMIT 100
             RETURNING 1)
         SELECT count(*) FROM queued",
        &[stale.to_vec().into()],
    )
    .unwrap_or(0)
}
