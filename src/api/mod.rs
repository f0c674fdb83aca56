//! The SQL functions of the public contract (README "SQL reference") and their dispatch. Each
//! checks its input (src/validate.rs), then writes the rows (src/store/, src/inbox.rs); work that
//! needs Plaid goes into the inbox, except Link's two calls (`link.rs`), which the caller waits for.
//!
//! All are SECURITY DEFINER with a pinned search_path; sql/finalize.sql revokes EXECUTE from
//! PUBLIC.

use pgrx::prelude::*;
use serde_json::json;

use crate::database::ok;
use crate::error::{Error, Result};
use crate::gucs;
use crate::inbox::{self, enqueue_notice};
use crate::store::items::{self, Announced};
use crate::store::token;
use crate::validate;

mod deliveries;
mod link;
mod paid_refresh;
mod purge;
mod status;

/// The Item's current status, or 22023 when there is no such Item.
fn item_status(item_id: &str) -> Result<String> {
    items::status_for_update(item_id).ok_or_else(|| {
        Error::invalid(format!(
            "no Item {item_id}: announce it first with plaid_notify_item_created"
        ))
    })
}

pub(super) fn live_item(item_id: &str) -> Result<String> {
    let status = item_status(item_id)?;
    if status == "removed" {
        return Err(Error::invalid(format!(
            "Item {item_id} was removed; announce it again with plaid_notify_item_created"
        )));
    }
    Ok(status)
}

fn notify_item_created(
    item_id: Option<&str>,
    access_token: Option<&str>,
    client_user_id: Option<&str>,
) -> Result<i64> {
    let env = gucs::environment().as_str();
    let item_id = validate::item_id(item_id)?;
    let token = validate::access_token(access_token, env)?;
    crate::database::require_current_sql()?;
    let client_user_id = validate::optional_text(client_user_id, "client_user_id")?;
    let sealed = token::seal(item_id, token)?;
    // A new Item, the common case, is one statement: insert it and queue its first sync.
    for _ in 0..2 {
        match items::announce(item_id, client_user_id, &sealed, env) {
            Announced::New(id) => return Ok(id),
            Announced::Relinked(lane) => {
                return Ok(enqueue_notice("ITEM", "CREATED", item_id, "{}", lane));
            }
            Announced::Vanished => {} // deleted by hand between the two statements: insert it again
        }
    }
    Err(Error::Retry(format!(
        "Item {item_id} was deleted while it was being announced; call again"
    )))
}

fn notify_item_updated(item_id: Option<&str>, access_token: Option<&str>) -> Result<i64> {
    let item_id = validate::item_id(item_id)?;
    crate::database::require_current_sql()?;
    let token = match access_token {
        None => None,
        Some(t) => Some(validate::access_token(
            Some(t),
            gucs::environment().as_str(),
        )?),
    };
    if live_item(item_id)? == "revoked" {
        items::regranted(item_id);
        crate::store::products::read_again(item_id);
    }
    if let Some(token) = token {
        token::replace(item_id, token)?;
    }
    Ok(enqueue_notice("ITEM", "UPDATED", item_id, "{}", 0))
}

fn request_backfill(item_id: Option<&str>) -> Result<i64> {
    let item_id = validate::item_id(item_id)?;
    crate::database::require_current_sql()?;
    live_item(item_id)?;
    Ok(enqueue_notice(
        "TRANSACTIONS",
        "HISTORICAL_UPDATE",
        item_id,
        r#"{"backfill": true}"#,
        0,
    ))
}

/// Plaid webhooks that only a backend may send: a webhook body must never bring a token.
fn refuse_backend_only(body: &serde_json::Value, notice: &validate::Notice) -> Result<()> {
    let hint = match (notice.webhook_type.as_str(), notice.webhook_code.as_str()) {
        ("ITEM", "CREATED") => Some("plaid_notify_item_created(item_id, access_token)"),
        ("ITEM", "UPDATED") => Some("plaid_notify_item_updated(item_id)"),
        _ if body.get("access_token").is_some() => {
            Some("plaid_notify(body) or plaid_notify_item_created")
        }
        _ => None,
    };
    match hint {
        Some(f) => Err(Error::invalid(format!(
            "{}/{} with{} an access token is a backend notice, not a Plaid webhook: call plaid_sync.{f} instead",
            notice.webhook_type,
            notice.webhook_code,
            if body.get("access_token").is_some() {
                ""
            } else {
                "out"
            },
        ))),
        None => Ok(()),
    }
}

