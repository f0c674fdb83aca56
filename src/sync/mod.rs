//! What each job does. A job reads what it needs from the database, calls Plaid, and writes
//! the result; `jobs.rs` decides when, and records the outcome.

pub mod pagination;

use pgrx::prelude::*;
use serde_json::Value;

use crate::api::one;
use crate::jobs::db;
use crate::plaid::{Class, Client, PlaidError};
use crate::store;

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
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done(Option<String>),
    /// Transient: try again later.
    Retry(String),
    /// Not this job's fault (its Item is not announced yet): look again later, no attempt used.
    Wait(String),
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
            | Outcome::ItemPaused(m)
            | Outcome::Rejected(m)
            | Outcome::Failed(m) => Some(m),
        }
    }

    /// `sync_runs.outcome` for a sync that ended this way.
    fn run_label(&self) -> &'static str {
        match self {
            Outcome::Done(_) => "ok",
            Outcome::Retry(_) | Outcome::Wait(_) => "retry",
            Outcome::ItemPaused(_) => "item_error",
            Outcome::Rejected(_) | Outcome::Failed(_) => "failed",
        }
    }
}

fn from_plaid(call: &str, e: PlaidError) -> Outcome {
    let msg = format!("Plaid {call}: {e}");
    match e.class() {
        Class::Transient | Class::MutationDuringPagination => Outcome::Retry(msg),
        Class::ItemState(_) => Outcome::ItemPaused(msg),
        Class::Fatal => Outcome::Failed(msg),
    }
}

/// Sets the status an Item-level Plaid error implies, and keeps the error.
fn pause_item(item_id: &str, e: &PlaidError) {
    if let Class::ItemState(status) = e.class() {
        let error = match e {
            PlaidError::Api {
                status: http,
                error_type,
                error_code,
                error_message,
                request_id,
            } => {
                serde_json::json!({"error_type": error_type, "error_code": error_code,
                    "error_message": error_message, "request_id": request_id, "status": http})
            }
            _ => Value::Null,
        };
        let error = error.to_string();
        db(|| {
            Spi::run_with_args(
                "UPDATE plaid_sync.items SET status = $2, error = $3::jsonb, updated_at = now()
                  WHERE item_id = $1 AND status <> 'removed'",
                &[item_id.into(), status.into(), error.as_str().into()],
            )
            .expect("pause item")
        });
    }
}

/// Statuses in which syncs are paused until the backend (or Plaid) says the Item is repaired.
pub const PAUSED: &[&str] = &[
    "login_required",
    "revoked",
    "invalid_token",
    "error",
    "removed",
];

/// Item, its status and its decrypted token; `Err` ends the job.
fn load_item(item_id: &str) -> Result<(String, Option<String>, String), Outcome> {
    let row = db(|| {
        Spi::connect(|c| {
            c.select(
            "SELECT status, transactions_cursor, access_token_encrypted FROM plaid_sync.items WHERE item_id = $1",
            None,
            &[item_id.into()],
        )
        .ok()
        .and_then(|t| {
            let r = t.first();
            Some((r.get::<String>(1).ok()??, r.get::<String>(2).ok()?, r.get::<Vec<u8>>(3).ok()?))
        })
        })
    });
    let Some((status, cursor, envelope)) = row else {
        return Err(Outcome::Done(Some(format!("Item {item_id} is not known"))));
    };
    let Some(envelope) = envelope else {
        return Err(Outcome::Done(Some(format!(
            "Item {item_id} has no access token (removed)"
        ))));
    };
    let token = crate::gucs::keyring()
        .and_then(|k| k.decrypt(item_id, &envelope))
        .map_err(|e| Outcome::Failed(e.to_string()))?;
    Ok((status, cursor, token))
}

