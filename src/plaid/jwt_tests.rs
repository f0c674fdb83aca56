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

// A real Plaid-signed sandbox webhook (Plaid's published sandbox key).
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
