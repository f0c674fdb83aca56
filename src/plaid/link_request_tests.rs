use super::*;

fn settings() -> LinkSettings {
    LinkSettings {
        webhook_url: Some("https://api.example.com/plaid".into()),
        client_name: Some("Acme".into()),
        country_codes: vec!["US".into()],
        language: "en".into(),
        days_requested: 365,
    }
}

fn opts(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[test]
fn a_new_link_carries_the_settings_the_products_and_the_history_asked_for() {
    let b = link_token_body(
        &settings(),
        "u1",
        &["transactions".into()],
        None,
        &Map::new(),
    )
    .unwrap();
    assert_eq!(b["client_name"], "Acme");
    assert_eq!(b["language"], "en");
    assert_eq!(b["country_codes"], json!(["US"]));
    assert_eq!(b["user"], json!({"client_user_id": "u1"}));
    assert_eq!(b["webhook"], "https://api.example.com/plaid");
    assert_eq!(b["products"], json!(["transactions"]));
    assert_eq!(b["transactions"], json!({"days_requested": 365}));
    assert!(b.get("access_token").is_none());
}

#[test]
fn update_mode_sends_the_token_and_no_products() {
    let b = link_token_body(
        &settings(),
        "u1",
        &["transactions".into()],
        Some("access-sandbox-x"),
        &Map::new(),
    )
    .unwrap();
    assert_eq!(b["access_token"], "access-sandbox-x");
    assert!(b.get("products").is_none());
    assert!(b.get("transactions").is_none());
}

#[test]
fn options_pass_through_and_merge_into_user() {
    let o = opts(json!({"redirect_uri": "https://app.example.com/oauth",
                        "user": {"email_address": "a@example.com"},
                        "account_filters": {"depository": {"account_subtypes": ["checking"]}},
                        "country_codes": ["us", "CA"], "language": "fr",
                        "update": {"account_selection_enabled": true}}));
    let b = link_token_body(&settings(), "u1", &["auth".into()], None, &o).unwrap();
    assert_eq!(b["redirect_uri"], "https://app.example.com/oauth");
    assert_eq!(
        b["user"],
        json!({"client_user_id": "u1", "email_address": "a@example.com"})
    );
    assert_eq!(b["country_codes"], json!(["US", "CA"]));
    assert_eq!(b["language"], "fr");
    assert_eq!(b["update"]["account_selection_enabled"], true);
}

#[test]
fn options_plaid_sync_owns_or_does_not_know_are_refused() {
    for key in [
        "client_id",
        "secret",
        "access_token",
        "webhook",
        "products",
        "user_token",
    ] {
        let e = link_token_body(
            &settings(),
            "u1",
            &["auth".into()],
            None,
            &opts(json!({key: "x"})),
        )
        .unwrap_err();
        assert!(e.contains("set by plaid_sync"), "{key}: {e}");
        assert!(!e.contains("\"x\""));
    }
    let e = link_token_body(
        &settings(),
        "u1",
        &["auth".into()],
        None,
        &opts(json!({"bogus": 1})),
    )
    .unwrap_err();
    assert!(e.contains("options.bogus is not a Link option"), "{e}");
    let e = link_token_body(
        &settings(),
        "u1",
        &["auth".into()],
        None,
        &opts(json!({"user": {"client_user_id": "u2"}})),
    )
    .unwrap_err();
    assert!(e.contains("differs"), "{e}");
    let e = link_token_body(
        &settings(),
        "u1",
        &["auth".into()],
        None,
        &opts(json!({"language": "xx"})),
    )
    .unwrap_err();
    assert!(e.contains("not shown in"), "{e}");
}

#[test]
fn no_client_name_no_link_token() {
    let s = LinkSettings {
        client_name: None,
        ..settings()
    };
    let e = link_token_body(&s, "u1", &["auth".into()], None, &Map::new()).unwrap_err();
    assert!(e.contains("plaid_sync.client_name"));
}

#[test]
fn settings_are_checked() {
    assert_eq!(country_codes("US, ca").unwrap(), vec!["US", "CA"]);
    assert!(country_codes("").unwrap_err().contains("at least one"));
    assert!(
        country_codes("US,XX")
            .unwrap_err()
            .contains("\"XX\" is not a country code")
    );
    assert!(language("en").is_ok());
    assert!(language("EN").is_err());
    assert!(client_name("Acme").is_ok());
    assert!(client_name(&"x".repeat(31)).unwrap_err().contains("30"));
    assert!(client_name("a\nb").is_err());
}

#[test]
fn products_are_checked() {
    let p = |v: &[&str]| products(&v.iter().map(|s| Some(s.to_string())).collect::<Vec<_>>());
    assert_eq!(
        p(&["transactions", "auth"]).unwrap(),
        vec!["transactions", "auth"]
    );
    assert!(p(&[]).unwrap_err().contains("at least one"));
    assert!(p(&["balance"]).unwrap_err().contains("Balance comes with"));
    assert!(
        p(&["recurring_transactions"])
            .unwrap_err()
            .contains("Link refuses")
    );
    assert!(p(&["auth", "auth"]).unwrap_err().contains("twice"));
    assert!(products(&[None]).unwrap_err().contains("NULL"));
}

#[test]
fn metadata_gives_the_institution_and_sorted_accounts() {
    let m = metadata(
        &json!({"institution": {"name": "Bank", "institution_id": "ins_1"},
                             "accounts": [{"id": "a", "mask": "2222", "type": "depository"},
                                          {"id": "b", "mask": null, "type": "credit"},
                                          {"id": "c", "mask": "0000", "type": "depository"}]}),
    )
    .unwrap();
    assert_eq!(m.institution_id, "ins_1");
    assert_eq!(
        m.accounts,
        vec!["credit:", "depository:0000", "depository:2222"]
    );
    assert!(
        metadata(&json!({"accounts": []}))
            .unwrap_err()
            .contains("institution_id")
    );
    assert!(
        metadata(&json!({"institution": {"institution_id": "i"}, "accounts": []}))
            .unwrap_err()
            .contains("non-empty array")
    );
    assert!(
        metadata(&json!({"institution": {"institution_id": "i"}, "accounts": [{"mask": "1"}]}))
            .unwrap_err()
            .contains("needs a type")
    );
}