/// ITEM/CREATED and ITEM/UPDATED from the backend: re-read the Item, its institution and
/// accounts, then sync transactions (Plaid only sends SYNC_UPDATES_AVAILABLE after one sync).
pub fn refresh_item(job: &Job, client: &Client, item_id: &str) -> Outcome {
    let (_, cursor, token) = match load_item(item_id) {
        Ok(x) => x,
        Err(o) => return o,
    };
    let item = match client.item_get(&token).and_then(|r| r.json()) {
        Ok(v) => v,
        Err(e) => {
            pause_item(item_id, &e);
            return from_plaid("/item/get", e);
        }
    };
    let obj = item["item"].to_string();
    db(|| store::update_item(item_id, &obj));
    if let Some(err) = item["item"]["error"].as_object() {
        let e = PlaidError::from_response(400, &Value::Object(err.clone()).to_string());
        if matches!(e.class(), Class::ItemState(_)) {
            pause_item(item_id, &e);
            return Outcome::ItemPaused(format!("Plaid /item/get reports {e}"));
        }
    }
    if let Some(inst) = item["item"]["institution_id"].as_str() {
        if !db(|| store::institution_cached(inst)) {
            match client.institutions_get_by_id(inst).and_then(|r| r.json()) {
                Ok(v) => {
                    let obj = v["institution"].to_string();
                    db(|| store::store_institution(&obj))
                }
                Err(e) => return from_plaid("/institutions/get_by_id", e),
            }
        }
        db(|| store::name_institution(item_id));
    }
    match client.accounts_get(&token).and_then(|r| r.json()) {
        Ok(v) => {
            let accounts = v["accounts"].to_string();
            db(|| store::upsert_accounts(item_id, &accounts, true))
        }
        Err(e) => {
            pause_item(item_id, &e);
            return from_plaid("/accounts/get", e);
        }
    }
    sync_transactions(job, client, item_id, &token, cursor, "item_refresh", false)
}

struct Fetch<'a> {
    client: &'a Client,
    token: &'a str,
}
impl pagination::FetchPage for Fetch<'_> {
    fn fetch(
        &mut self,
        cursor: Option<&str>,
        count: u32,
    ) -> Result<crate::plaid::Response, PlaidError> {
        self.client.transactions_sync(self.token, cursor, count)
    }
}
struct Stage {
    run_id: i64,
    job_id: i64,
}
impl pagination::Pages for Stage {
    /// Each page is committed on its own (in a worker), and renews the job's lease.
    fn keep(&mut self, page: u32, body: &str) {
        db(|| {
            store::stage_page(self.run_id, page as i32, body);
            crate::jobs::renew_lease(self.job_id);
        });
    }
    fn discard(&mut self) {
        db(|| store::discard_pages(self.run_id));
    }
}

/// Any sync: pages staged as they come, then applied with the new cursor in one step.
pub fn sync_transactions(
    job: &Job,
    client: &Client,
    item_id: &str,
    token: &str,
    cursor: Option<String>,
    trigger: &str,
    backfill: bool,
) -> Outcome {
    let run_id = db(|| {
        one::<i64>(
            "INSERT INTO plaid_sync.sync_runs (item_id, inbox_id, trigger) VALUES ($1, $2, $3) RETURNING id",
            &[item_id.into(), job.id.into(), trigger.into()],
        )
        .expect("sync run id")
    });
    let start = if backfill { None } else { cursor };
    let result = pagination::sync_pages(
        &mut Fetch { client, token },
        &mut Stage {
            run_id,
            job_id: job.id,
        },
        start.as_deref(),
    );
    // Everything below is one transaction: the pages, the cursor and the run's record
    // become visible together.
    db(|| finish_sync(run_id, item_id, backfill, result))
}

