//! The `Plaid-Verification` JWT (docs/plaid.md, Webhook verification): ES256 only, signature by the key Plaid
//! publishes for the `kid`, `iat` at most 5 minutes before receipt, and the SHA-256 of the
//! exact body bytes, compared in constant time. Plaid's JWT has no `exp`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const MAX_AGE_S: i64 = 300;
/// Clocks differ a little; a token from further in the future is refused.
pub const MAX_SKEW_S: i64 = 60;

/// How long "Plaid does not know this kid" is believed before asking again, and how long a
/// current key is not refreshed again after it was fetched. Unknown kids older than this are
/// pruned from the key cache by worker 0's maintenance.
pub const UNKNOWN_KID_TTL_S: i32 = 300;

/// The longest kid accepted. Plaid's are UUIDs (36 characters); anything much longer is
/// forged, and would not fit a btree entry once it grows past a few kilobytes.
pub const MAX_KID_LEN: usize = 64;

#[derive(Debug, Deserialize)]
pub struct Header {
    pub alg: String,
    pub kid: Option<String>,
    /// RFC 7515 §4.1.11: extensions the verifier must understand. We understand none.
    #[serde(default)]
    pub crit: Option<serde_json::Value>,
}

/// Whether `kid` can be one of Plaid's key ids: 1 to `MAX_KID_LEN` characters of
/// `[A-Za-z0-9_-]`. Checked before a kid is used at all, so a NUL, a quote or a few kilobytes
/// of text never reach a query, a cache row or a Plaid call.
pub fn plausible_kid(kid: &str) -> bool {
    (1..=MAX_KID_LEN).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[derive(Debug, Deserialize)]
struct Claims {
    iat: i64,
    request_body_sha256: String,
}

/// The JWK fields we use.
#[derive(Debug, Clone, Deserialize)]
pub struct Jwk {
    pub kid: String,
    pub kty: String,
    pub crv: String,
    #[serde(default)]
    pub alg: Option<String>,
    pub x: String,
    pub y: String,
    #[serde(default)]
    pub expired_at: Option<i64>,
}

fn parts(jwt: &str) -> Result<[&str; 3], String> {
    let v: Vec<&str> = jwt.trim().split('.').collect();
    match v.as_slice() {
        [h, p, s] if !h.is_empty() && !p.is_empty() => Ok([h, p, s]),
        _ => Err("Plaid-Verification is not a JWT (expected three dot-separated parts)".into()),
    }
}

/// Reads the header without trusting it, and insists on ES256 with a kid.
pub fn header(jwt: &str) -> Result<(String, Header), String> {
    let [h, _, _] = parts(jwt)?;
    let bytes = B64
        .decode(h)
        .map_err(|_| "JWT header is not base64url".to_string())?;
    let header: Header =
        serde_json::from_slice(&bytes).map_err(|_| "JWT header is not JSON".to_string())?;
    if header.alg != "ES256" {
        return Err(format!(
            "JWT alg {:?} refused: only ES256 is accepted",
            header.alg
        ));
    }
    if header.crit.is_some() {
        return Err("JWT header has a crit parameter, and no extension is understood".into());
    }
    let kid = header
        .kid
        .clone()
        .filter(|k| !k.is_empty())
        .ok_or("JWT header has no kid")?;
    if !plausible_kid(&kid) {
        return Err(format!(
            "JWT kid is not a key id (1 to {MAX_KID_LEN} letters, digits, - or _)"
        ));
    }
    Ok((kid, header))
}

/// Full verification against `jwk`, with `now` the Unix time the webhook was received.
pub fn verify(jwt: &str, body: &[u8], jwk: &Jwk, now: i64) -> Result<(), String> {
    header(jwt)?;
    if jwk.kty != "EC" || jwk.crv != "P-256" || jwk.alg.as_deref().is_some_and(|a| a != "ES256") {
        return Err("verification key is not an ES256 P-256 key".into());
    }
    if jwk.expired_at.is_some() {
        return Err(format!("verification key {} has expired", jwk.kid));
    }
    let [h, p, s] = parts(jwt)?;
    let coord = |c: &str| -> Result<[u8; 32], String> {
        B64.decode(c)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| "bad JWK coordinate".to_string())
    };
    let mut sec1 = vec![4u8];
    sec1.extend_from_slice(&coord(&jwk.x)?);
    sec1.extend_from_slice(&coord(&jwk.y)?);
    let key =
        VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| "JWK is not a P-256 point".to_string())?;
    let sig = B64
        .decode(s)
        .map_err(|_| "JWT signature is not base64url".to_string())?;
    let sig = Signature::from_slice(&sig)
        .map_err(|_| "JWT signature is not a 64-byte ES256 signature".to_string())?;
    key.verify(format!("{h}.{p}").as_bytes(), &sig)
        .map_err(|_| "JWT signature does not verify".to_string())?;
    let claims: Claims = serde_json::from_slice(
        &B64.decode(p)
            .map_err(|_| "JWT payload is not base64url".to_string())?,
    )
    .map_err(|_| "JWT payload lacks iat or request_body_sha256".to_string())?;
    if now - claims.iat > MAX_AGE_S {
        return Err(format!(
            "JWT iat is {} s before receipt (more than {MAX_AGE_S})",
            now - claims.iat
        ));
    }
    if claims.iat - now > MAX_SKEW_S {
        return Err(format!("JWT iat is {} s in the future", claims.iat - now));
    }
    let digest = hex::encode(Sha256::digest(body));
    if !bool::from(
        digest
            .as_bytes()
            .ct_eq(claims.request_body_sha256.to_ascii_lowercase().as_bytes()),
    ) {
        return Err("request_body_sha256 does not match the body".into());
    }
    Ok(())
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod unit;
