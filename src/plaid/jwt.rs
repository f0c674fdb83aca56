//! The `Plaid-Verification` JWT (API_NOTES §6): ES256 only, signature by the key Plaid
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
mod unit {
    use super::*;

    #[test]
    fn only_plausible_kids_are_used() {
        assert!(plausible_kid("6c5516e1-92dc-479e-a8ff-5a51992e0001"));
        assert!(plausible_kid("k_1"));
        for bad in ["", "zzX\u{0}", "zz X", "a'b", "kid/../x", "é"] {
            assert!(!plausible_kid(bad), "{bad:?}");
        }
        assert!(plausible_kid(&"a".repeat(MAX_KID_LEN)));
        assert!(!plausible_kid(&"a".repeat(MAX_KID_LEN + 1)));
        assert!(!plausible_kid(&"a".repeat(5_900)));
        let forged = |kid: &str| {
            format!(
                "{}.e30.AA",
                B64.encode(serde_json::json!({"alg": "ES256", "kid": kid}).to_string())
            )
        };
        assert!(
            header(&forged("zzX\u{0}"))
                .unwrap_err()
                .contains("kid is not a key id")
        );
        assert!(
            header(&forged(&"k".repeat(5_900)))
                .unwrap_err()
                .contains("kid is not a key id")
        );
    }

    // API_NOTES §6.4: a real Plaid-signed sandbox webhook.
    const JWT: &str = "eyJhbGciOiJFUzI1NiIsImtpZCI6IjZjNTUxNmUxLTkyZGMtNDc5ZS1hOGZmLTVhNTE5OTJlMDAwMSIsInR5cCI6IkpXVCJ9.eyJpYXQiOjE1OTA4ODcwMDEsInJlcXVlc3RfYm9keV9zaGEyNTYiOiJiNjNhMDdiNTQ3YjAwZjk5MjU0N2Y2YmJjOGQ5YWNjNjFhOGNjZWUxMzhiYzgyZjQ0YTZiYWEwOTY4M2E1ZDBmIn0.OOKvIihgqCj7Qrb2bmz7T3t7uK-0JyjiEqL2s1kWeJBM4MMmjaHKK8GmU_z91QolBWMzvPgs718EElY-rE3cwQ";
    const BODY: &str = "{\n  \"error\": null,\n  \"item_id\": \"yxQbxDjnD8hr69pKbQpbcKeVn3GL9QuyA7NV3\",\n  \"new_transactions\": 390,\n  \"webhook_code\": \"HISTORICAL_UPDATE\",\n  \"webhook_type\": \"TRANSACTIONS\"\n}";
    const IAT: i64 = 1590887001;

    fn jwk() -> Jwk {
        serde_json::from_str(r#"{"alg":"ES256","created_at":1560466143,"crv":"P-256","expired_at":null,"kid":"6c5516e1-92dc-479e-a8ff-5a51992e0001","kty":"EC","use":"sig","x":"35lvC8uz2QrWpQJ3TUH8t9o9DURMp7ydU518RKDl20k","y":"I8BuXB2bvxelzJAd7OKhd-ZwjCst05Fx47Mb_0ugros"}"#).unwrap()
    }

    #[test]
    fn the_real_plaid_webhook_verifies_with_the_clock_at_its_time() {
        assert_eq!(BODY.len(), 173);
        assert_eq!(
            header(JWT).unwrap().0,
            "6c5516e1-92dc-479e-a8ff-5a51992e0001"
        );
        verify(JWT, BODY.as_bytes(), &jwk(), IAT + 10).unwrap();
    }

    #[test]
    fn the_spec_example_key_parses() {
        let v: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/plaid/webhook_verification_key_get.json"
        ))
        .unwrap();
        let k: Jwk = serde_json::from_value(v["key"].clone()).unwrap();
        assert_eq!(
            (k.kty.as_str(), k.crv.as_str(), k.expired_at),
            ("EC", "P-256", None)
        );
    }

    #[test]
    fn one_changed_byte_fails() {
        let body = BODY.replace("390", "391");
        assert!(
            verify(JWT, body.as_bytes(), &jwk(), IAT)
                .unwrap_err()
                .contains("sha256")
        );
    }

    #[test]
    fn stale_and_future_tokens_fail() {
        assert!(verify(JWT, BODY.as_bytes(), &jwk(), IAT + 301).is_err());
        assert!(verify(JWT, BODY.as_bytes(), &jwk(), IAT - 61).is_err());
        assert!(verify(JWT, BODY.as_bytes(), &jwk(), IAT + 300).is_ok());
    }

    #[test]
    fn forged_headers_fail() {
        let [_, p, s] = parts(JWT).unwrap();
        for alg in [
            r#"{"alg":"none","kid":"k"}"#,
            r#"{"alg":"HS256","kid":"k"}"#,
            r#"{"alg":"ES256"}"#,
        ] {
            let forged = format!("{}.{p}.{s}", B64.encode(alg));
            assert!(
                verify(&forged, BODY.as_bytes(), &jwk(), IAT).is_err(),
                "{alg}"
            );
        }
        assert!(header("not-a-jwt").is_err());
        let crit = format!(
            "{}.{p}.{s}",
            B64.encode(
                r#"{"alg":"ES256","kid":"6c5516e1-92dc-479e-a8ff-5a51992e0001","crit":["exp"]}"#
            )
        );
        assert!(header(&crit).unwrap_err().contains("crit"));
        let mut expired = jwk();
        expired.expired_at = Some(IAT);
        assert!(verify(JWT, BODY.as_bytes(), &expired, IAT).is_err());
        let mut other = jwk();
        other.x = "hKXLGIjWvCBv-cP5euCTxl8g9GLG9zHo_3pO5NN1DwQ".into();
        other.y = "shhexqPB7YffGn6fR6h2UhTSuCtPmfzQJ6ENVIoO4Ys".into();
        assert!(verify(JWT, BODY.as_bytes(), &other, IAT).is_err());
    }
}