fn finish_sync(
    run_id: i64,
    item_id: &str,
    backfill: bool,
    result: Result<pagination::Summary, (PlaidError, pagination::Summary)>,
) -> Outcome {
    let (summary, outcome) = match result {
        Ok(s) => {
            store::apply_pages(run_id, item_id);
            if backfill {
                store::remove_unseen(run_id, item_id);
            }
            Spi::run_with_args(
                "UPDATE plaid_sync.items SET
                        transactions_cursor = coalesce($2, transactions_cursor),
                        status = CASE WHEN status IN ('pending', 'error', 'login_required', 'invalid_token')
                                      THEN 'healthy' ELSE status END,
                        error = CASE WHEN status IN ('pending_expiration', 'pending_disconnect') THEN error END,
                        initial_update_complete = initial_update_complete
                            OR $3 IN ('INITIAL_UPDATE_COMPLETE', 'HISTORICAL_UPDATE_COMPLETE'),
                        historical_update_complete = historical_update_complete
                            OR $3 = 'HISTORICAL_UPDATE_COMPLETE',
                        last_synced_at = now(), updated_at = now()
                  WHERE item_id = $1",
                &[item_id.into(), s.next_cursor.clone().into(), s.update_status.clone().into()],
            )
            .expect("advance cursor");
            (s, Outcome::Done(None))
        }
        Err((e, s)) => {
            pause_item(item_id, &e);
            (s, from_plaid("/transactions/sync", e))
        }
    };
    // Applied or abandoned, the staged pages are no longer needed.
    store::discard_pages(run_id);
    Spi::run_with_args(
        "UPDATE plaid_sync.sync_runs SET finished_at = now(), pages = $2, restarts = $3,
                added = $4, modified = $5, removed = $6, request_ids = $7, outcome = $8, error = $9
          WHERE id = $1",
        &[
            run_id.into(),
            (summary.pages as i32).into(),
            (summary.restarts as i32).into(),
            (summary.added as i32).into(),
            (summary.modified as i32).into(),
            (summary.removed as i32).into(),
            summary.request_ids.clone().into(),
            outcome.run_label().into(),
            outcome.message().into(),
        ],
    )
    .expect("record sync run");
    outcome
}

/// TRANSACTIONS webhooks and backend backfills.
pub fn transactions(job: &Job, client: &Client, item_id: &str) -> Outcome {
    let (status, cursor, token) = match load_item(item_id) {
        Ok(x) => x,
        Err(o) => return o,
    };
    if PAUSED.contains(&status.as_str()) {
        return Outcome::Done(Some(format!("skipped: Item is {status}")));
    }
    if job.webhook_code == "SYNC_UPDATES_AVAILABLE" {
        let body = job.body.to_string();
        db(|| {
            Spi::run_with_args(
            "UPDATE plaid_sync.items SET
                    initial_update_complete = initial_update_complete OR coalesce(($2::jsonb ->> 'initial_update_complete')::boolean, false),
                    historical_update_complete = historical_update_complete OR coalesce(($2::jsonb ->> 'historical_update_complete')::boolean, false)
              WHERE item_id = $1",
            &[item_id.into(), body.as_str().into()],
        )
        .expect("store update flags")
        });
    }
    let backfill = job.source == "backend" && job.webhook_code == "HISTORICAL_UPDATE";
    let trigger = if backfill {
        "backfill".to_string()
    } else {
        format!("{}/{}", job.webhook_type, job.webhook_code)
    };
    sync_transactions(job, client, item_id, &token, cursor, &trigger, backfill)
}

/// ITEM webhooks from Plaid: each moves the Item's state as API_NOTES §5.3 documents.
pub fn item_webhook(job: &Job, item_id: &str) -> Outcome {
    db(|| item_webhook_in_db(job, item_id))
}

