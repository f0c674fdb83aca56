//! A claimed inbox row (`Job`) and how it ended (`Outcome`), with the retry delay: plain
//! data shared by the rows that record jobs and the code that runs them. No Postgres.

use serde_json::Value;

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

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done(Option<String>),
    /// Transient: try again later.
    Retry(String),
    /// A verified webhook for an Item not announced yet: it sleeps until the Item is announced
    /// (which wakes it) or `plaid_sync.unknown_item_grace` ends; no attempt used.
    Wait(String),
    /// Plaid's rate limit: come back later, no attempt used.
    Throttled(String),
    /// The Item needs its user (or is gone): its status is set, syncs pause.
    ItemPaused(String),
    /// A Plaid-origin webhook that failed verification.
    Rejected(String),
    Failed(String),
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
            | Outcome::Failed(m) => Some(m),
        }
    }

    /// `sync_runs.outcome` for a sync that ended this way.
    pub fn run_label(&self) -> &'static str {
        match self {
            Outcome::Done(_) => "ok",
            Outcome::Retry(_) | Outcome::Wait(_) | Outcome::Throttled(_) => "retry",
            Outcome::ItemPaused(_) => "item_error",
            Outcome::Rejected(_) | Outcome::Failed(_) => "failed",
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
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let mut rng = rand::thread_rng();
        for _ in 0..100 {
            let d1 = backoff_ms(1, 1_000, 600_000, &mut rng);
            assert!((500..=1_000).contains(&d1));
            let d3 = backoff_ms(3, 1_000, 600_000, &mut rng);
            assert!((2_000..=4_000).contains(&d3));
            let d30 = backoff_ms(30, 1_000, 600_000, &mut rng);
            assert!((300_000..=600_000).contains(&d30));
        }
    }
}