pub(crate) fn receive_webhook(body: Option<&str>, plaid_verification: Option<&str>) -> Result<i64> {
    let parsed = validate::json_object(body)?;
    let notice = validate::notice(&parsed)?;
    refuse_backend_only(&parsed, &notice)?;
    let raw = body.expect("checked above");
    // The body is stored as text and parsed into jsonb when verified: text that jsonb would
    // refuse is refused here, by Postgres itself, so nothing is queued that cannot be parsed.
    if validate::jsonb_may_refuse(raw) {
        crate::database::subtransaction(false, || {
            crate::database::one::<bool>("SELECT $1::jsonb IS NOT NULL", &[raw.into()])
        })
        .map_err(|m| Error::InvalidJson(format!("body cannot be stored as jsonb: {m}")))?;
    }
    let verification = match plaid_verification {
        Some(v) if v.len() > 8192 => {
            return Err(Error::invalid(
                "plaid_verification is longer than 8192 characters",
            ));
        }
        Some(v) => Some(v.to_string()),
        None => crate::webhook::header_from_postgrest(),
    };
    Ok(inbox::enqueue_webhook(
        &notice.webhook_type,
        &notice.webhook_code,
        notice.item_id.as_deref(),
        raw,
        verification.as_deref(),
    ))
}

/// The body is taken as text and parsed here: were it `jsonb`, Postgres would parse it before
/// the function runs, and its error for malformed JSON quotes the text (and the token in it)
/// in the server log; serde's errors name only what and where.
pub(crate) fn notify(body: Option<&str>) -> Result<i64> {
    let body = validate::json_object(body)?;
    let notice = validate::notice(&body)?;
    let item_id = notice
        .item_id
        .as_deref()
        .ok_or_else(|| Error::invalid("the body has no item_id"))?;
    let text = |name: &str| -> Result<Option<&str>> {
        match body.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(Error::invalid(format!("{name} must be a string"))),
        }
    };
    match (notice.webhook_type.as_str(), notice.webhook_code.as_str()) {
        ("ITEM", "CREATED") => notify_item_created(
            Some(item_id),
            text("access_token")?,
            match text("client_user_id")? {
                Some(c) => Some(c),
                None => text("user_id")?,
            },
        ),
        ("ITEM", "UPDATED") => notify_item_updated(Some(item_id), text("access_token")?),
        ("TRANSACTIONS", "HISTORICAL_UPDATE") => {
            if body.get("access_token").is_some() {
                return Err(Error::invalid(
                    "TRANSACTIONS/HISTORICAL_UPDATE takes no access_token",
                ));
            }
            request_backfill(Some(item_id))
        }
        (t, c) => Err(Error::invalid(format!(
            "unknown backend notice {t}/{c}: expected ITEM/CREATED, ITEM/UPDATED or TRANSACTIONS/HISTORICAL_UPDATE"
        ))),
    }
}

fn remove_item(item_id: Option<&str>, remove_at_plaid: Option<bool>) -> Result<()> {
    let item_id = validate::item_id(item_id)?;
    let remove_at_plaid =
        remove_at_plaid.ok_or_else(|| Error::invalid("remove_at_plaid must not be NULL"))?;
    crate::database::require_current_sql()?;
    let status = item_status(item_id)?;
    let has_token = items::has_token(item_id);
    if remove_at_plaid && !has_token {
        return Err(Error::invalid(format!(
            "Item {item_id} has no access token any more, so it cannot be removed at Plaid"
        )));
    }
    if status == "removed" && !remove_at_plaid {
        return Ok(()); // already done
    }
    // Nothing queued runs any more; the Item and its rows are marked (and kept).
    inbox::cancel_item_jobs(item_id);
    items::mark_removed(item_id);
    crate::store::consent::mark_removed(item_id, None);
    if !remove_at_plaid {
        token::destroy(item_id);
    } else {
        // The job calls /item/remove, then destroys the token.
        enqueue_notice("ITEM", "REMOVE", item_id, "{}", 0);
    }
    Ok(())
}

