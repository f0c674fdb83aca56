//! The SQL functions of the public contract (README "SQL reference"). Each checks its input
//! (src/validate.rs), then writes through SPI; work that needs Plaid goes into the inbox.
//!
//! All are SECURITY DEFINER with a pinned search_path; sql/finalize.sql revokes EXECUTE from
//! PUBLIC.

use pgrx::PgOid;
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use serde_json::json;

use crate::error::{Error, Result};
use crate::gucs;
use crate::inbox::{self, enqueue_notice};
use crate::validate;

/// Raises `e` as an ERROR with its documented SQLSTATE.
pub fn raise(e: Error) -> ! {
    let code = match e {
        Error::InvalidParameter(_) => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        Error::InvalidJson(_) => PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
        Error::Privilege(_) => PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        Error::NotConfigured(_) => PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        Error::Retry(_) => PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
    };
    ErrorReport::new(code, e.message().to_string(), "plaid_sync").report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

fn ok<T>(r: Result<T>) -> T {
    r.unwrap_or_else(|e| raise(e))
}

thread_local! {
    /// Plans of the hot statements, prepared once per backend (SPI_keepplan); Postgres
    /// re-plans them itself when the tables change.
    /// Keyed by the statement's address: hashing its text on every call showed in profiles.
    static PLANS: std::cell::RefCell<std::collections::HashMap<usize, pgrx::spi::OwnedPreparedStatement>> =
        Default::default();
}

/// Runs `f` with the kept plan of `sql` (prepared on first use in this backend). `types` are
/// the parameters' type OIDs.
pub fn with_prepared<R>(
    sql: &'static str,
    types: &[pg_sys::Oid],
    f: impl FnOnce(&mut pgrx::spi::SpiClient<'_>, &pgrx::spi::OwnedPreparedStatement) -> R,
) -> R {
    in_transaction(sql);
    Spi::connect_mut(|c| {
        PLANS.with(|plans| {
            let mut plans = plans.borrow_mut();
            let stmt = plans.entry(sql.as_ptr() as usize).or_insert_with(|| {
                let oids: Vec<PgOid> = types.iter().map(|t| PgOid::from(*t)).collect();
                c.prepare_mut(sql, &oids)
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
                    .keep()
            });
            f(c, stmt)
        })
    })
}

/// Like `one`, through a kept plan.
pub fn one_prepared<T: FromDatum + IntoDatum>(
    sql: &'static str,
    types: &[pg_sys::Oid],
    args: &[DatumWithOid],
) -> Option<T> {
    with_prepared(sql, types, |c, stmt| match c.update(stmt, Some(1), args) {
        Ok(t) => t.first().get_one::<T>().ok().flatten(),
        Err(e) => panic!("{sql}: {e}"),
    })
}

/// SPI outside a transaction crashes the process; say which statement tried, instead.
pub fn in_transaction(sql: &str) {
    if !unsafe { pg_sys::IsTransactionState() } {
        panic!(
            "plaid_sync bug: SQL run outside a transaction: {}",
            sql.split_whitespace().take(6).collect::<Vec<_>>().join(" ")
        );
    }
}

/// The first column of the first row, or None when there is no row (or it is NULL).
pub fn one<T: FromDatum + IntoDatum>(sql: &str, args: &[DatumWithOid]) -> Option<T> {
    in_transaction(sql);
    match Spi::get_one_with_args::<T>(sql, args) {
        Ok(v) => v,
        Err(pgrx::spi::SpiError::InvalidPosition) => None,
        Err(e) => panic!("{sql}: {e}"),
    }
}

/// The Item's current status, or 22023 when there is no such Item.
fn item_status(item_id: &str) -> Result<String> {
    one::<String>(
        "SELECT status FROM plaid_sync.items WHERE item_id = $1 FOR UPDATE",
        &[item_id.into()],
    )
    .ok_or_else(|| {
        Error::invalid(format!(
            "no Item {item_id}: announce it first with plaid_notify_item_created"
        ))
    })
}

fn live_item(item_id: &str) -> Result<String> {
    let status = item_status(item_id)?;
    if status == "removed" {
        return Err(Error::invalid(format!(
            "Item {item_id} was removed; announce it again with plaid_notify_item_created"
        )));
    }
    Ok(status)
}

fn store_token(item_id: &str, token: &str) -> Result<()> {
    let sealed = gucs::keyring()?.encrypt(item_id, token);
    Spi::run_with_args(
        "UPDATE plaid_sync.items SET access_token_encrypted = $2, updated_at = now() WHERE item_id = $1",
        &[item_id.into(), sealed.into()],
    )
    .expect("store token");
    Ok(())
}

fn notify_item_created(
    item_id: Option<&str>,
    access_token: Option<&str>,
    client_user_id: Option<&str>,
) -> Result<i64> {
    let env = gucs::environment().as_str();
    let item_id = validate::item_id(item_id)?;
    let token = validate::access_token(access_token, env)?;
    let client_user_id = validate::optional_text(client_user_id, "client_user_id")?;
    let sealed = gucs::keyring()?.encrypt(item_id, token);
    // A new Item, the common case, is one statement: insert it and queue its first sync.
    let args = || -> [DatumWithOid; 4] {
        [
            item_id.into(),
            client_user_id.into(),
            sealed.as_slice().into(),
            env.into(),
        ]
    };
    let types = [
        pg_sys::TEXTOID,
        pg_sys::TEXTOID,
        pg_sys::BYTEAOID,
        pg_sys::TEXTOID,
    ];
    for _ in 0..2 {
        let queued = one_prepared::<i64>(
            "WITH item AS (
                 INSERT INTO plaid_sync.items (item_id, client_user_id, access_token_encrypted, environment)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (item_id) DO NOTHING
                 RETURNING item_id)
             INSERT INTO plaid_sync.inbox (source, webhook_type, webhook_code, item_id)
             SELECT 'backend', 'ITEM', 'CREATED', item_id FROM item
             RETURNING id",
            &types,
            &args(),
        );
        if let Some(id) = queued {
            crate::worker::wake_on_commit();
            return Ok(id);
        }
        // A known Item: a re-link replaces the token, and an Item paused by an error goes
        // back to pending. The row lock taken here orders the notice's fold (src/inbox.rs).
        let relinked = one_prepared::<bool>(
            "UPDATE plaid_sync.items SET
                 client_user_id = coalesce($2, client_user_id),
                 access_token_encrypted = $3,
                 environment = $4,
                 status = CASE WHEN status IN ('healthy', 'pending_expiration', 'pending_disconnect')
                               THEN status ELSE 'pending' END,
                 error = CASE WHEN status IN ('healthy', 'pending_expiration', 'pending_disconnect')
                              THEN error END,
                 updated_at = now()
              WHERE item_id = $1
              RETURNING true",
            &types,
            &args(),
        );
        if relinked.is_some() {
            return Ok(enqueue_notice("ITEM", "CREATED", item_id, "{}"));
        }
        // Deleted by hand between the two statements: insert it again.
    }
    Err(Error::Retry(format!(
        "Item {item_id} was deleted while it was being announced; call again"
    )))
}

fn notify_item_updated(item_id: Option<&str>, access_token: Option<&str>) -> Result<i64> {
    let item_id = validate::item_id(item_id)?;
    let token = match access_token {
        None => None,
        Some(t) => Some(validate::access_token(
            Some(t),
            gucs::environment().as_str(),
        )?),
    };
    live_item(item_id)?;
    if let Some(token) = token {
        store_token(item_id, token)?;
    }
    Ok(enqueue_notice("ITEM", "UPDATED", item_id, "{}"))
}

fn request_backfill(item_id: Option<&str>) -> Result<i64> {
    let item_id = validate::item_id(item_id)?;
    live_item(item_id)?;
    Ok(enqueue_notice(
        "TRANSACTIONS",
        "HISTORICAL_UPDATE",
        item_id,
        r#"{"backfill": true}"#,
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

fn receive_webhook(body: Option<&str>, plaid_verification: Option<&str>) -> Result<i64> {
    let parsed = validate::webhook_body(body)?;
    let notice = validate::notice(&parsed)?;
    refuse_backend_only(&parsed, &notice)?;
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
        body.expect("checked above"),
        verification.as_deref(),
    ))
}

fn notify(body: Option<pgrx::JsonB>) -> Result<i64> {
    let body = body
        .ok_or_else(|| Error::invalid("body must not be NULL"))?
        .0;
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
    let status = item_status(item_id)?;
    let has_token = one::<bool>(
        "SELECT access_token_encrypted IS NOT NULL FROM plaid_sync.items WHERE item_id = $1",
        &[item_id.into()],
    )
    .unwrap_or(false);
    if remove_at_plaid && !has_token {
        return Err(Error::invalid(format!(
            "Item {item_id} has no access token any more, so it cannot be removed at Plaid"
        )));
    }
    if status == "removed" && !remove_at_plaid {
        return Ok(()); // already done
    }
    // Stop everything queued for it, then mark it and its rows removed (rows are kept).
    Spi::run_with_args(
        "WITH cancelled AS (
             UPDATE plaid_sync.inbox SET status = 'done', finished_at = now(),
                    last_error = 'cancelled: Item removed'
              WHERE item_id = $1 AND status IN ('pending', 'running') RETURNING 1),
         acc AS (
             UPDATE plaid_sync.accounts SET removed_at = now(), updated_at = now()
              WHERE item_id = $1 AND removed_at IS NULL RETURNING 1),
         txn AS (
             UPDATE plaid_sync.transactions SET removed_at = now(), updated_at = now()
              WHERE item_id = $1 AND removed_at IS NULL RETURNING 1)
         UPDATE plaid_sync.items SET status = 'removed', updated_at = now(),
                access_token_encrypted = CASE WHEN $2 THEN access_token_encrypted END
          WHERE item_id = $1",
        &[item_id.into(), remove_at_plaid.into()],
    )
    .expect("remove item");
    if remove_at_plaid {
        // The job calls /item/remove, then destroys the token.
        enqueue_notice("ITEM", "REMOVE", item_id, "{}");
    }
    Ok(())
}

fn update_item_webhook(item_id: Option<&str>, webhook_url: Option<&str>) -> Result<i64> {
    let item_id = validate::item_id(item_id)?;
    let url = validate::webhook_url(webhook_url)?;
    live_item(item_id)?;
    Ok(enqueue_notice(
        "ITEM",
        "WEBHOOK_UPDATE",
        item_id,
        &json!({ "webhook": url }).to_string(),
    ))
}

fn retry_failed(item_id: Option<&str>) -> Result<i32> {
    let item_id = match item_id {
        None => None,
        Some(i) => Some(validate::item_id(Some(i))?),
    };
    // A failed notice whose twin is already queued is folded into it instead.
    let n = one::<i64>(
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
    .unwrap_or(0);
    if n > 0 {
        crate::worker::wake_on_commit();
    }
    Ok(n as i32)
}

fn rotate_encryption_key() -> Result<i32> {
    let ring = gucs::keyring()?;
    let rows: Vec<(String, Vec<u8>)> = Spi::connect_mut(|c| {
        c.update(
            "SELECT item_id, access_token_encrypted FROM plaid_sync.items
              WHERE access_token_encrypted IS NOT NULL ORDER BY item_id FOR UPDATE",
            None,
            &[],
        )
        .expect("read tokens")
        .map(|r| {
            (
                r.get::<String>(1).expect("item_id").expect("not null"),
                r.get::<Vec<u8>>(2).expect("token").expect("not null"),
            )
        })
        .collect()
    });
    // Decrypt everything first: one token that cannot be read stops the rotation unchanged.
    let mut rewrapped = Vec::new();
    for (item_id, envelope) in rows {
        if !ring.is_current(&envelope) {
            let token = ring.decrypt(&item_id, &envelope)?;
            rewrapped.push((item_id.clone(), ring.encrypt(&item_id, &token)));
        }
    }
    for (item_id, sealed) in &rewrapped {
        Spi::run_with_args(
            "UPDATE plaid_sync.items SET access_token_encrypted = $2, updated_at = now() WHERE item_id = $1",
            &[item_id.as_str().into(), sealed.clone().into()],
        )
        .expect("store re-encrypted token");
    }
    Ok(rewrapped.len() as i32)
}

fn decrypt_access_token(item_id: Option<&str>) -> Result<String> {
    // SECURITY DEFINER runs as the owner; the outer user is whoever called us.
    if !unsafe { pg_sys::superuser_arg(pg_sys::GetOuterUserId()) } {
        return Err(Error::Privilege(
            "only a superuser may decrypt access tokens".into(),
        ));
    }
    let item_id = validate::item_id(item_id)?;
    item_status(item_id)?;
    let envelope = one::<Vec<u8>>(
        "SELECT access_token_encrypted FROM plaid_sync.items WHERE item_id = $1",
        &[item_id.into()],
    )
    .ok_or_else(|| {
        Error::invalid(format!(
            "Item {item_id} has no access token (it was removed)"
        ))
    })?;
    gucs::keyring()?.decrypt(item_id, &envelope)
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

#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn plaid_notify(body: Option<pgrx::JsonB>) -> i64 {
    ok(notify(body))
}

#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn plaid_remove_item(item_id: Option<&str>, remove_at_plaid: default!(Option<bool>, false)) {
    ok(remove_item(item_id, remove_at_plaid))
}

#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn plaid_update_item_webhook(item_id: Option<&str>, webhook_url: Option<&str>) -> i64 {
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
    ok(rotate_encryption_key())
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
    crate::jobs::process_inbox_in_transaction(max_jobs)
}
