//! Plaid webhook verification at job time, and the PostgREST header at receipt (the JWT
//! checks themselves live in `plaid/jwt.rs`, the key cache's rows in `store/webhook_keys.rs`).

use pgrx::prelude::*;

use crate::store::webhook_keys;

/// PostgREST (and Supabase) put the HTTP request headers in the `request.headers` setting as
/// a JSON object with lower-case names; use its `plaid-verification` when the caller passed
/// none.
pub fn header_from_postgrest() -> Option<String> {
    let headers = unsafe {
        let v = pg_sys::GetConfigOption(c"request.headers".as_ptr(), true, false);
        if v.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr(v).to_string_lossy().into_owned()
    };
    let parsed: serde_json::Value = serde_json::from_str(&headers).ok()?;
    parsed
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("plaid-verification"))
        .and_then(|(_, v)| v.as_str())
        .map(str::to_string)
}

/// Why a Plaid-origin job may not run.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Forged, stale or altered: the row becomes `rejected`.
    #[error("rejected: {0}")]
    Reject(String),
    /// The key could not be fetched right now: try again later.
    #[error("{0}")]
    Retry(String),
}

/// Verifies a claimed Plaid-origin row before it acts (docs/plaid.md, Webhook verification). Keys are cached in
/// `plaid_sync.webhook_keys`; one Plaid call per new kid.
pub fn verify_job(job_id: i64, ctx: &crate::job::Ctx) -> Result<(), Refusal> {
    use crate::database::db;
    use crate::plaid::jwt;
    let client = ctx.client.as_ref();
    if !ctx.settings.verify_webhooks {
        mark(job_id, "skipped: plaid_sync.verify_webhooks is off");
        return Ok(());
    }
    let row = db(|| {
        crate::inbox::signed(job_id).map(|(body, token, received)| {
            // The key's cached answer in the same step: each step is a trip to the main
            // thread, and most webhooks need nothing more.
            let key = token.map(|token| {
                jwt::header(&token).map(|(kid, _)| {
                    let cached = webhook_keys::cached(&kid);
                    (token, kid, cached)
                })
            });
            (body, key, received)
        })
    });
    let Some((body, Some(key), received)) = row else {
        return Err(Refusal::Reject("no Plaid-Verification header".into()));
    };
    let (token, kid, cached) = key.map_err(Refusal::Reject)?;
    let jwk_json = match cached {
        webhook_keys::Cached::Key(jwk) => jwk,
        webhook_keys::Cached::Unknown => {
            return Err(Refusal::Reject(format!(
                "unknown verification key id {kid} (cached answer)"
            )));
        }
        webhook_keys::Cached::Missing => {
            // Plaid's reference logic: a new kid may mean a rotation, so refresh the keys we
            // hold that were still current, then fetch the new one. A key refreshed within
            // the last few minutes is not asked for again: a flood of forged kids costs one
            // call each, not one more per key we hold.
            for current in db(webhook_keys::current_kids) {
                if let Ok(v) = client
                    .webhook_verification_key_get(&current)
                    .and_then(|r| r.json())
                {
                    db(|| webhook_keys::store(&current, Some(&v["key"])));
                }
            }
            match client
                .webhook_verification_key_get(&kid)
                .and_then(|r| r.json())
            {
                Ok(v) => {
                    db(|| webhook_keys::store(&kid, Some(&v["key"])));
                    v["key"].clone()
                }
                Err(e) if e.class() == crate::plaid::Class::Transient => {
                    return Err(Refusal::Retry(format!("fetching verification key: {e}")));
                }
                Err(e) => {
                    db(|| webhook_keys::store(&kid, None));
                    return Err(Refusal::Reject(format!(
                        "unknown verification key id {kid}: {e}"
                    )));
                }
            }
        }
    };
    let jwk: jwt::Jwk = serde_json::from_value(jwk_json)
        .map_err(|_| Refusal::Reject("verification key is not a JWK".into()))?;
    jwt::verify(&token, body.as_bytes(), &jwk, received).map_err(Refusal::Reject)?;
    mark(job_id, &format!("verified (kid {kid})"));
    Ok(())
}

/// Records that the row may run.
fn mark(id: i64, verification: &str) {
    crate::database::db(|| crate::inbox::mark_verified(id, verification));
}