/// Without a URL, the one `plaid_sync.webhook_url` names.
fn update_item_webhook(item_id: Option<&str>, webhook_url: Option<&str>) -> Result<i64> {
    let item_id = validate::item_id(item_id)?;
    let setting = match webhook_url {
        Some(_) => None,
        None => Some(gucs::webhook_url().ok_or_else(|| {
            Error::invalid("webhook_url is NULL and plaid_sync.webhook_url is not set")
        })?),
    };
    let url = validate::webhook_url(webhook_url.or(setting.as_deref()))?;
    crate::database::require_current_sql()?;
    live_item(item_id)?;
    Ok(enqueue_notice(
        "ITEM",
        "WEBHOOK_UPDATE",
        item_id,
        &json!({ "webhook": url }).to_string(),
        0,
    ))
}

fn retry_failed(item_id: Option<&str>) -> Result<i32> {
    let item_id = match item_id {
        None => None,
        Some(i) => Some(validate::item_id(Some(i))?),
    };
    let n = inbox::retry_failed(item_id);
    if n > 0 {
        crate::wake::wake_on_commit();
    }
    Ok(n as i32)
}

fn decrypt_access_token(item_id: Option<&str>) -> Result<String> {
    token::require_superuser()?; // before anything is said about the Item
    let item_id = validate::item_id(item_id)?;
    item_status(item_id)?;
    token::reveal(item_id)
}

// ---- The SQL surface. Names and signatures are the contract. ----

#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn plaid_notify_item_created(
    item_id: Option<&str>,
    access_token: Option<&str>,
    client_user_id: default!(Option<&str>, "NULL"),
) -> i64 {
    ok(notify_item_created(item_id, access_token, client_user_id))
}

#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn plaid_notify_item_updated(
    item_id: Option<&str>,
    access_token: default!(Option<&str>, "NULL"),
) -> i64 {
    ok(notify_item_updated(item_id, access_token))
}

#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn plaid_request_backfill(item_id: Option<&str>) -> i64 {
    ok(request_backfill(item_id))
}

#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn plaid_receive_webhook(
    body: Option<&str>,
    plaid_verification: default!(Option<&str>, "NULL"),
) -> i64 {
    ok(receive_webhook(body, plaid_verification))
}

#[pg_extern(name = "plaid_notify", security_definer, volatile, parallel_unsafe)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn plaid_notify_text(body: Option<&str>) -> i64 {
    ok(notify(body))
}

/// The symbol the jsonb `plaid_notify` of 0.1.0 and 0.2.0 points at. Until `ALTER EXTENSION
/// plaid_sync UPDATE` replaces that definition (with the SQL wrapper below), a call names the
/// fix, as every entry point does while the library and the SQL objects differ. It reads no
/// argument, so no body is parsed on the way.
#[pg_extern(sql = false)]
fn plaid_notify() -> i64 {
    ok(crate::database::require_current_sql().and(Err(Error::not_configured(
        "plaid_notify(jsonb) is defined as in an older plaid_sync: run ALTER EXTENSION plaid_sync UPDATE",
    ))))
}

// The jsonb form of 0.1.0 and 0.2.0, kept for callers that pass jsonb: the text form does the
// work (a jsonb number past f64 or nesting past 128 is then 22P02, not a Rust error).
extension_sql!(
    r#"
CREATE FUNCTION plaid_sync.plaid_notify(body jsonb) RETURNS bigint
    LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = plaid_sync, pg_catalog, pg_temp
    AS $$ SELECT plaid_sync.plaid_notify(body::text) $$;
"#,
    name = "plaid_notify_jsonb",
    requires = [plaid_notify_text],
);

#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn plaid_remove_item(item_id: Option<&str>, remove_at_plaid: default!(Option<bool>, false)) {
    ok(remove_item(item_id, remove_at_plaid))
}

#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn plaid_update_item_webhook(
    item_id: Option<&str>,
    webhook_url: default!(Option<&str>, "NULL"),
) -> i64 {
    ok(update_item_webhook(item_id, webhook_url))
}

#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn plaid_retry_failed(item_id: default!(Option<&str>, "NULL")) -> i32 {
    ok(retry_failed(item_id))
}

#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn plaid_rotate_encryption_key() -> i32 {
    ok(token::rotate())
}

#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn plaid_decrypt_access_token(item_id: Option<&str>) -> String {
    ok(decrypt_access_token(item_id))
}

#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn plaid_process_inbox(max_jobs: default!(Option<i32>, 100)) -> i32 {
    let max_jobs = ok(validate::max_jobs(max_jobs));
    ok(crate::database::require_current_sql());
    crate::runner::process_inbox_in_transaction(max_jobs)
}
