//! A claimed inbox row (`Job`), the settings it runs with (`JobSettings`) and how it ended
//! (`Outcome`), with the retry delay: plain data shared by the rows that record jobs and the
//! code that runs them. No Postgres.

use std::sync::Arc;

use serde_json::Value;

use crate::plaid::Client;

/// A claimed inbox row.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub source: String,
    pub webhook_type: String,
    pub webhook_code: String,
    pub item_id: Option<String>,
    pub body: Value,
    pub attempts: i32,
    /// 0: fresh work (webhooks, notices for Items that synced before); 1: the backlog of
    /// first syncs and scheduled resyncs.
    pub lane: i16,
}

impl Job {
    /// A call Plaid bills per request (`/transactions/refresh`): made only by a worker, booked
    /// and marked in transactions of their own, never inside a caller's transaction that
    /// could roll the booking back after the call.
    pub fn is_paid(&self) -> bool {
        self.source == "backend"
            && self.webhook_type == "TRANSACTIONS"
            && self.webhook_code == "REFRESH"
    }
}

/// The settings a job reads, copied on the worker's main thread before the job starts. A job
/// thread may not read settings itself: they live in Postgres's memory, which only the main
/// thread may touch (`gucs` panics when a job thread tries). A reload takes effect for the
/// jobs claimed after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSettings {
    /// `plaid_sync.add_consented_products`: a product only consented to may be called.
    pub add_consented_products: bool,
    /// `plaid_sync.verify_webhooks`.
    pub verify_webhooks: bool,
    /// What `/transactions/sync` asks for (`plaid_sync.include_original_description`, ...).
    pub sync: crate::plaid::SyncOptions,
    /// `plaid_sync.purge_on_revoke`: a revoked Item or account is purged, not marked.
    pub purge_on_revoke: bool,
}

/// What a job runs with: the Plaid client and the settings, both made on the main thread.
pub struct Ctx {
    pub client: Arc<Client>,
    pub settings: JobSettings,
}

/// How a job ended; as text, what `inbox.last_error` says of it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Outcome {
    #[error("{}", .0.as_deref().unwrap_or("done"))]
    Done(Option<String>),
    /// Transient: try again later.
    #[error("{0}")]
    Retry(String),
    /// A verified webhook for an Item not announced yet: it sleeps until the Item is announced
    /// (which wakes it) or `plaid_sync.unknown_item_grace` ends; no attempt used.
    #[error("{0}")]
    Wait(String),
    /// Plaid's rate limit: come back later, no attempt used.
    #[error("{0}")]
    Throttled(String),
    /// The Item needs its user (or is gone): its status is set, syncs pause.
    #[error("Item paused: {0}")]
    ItemPaused(String),
    /// A Plaid-origin webhook that failed verification.
    #[error("{0}")]
    Rejected(String),
    #[error("{0}")]
    Failed(String),
    /// A bug: the job panicked. Recorded as failed, and logged once by the main thread.
    #[error("{0}")] // already "internal error: …" (`internal_error`)
    Internal(String),
}

impl Outcome {
    pub fn message(&self) -> Option<&str> {
        match self {
            Outcome::Done(note) => note.as_deref(),
            Outcome::Retry(m)
            | Outcome::Wait(m)
            | Outcome::Throttled(m)
            | Outcome::ItemPaused(m)
            | Outcome::Rejected(m)
            | Outcome::Failed(m)
            | Outcome::Internal(m) => Some(m),
        }
    }

    /// `sync_runs.outcome` for a sync that ended this way.
    pub fn run_label(&self) -> &'static str {
        match self {
            Outcome::Done(_) => "ok",
            Outcome::Retry(_) | Outcome::Wait(_) | Outcome::Throttled(_) => "retry",
            Outcome::ItemPaused(_) => "item_error",
            Outcome::Rejected(_) | Outcome::Failed(_) | Outcome::Internal(_) => "failed",
        }
    }
}

