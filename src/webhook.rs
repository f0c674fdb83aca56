//! Plaid webhook verification helpers that need Postgres (the JWT checks themselves live in
//! `plaid/jwt.rs`).

use pgrx::prelude::*;

use crate::plaid::jwt::UNKNOWN_KID_TTL_S;

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
        Spi::connect(|c| {
            c.select(
                "SELECT raw_body, plaid_verification, extract(epoch FROM received_at)::bigint
               FROM plaid_sync.inbox WHERE id = $1",
                None,
                &[job_id.into()],
            )
            .ok()
            .map(|t| {
                let r = t.first();
                (
                    r.get::<String>(1).ok().flatten().unwrap_or_default(),
                    r.get::<String>(2).ok().flatten(),
                    r.get::<i64>(3).ok().flatten().unwrap_or(0),
                )
            })
        })
    });
    let Some((body, Some(token), received)) = row else {
        return Err(Refusal::Reject("no Plaid-Verification header".into()));
    };
    let (kid, _) = jwt::header(&token).map_err(Refusal::Reject)?;
    let jwk_json = match cached_key(&kid) {
        Cached::Key(jwk) => jwk,
        Cached::Unknown => {
            return Err(Refusal::Reject(format!(
                "unknown verification key id {kid} (cached answer)"
            )));
        }
        Cached::Missing => {
            // Plaid's reference logic: a new kid may mean a rotation, so refresh the keys we
            // hold that were still current, then fetch the new one. A key refreshed within
            // the last few minutes is not asked for again: a flood of forged kids costs one
            // call each, not one more per key we hold.
            for current in db(current_kids) {
                if let Ok(v) = client
                    .webhook_verification_key_get(&current)
                    .and_then(|r| r.json())
                {
                    store_key(&current, Some(&v["key"]));
                }
            }
            match client
                .webhook_verification_key_get(&kid)
                .and_then(|r| r.json())
            {
                Ok(v) => {
                    store_key(&kid, Some(&v["key"]));
                    v["key"].clone()
                }
                Err(e) if e.class() == crate::plaid::Class::Transient => {
                    return Err(Refusal::Retry(format!("fetching verification key: {e}")));
                }
                Err(e) => {
                    store_key(&kid, None);
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

enum Cached {
    Key(serde_json::Value),
    /// Plaid said it does not know this kid, less than `UNKNOWN_KID_TTL` ago.
    Unknown,
    Missing,
}

fn cached_key(kid: &str) -> Cached {
    crate::database::db(|| {
        Spi::connect(|c| {
            let t = c
                .select(
                    "SELECT jwk, jwk IS NULL AND fetched_at > now() - make_interval(secs => $2)
                       FROM plaid_sync.webhook_keys WHERE kid = $1",
                    None,
                    &[kid.into(), UNKNOWN_KID_TTL_S.into()],
                )
                .expect("read key cache");
            if t.is_empty() {
                return Cached::Missing;
            }
            let r = t.first();
            match (
                r.get::<pgrx::JsonB>(1).ok().flatten(),
                r.get::<bool>(2).ok().flatten(),
            ) {
                (Some(j), _) => Cached::Key(j.0),
                (None, Some(true)) => Cached::Unknown,
                _ => Cached::Missing,
            }
        })
    })
}

fn current_kids() -> Vec<String> {
    Spi::connect(|c| {
        c.select(
            "SELECT kid FROM plaid_sync.webhook_keys
              WHERE jwk IS NOT NULL AND expired_at IS NULL
                AND fetched_at < now() - make_interval(secs => $1)",
            None,
            &[UNKNOWN_KID_TTL_S.into()],
        )
        .expect("current keys")
        .filter_map(|r| r.get::<String>(1).ok().flatten())
        .collect()
    })
}

/// Caches a JWK (with its expiry), or that Plaid does not know `kid` (`jwk` None).
fn store_key(kid: &str, jwk: Option<&serde_json::Value>) {
    let text = jwk.map(|j| j.to_string());
    crate::database::db(|| {
        Spi::run_with_args(
            "INSERT INTO plaid_sync.webhook_keys (kid, jwk, created_at, expired_at)
             SELECT $1, k, to_timestamp((k ->> 'created_at')::double precision),
                    to_timestamp((k ->> 'expired_at')::double precision)
               FROM (SELECT $2::jsonb AS k) x
             ON CONFLICT (kid) DO UPDATE SET jwk = EXCLUDED.jwk, created_at = EXCLUDED.created_at,
                    expired_at = EXCLUDED.expired_at, fetched_at = now()",
            &[kid.into(), text.into()],
        )
        .expect("cache key")
    });
}

/// Records that the row may run; its body, kept as text until now, becomes its `jsonb`.
fn mark(id: i64, verification: &str) {
    crate::database::db(|| {
        Spi::run_with_args(
            "UPDATE plaid_sync.inbox SET verification = $2, body = coalesce(body, raw_body::jsonb)
              WHERE id = $1",
            &[id.into(), verification.into()],
        )
        .expect("record verification")
    });
}