fn item_webhook_in_db(job: &Job, item_id: &str) -> Outcome {
    let body = job.body.to_string();
    let sql = match job.webhook_code.as_str() {
        "ERROR" => {
            let e = PlaidError::from_response(400, &job.body["error"].to_string());
            let status = match e.class() {
                Class::ItemState(s) => s,
                _ => "error",
            };
            Spi::run_with_args(
                "UPDATE plaid_sync.items SET status = $2, error = $3::jsonb -> 'error', updated_at = now()
                  WHERE item_id = $1 AND status <> 'removed'",
                &[item_id.into(), status.into(), body.into()],
            )
            .expect("item error");
            return Outcome::Done(None);
        }
        "PENDING_EXPIRATION" => "UPDATE plaid_sync.items SET status = 'pending_expiration',
                consent_expiration_time = ($2::jsonb ->> 'consent_expiration_time')::timestamptz,
                updated_at = now() WHERE item_id = $1 AND status NOT IN ('removed', 'revoked')",
        "PENDING_DISCONNECT" => "UPDATE plaid_sync.items SET status = 'pending_disconnect',
                error = jsonb_build_object('reason', $2::jsonb -> 'reason', 'disconnect_time', $2::jsonb -> 'disconnect_time'),
                updated_at = now() WHERE item_id = $1 AND status NOT IN ('removed', 'revoked')",
        "USER_PERMISSION_REVOKED" => "UPDATE plaid_sync.items SET status = 'revoked',
                error = $2::jsonb -> 'error', updated_at = now() WHERE item_id = $1 AND status <> 'removed'",
        "USER_ACCOUNT_REVOKED" => "UPDATE plaid_sync.accounts SET removed_at = now(), updated_at = now()
                WHERE item_id = $1 AND account_id = $2::jsonb ->> 'account_id' AND removed_at IS NULL",
        "WEBHOOK_UPDATE_ACKNOWLEDGED" => "UPDATE plaid_sync.items SET webhook = $2::jsonb ->> 'new_webhook_url',
                updated_at = now() WHERE item_id = $1",
        "NEW_ACCOUNTS_AVAILABLE" => "UPDATE plaid_sync.items SET
                data = coalesce(data, '{}') || jsonb_build_object('new_accounts_available', true),
                updated_at = now() WHERE item_id = $1",
        "LOGIN_REPAIRED" => {
            Spi::run_with_args(
                "UPDATE plaid_sync.items SET status = 'healthy', error = NULL, updated_at = now()
                  WHERE item_id = $1 AND status IN ('login_required', 'pending_expiration', 'pending_disconnect', 'error')",
                &[item_id.into()],
            )
            .expect("login repaired");
            crate::inbox::enqueue_notice("TRANSACTIONS", "SYNC_UPDATES_AVAILABLE", item_id, r#"{"reason": "LOGIN_REPAIRED"}"#);
            return Outcome::Done(None);
        }
        other => return Outcome::Done(Some(format!("ignored: ITEM/{other} is not a code plaid_sync acts on"))),
    };
    Spi::run_with_args(sql, &[item_id.into(), body.into()]).expect("item webhook");
    Outcome::Done(None)
}

pub fn update_webhook(job: &Job, client: &Client, item_id: &str) -> Outcome {
    let (_, _, token) = match load_item(item_id) {
        Ok(x) => x,
        Err(o) => return o,
    };
    let url = job.body["webhook"].as_str().unwrap_or_default();
    match client
        .item_webhook_update(&token, url)
        .and_then(|r| r.json())
    {
        Ok(v) => {
            let obj = v["item"].to_string();
            db(|| store::update_item(item_id, &obj));
            Outcome::Done(None)
        }
        Err(e) => {
            pause_item(item_id, &e);
            from_plaid("/item/webhook/update", e)
        }
    }
}

/// `/item/remove`, then the token is destroyed (the Item was already marked removed).
pub fn remove_at_plaid(client: &Client, item_id: &str) -> Outcome {
    let (_, _, token) = match load_item(item_id) {
        Ok(x) => x,
        Err(o) => return o,
    };
    let outcome = match client.item_remove(&token) {
        Ok(_) => Outcome::Done(None),
        // Already gone at Plaid: nothing left to remove.
        Err(e) if matches!(e.code(), Some("ITEM_NOT_FOUND" | "INVALID_ACCESS_TOKEN")) => {
            Outcome::Done(Some(format!("Plaid /item/remove: {e}")))
        }
        Err(e) => return from_plaid("/item/remove", e),
    };
    db(|| {
        Spi::run_with_args(
            "UPDATE plaid_sync.items SET access_token_encrypted = NULL, updated_at = now() WHERE item_id = $1",
            &[item_id.into()],
        )
        .expect("destroy token")
    });
    outcome
}
