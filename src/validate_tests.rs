use super::*;

#[test]
fn item_ids() {
    assert!(item_id(Some("lPNjeW1nR6CDn5okmGQ6hEpMo4lLNoSrzqDje")).is_ok());
    for bad in [
        None,
        Some(""),
        Some("  "),
        Some("a b"),
        Some("x'; DROP TABLE items; --"),
        Some("a\u{0}b"),
        Some("a\nb"),
    ] {
        assert_eq!(item_id(bad).unwrap_err().sqlstate(), "22023", "{bad:?}");
    }
    assert!(item_id(Some(&"a".repeat(129))).is_err());
    let e = item_id(Some("access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6")).unwrap_err();
    assert!(e.message().contains("looks like a Plaid token") && !e.message().contains("de3ce8ef"));
    assert!(item_id(Some("public-sandbox-x")).is_err());
}

#[test]
fn tokens() {
    assert!(
        access_token(
            Some("access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6"),
            "sandbox"
        )
        .is_ok()
    );
    let e = access_token(Some("access-production-de3ce8ef"), "sandbox").unwrap_err();
    assert!(e.message().contains("production environment"));
    assert!(!e.message().contains("de3ce8ef"));
    for bad in [
        "",
        "public-sandbox-x",
        "access-sandbox-",
        "access-sandbox-a b",
        "access-sandbox",
        "access-sandbox--",
        "access-sandbox-de3ce8ef",
        "access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f",
        "access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6-",
        "access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0fg",
        "access-sandbox-de3ce8ef33f8-452c-a685-8671031fc0f6a",
    ] {
        assert!(access_token(Some(bad), "sandbox").is_err(), "{bad}");
    }
}

#[test]
fn notices() {
    let ok = serde_json::json!({"webhook_type":"ITEM","webhook_code":"ERROR","item_id":"abc"});
    assert_eq!(notice(&ok).unwrap().item_id.as_deref(), Some("abc"));
    for bad in [
        serde_json::json!([1]),
        serde_json::json!({"webhook_code":"X"}),
        serde_json::json!({"webhook_type":"","webhook_code":"X"}),
        serde_json::json!({"webhook_type":1,"webhook_code":"X"}),
        serde_json::json!({"webhook_type":"A","webhook_code":"X","item_id":"a b"}),
    ] {
        assert!(notice(&bad).is_err(), "{bad}");
    }
    assert_eq!(json_object(Some("{")).unwrap_err().sqlstate(), "22P02");
    assert_eq!(json_object(Some("[]")).unwrap_err().sqlstate(), "22023");
    // What jsonb takes and serde does not is 22P02 too, and the message never quotes the text.
    let secret = "access-sandbox-0b5e0c4e-3f0e-4a6b-9d1f-5a9e2b7c1d00";
    for bad in [
        format!(r#"{{"access_token":"{secret}","n":1e400}}"#),
        format!(r#"{{"access_token":"{secret}","n":1{}}}"#, "0".repeat(400)),
        format!(
            r#"{{"access_token":"{secret}","n":{}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        ),
        format!(r#"{{"access_token":"{secret}", oops}}"#),
        format!(r#"{{"access_token":"{secret}"#),
    ] {
        let e = json_object(Some(&bad)).unwrap_err();
        assert_eq!(e.sqlstate(), "22P02", "{e}");
        assert!(
            !e.message().contains(secret) && !e.message().contains("oops"),
            "{e}"
        );
    }
}

#[test]
fn bodies_jsonb_may_refuse() {
    for plain in [
        r#"{"webhook_type":"TRANSACTIONS","new_transactions":3,"x":-0.25,"ok":true}"#,
        r#"{"s":"1e999 and \\\" quoted","n":123456789012345678901234567890}"#,
    ] {
        assert!(!jsonb_may_refuse(plain), "{plain}");
    }
    for ask in [
        r#"{"s":"\u0000"}"#,
        r#"{"s":"\ud800"}"#,
        r#"{"n":1e-5000}"#,
        r#"{"n":2E3}"#,
        &format!(r#"{{"n":0.{}1}}"#, "0".repeat(40)),
    ] {
        assert!(jsonb_may_refuse(ask), "{ask}");
    }
}
