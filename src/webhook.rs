//! Plaid webhook verification helpers that need Postgres (the JWT checks themselves live in
//! `plaid/jwt.rs`).

use pgrx::prelude::*;

/// PostgREST (and Supabase) put the HTTP request headers in the `request.headers` setting as
/// a JSON object with lower-case names; use its `plaid-verification` when the caller passed
/// none.
pub fn header_from_postgrest() -> Option<String> {
    let headers = Spi::get_one::<String>("SELECT current_setting('request.headers', true)")
        .ok()
        .flatten()?;
    let parsed: serde_json::Value = serde_json::from_str(&headers).ok()?;
    parsed
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("plaid-verification"))
        .and_then(|(_, v)| v.as_str())
        .map(str::to_string)
}

/// Why a Plaid-origin job may not run.
pub enum Refusal {
    /// Forged, stale or altered: the row becomes `rejected`.
    Reject(String),
    /// The key could not be fetched right now: try again later.
    Retry(String),
}

/// Verifies a claimed Plaid-origin row before it acts (API_NOTES §6.2). Keys are cached in
/// `plaid_sync.webhook_keys`; one Plaid call per new kid.
pub fn verify_job(job_id: i64, client: &crate::plaid::Client) -> Result<(), Refusal> {
    use crate::api::one;
    use crate::jobs::db;
    use crate::plaid::jwt;
    if !crate::gucs::verify_webhooks() {
        mark(job_id, "skipped: plaid_sync.verify_webhooks is off");
        return Ok(());
    }
    let id = job_id;
    let row = db(move || {
        Spi::connect(|c| {
            c.select(
                "SELECT raw_body, plaid_verification, extract(epoch FROM received_at)::bigint
               FROM plaid_sync.inbox WHERE id = $1",
                None,
                &[id.into()],
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
    let k = kid.clone();
    let cached = db(move || {
        one::<pgrx::JsonB>(
            "SELECT jwk FROM plaid_sync.webhook_keys WHERE kid = $1",
            &[k.as_str().into()],
        )
    });
    let jwk_json = match cached {
        Some(j) => j.0,
        None => match client
            .webhook_verification_key_get(&kid)
            .and_then(|r| r.json())
        {
            Ok(v) => {
                let key = v["key"].clone();
                let (k, text) = (kid.clone(), key.to_string());
                db(move || {
                    Spi::run_with_args(
                        "INSERT INTO plaid_sync.webhook_keys (kid, jwk, created_at, expired_at)
                         SELECT $1, k, to_timestamp((k ->> 'created_at')::double precision),
                                to_timestamp((k ->> 'expired_at')::double precision)
                           FROM (SELECT $2::jsonb AS k) x
                         ON CONFLICT (kid) DO UPDATE SET jwk = EXCLUDED.jwk,
                                expired_at = EXCLUDED.expired_at, fetched_at = now()",
                        &[k.as_str().into(), text.as_str().into()],
                    )
                    .expect("cache key")
                });
                key
            }
            Err(e) if e.class() == crate::plaid::Class::Transient => {
                return Err(Refusal::Retry(format!("fetching verification key: {e}")));
            }
            Err(e) => {
                return Err(Refusal::Reject(format!(
                    "unknown verification key id {kid}: {e}"
                )));
            }
        },
    };
    let jwk: jwt::Jwk = serde_json::from_value(jwk_json)
        .map_err(|_| Refusal::Reject("verification key is not a JWK".into()))?;
    jwt::verify(&token, body.as_bytes(), &jwk, received).map_err(Refusal::Reject)?;
    mark(job_id, &format!("verified (kid {kid})"));
    Ok(())
}

fn mark(id: i64, verification: &str) {
    let verification = verification.to_string();
    crate::jobs::db(move || {
        Spi::run_with_args(
            "UPDATE plaid_sync.inbox SET verification = $2 WHERE id = $1",
            &[id.into(), verification.as_str().into()],
        )
        .expect("record verification")
    });
}