/// What a panic's message may say in `inbox.last_error` and the log: its first line, without
/// the source locations (`/home/…/src/x.rs:10:5`, `src/x.rs:10:5`) that name the machine the
/// library was built on.
pub fn internal_error(raw: &str) -> String {
    let first = raw.lines().next().unwrap_or("").trim();
    let kept: Vec<&str> = first
        .split_whitespace()
        .filter(|w| !is_location(w.trim_end_matches([':', ',', ';'])))
        .collect();
    let msg = kept.join(" ");
    let msg = msg.trim_start_matches([':', ' ']).trim();
    let msg = msg.strip_suffix(" at").unwrap_or(msg);
    if msg.is_empty() {
        "internal error (a panic without a message)".into()
    } else {
        format!("internal error: {msg}")
    }
}

/// A file path or a `file.rs:line:col` location.
fn is_location(word: &str) -> bool {
    word.starts_with('/')
        || word.contains(".rs:")
        || word.ends_with(".rs")
        || word.contains("/.cargo/")
        || word.contains("/src/")
}

/// When a recorded job is due again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Not at all (it ended), or when it was due (a job given back).
    Keep,
    /// In so many milliseconds.
    In(i64),
    /// When the grace for its Item to be announced ends (`plaid_sync.unknown_item_grace`).
    GraceEnd,
}

/// How a job's end is written on its inbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disposition {
    pub status: &'static str,
    pub due: Due,
    /// 1 when the run does not count as an attempt (rate-limited, waiting for its Item).
    pub undo_attempt: i32,
    /// `inbox.last_error`.
    pub error: Option<String>,
}

/// `plaid_sync.max_attempts`, `.retry_base_delay`, `.retry_max_delay`.
pub struct RetryPolicy {
    pub max_attempts: i32,
    pub base_ms: i64,
    pub max_ms: i64,
}

impl Outcome {
    /// The row's new state after its `attempts`-th run ended this way.
    pub fn disposition(
        &self,
        attempts: i32,
        p: &RetryPolicy,
        rng: &mut impl rand::Rng,
    ) -> Disposition {
        let (status, due, undo_attempt) = match self {
            Outcome::Done(_) | Outcome::ItemPaused(_) => ("done", Due::Keep, 0),
            Outcome::Rejected(_) => ("rejected", Due::Keep, 0),
            Outcome::Failed(_) | Outcome::Internal(_) => ("failed", Due::Keep, 0),
            Outcome::Retry(_) if attempts >= p.max_attempts => ("failed", Due::Keep, 0),
            Outcome::Retry(_) => (
                "pending",
                Due::In(backoff_ms(attempts, p.base_ms, p.max_ms, rng)),
                0,
            ),
            // Rate-limited: soon, spread out, and not an attempt.
            Outcome::Throttled(_) => ("pending", Due::In(rng.gen_range(5_000..15_000)), 1),
            // Asleep until its Item is announced (announcing wakes it) or the grace ends.
            Outcome::Wait(_) => ("pending", Due::GraceEnd, 1),
        };
        let error = match self {
            Outcome::Retry(m) if status == "failed" => {
                Some(format!("{m} (gave up after {attempts} attempts)"))
            }
            Outcome::Done(None) => None,
            other => Some(other.to_string()),
        };
        Disposition {
            status,
            due,
            undo_attempt,
            error,
        }
    }
}

/// Capped exponential backoff with jitter, in milliseconds: `base` doubled per attempt, at
/// most `max`, then a random point in its upper half.
pub fn backoff_ms(attempts: i32, base: i64, max: i64, rng: &mut impl rand::Rng) -> i64 {
    let exp = base.saturating_mul(1i64 << (attempts.clamp(1, 30) - 1));
    let capped = exp.min(max);
    rng.gen_range(capped / 2..=capped.max(1))
}

#[cfg(test)]
#[path = "job_tests.rs"]
mod unit;
