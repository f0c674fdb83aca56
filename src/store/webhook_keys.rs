//! `plaid_sync.webhook_keys`, the cache of Plaid's webhook verification keys: a JWK per kid,
//! or the answer that Plaid does not know the kid (believed for `UNKNOWN_KID_TTL_S`).

use crate::database::run;
use crate::plaid::jwt::UNKNOWN_KID_TTL_S;

/// What the cache knows of a kid.
pub enum Cached {
    Key(serde_json::Value),
    /// Plaid said it does not know this kid, less than `UNKNOWN_KID_TTL` ago.
    Unknown,
    Missing,
}

/// The cache's answer for `kid`.
pub fn cached(kid: &str) -> Cached {
    crate::database::row(
        "SELECT jwk, jwk IS NULL AND fetched_at > now() - make_interval(secs => $2)
           FROM plaid_sync.webhook_keys WHERE kid = $1",
        &[kid.into(), UNKNOWN_KID_TTL_S.into()],
        |r| {
            Some(
                match (
                    r.get::<pgrx::JsonB>(1).ok().flatten(),
                    r.get::<bool>(2).ok().flatten(),
                ) {
                    (Some(j), _) => Cached::Key(j.0),
                    (None, Some(true)) => Cached::Unknown,
                    _ => Cached::Missing,
                },
            )
        },
    )
    .unwrap_or(Cached::Missing)
}

pub fn current_kids() -> Vec<String> {
    crate::database::rows(
        "SELECT kid FROM plaid_sync.webhook_keys
          WHERE jwk IS NOT NULL AND expired_at IS NULL
            AND fetched_at < now() - make_interval(secs => $1)",
        &[UNKNOWN_KID_TTL_S.into()],
        |r| r.get::<String>(1).ok().flatten(),
    )
}

/// Caches a JWK (with its expiry), or that Plaid does not know `kid` (`jwk` None).
pub fn store(kid: &str, jwk: Option<&serde_json::Value>) {
    let text = jwk.map(|j| j.to_string());
    run(
        "INSERT INTO plaid_sync.webhook_keys (kid, jwk, created_at, expired_at)
             SELECT $1, k, to_timestamp((k ->> 'created_at')::double precision),
                    to_timestamp((k ->> 'expired_at')::double precision)
               FROM (SELECT $2::jsonb AS k) x
             ON CONFLICT (kid) DO UPDATE SET jwk = EXCLUDED.jwk, created_at = EXCLUDED.created_at,
                    expired_at = EXCLUDED.expired_at, fetched_at = EXCLUDED.fetched_at",
        &[kid.into(), text.into()],
    );
}

/// Keeps Plaid's keys until a day after they expired, and "unknown kid" answers only while
/// they are believed: forged kids leave no rows behind.
pub fn prune() {
    crate::database::run(
        "DELETE FROM plaid_sync.webhook_keys
          WHERE (jwk IS NULL AND fetched_at < now() - make_interval(secs => $1))
             OR expired_at < now() - interval '1 day'",
        &[UNKNOWN_KID_TTL_S.into()],
    );
}
