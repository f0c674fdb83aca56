use serde_json::{Map, Value, json};

use super::*;
use crate::codec::split::{TEMPLATE, known};

fn plaid_object() -> Value {
    json!({
        "account_id": "acc1", "account_owner": null, "amount": -487.89, "iso_currency_code": "USD",
        "unofficial_currency_code": null, "check_number": null, "counterparties": [],
        "date": "2026-05-21", "datetime": "2026-05-21T12:00:00Z", "authorized_date": "2026-05-20",
        "authorized_datetime": null,
        "location": {"address": null, "city": null, "region": null, "postal_code": null,
                     "country": null, "lat": null, "lon": null, "store_number": null},
        "name": "AMAZON 8036", "merchant_name": "Amazon", "merchant_entity_id": null,
        "logo_url": null, "website": null,
        "payment_meta": {"by_order_of": null, "payee": null, "payer": null, "payment_method": null,
                         "payment_processor": null, "ppd_id": null, "reason": null,
                         "reference_number": null},
        "payment_channel": "online", "pending": false, "pending_transaction_id": null,
        "personal_finance_category": {"primary": "GENERAL_MERCHANDISE", "detailed": "X"},
        "personal_finance_category_icon_url": "https://example/icon.png",
        "transaction_id": "t1", "transaction_code": null, "transaction_type": "place"
    })
}

fn literal(v: &Value) -> Vec<String> {
    let s = v.as_str().unwrap();
    let inner = &s[1..s.len() - 1];
    if inner.is_empty() {
        vec![]
    } else {
        inner.split(',').map(str::to_string).collect()
    }
}

/// What the view does, with each typed column assumed to give back the value it was read from
/// when that key is not in the rest (the SQL side of that is tested end to end):
/// ((template || typed) - absent) || rest.
fn rebuild(marked: &str) -> Value {
    let mut staged: Map<String, Value> = serde_json::from_str(marked).unwrap();
    let mark = staged.remove(MARK).unwrap();
    let absent = literal(&mark["absent"]);
    let mut out: Map<String, Value> = serde_json::from_str(TEMPLATE).unwrap();
    for (k, _) in TYPED {
        out.insert(k.into(), staged.get(k).cloned().unwrap_or(Value::Null));
    }
    for k in &absent {
        out.remove(k);
    }
    for (k, v) in mark["rest"].as_object().unwrap() {
        out.insert(k.clone(), v.clone());
    }
    Value::Object(out)
}

/// The typed keys a marked object leaves to its columns.
fn derived(marked: &str) -> Vec<String> {
    let staged: Map<String, Value> = serde_json::from_str(marked).unwrap();
    let rest = staged[MARK]["rest"].as_object().unwrap();
    TYPED
        .iter()
        .map(|(k, _)| k.to_string())
        .filter(|k| staged.contains_key(k) && !rest.contains_key(k))
        .collect()
}

fn round_trip(o: &Value) -> String {
    let marked = mark(&o.to_string()).expect("an object is marked");
    assert_eq!(&rebuild(&marked), o, "rebuilt from {marked}");
    marked
}

#[test]
fn a_usual_object_keeps_only_what_no_column_or_template_holds() {
    let marked = round_trip(&plaid_object());
    let staged: Map<String, Value> = serde_json::from_str(&marked).unwrap();
    let mark = &staged[MARK];
    assert_eq!(literal(&mark["absent"]), vec!["category"]);
    assert_eq!(derived(&marked).len(), 14);
    let rest = mark["rest"].as_object().unwrap();
    assert_eq!(
        rest.keys().collect::<Vec<_>>(),
        ["personal_finance_category_icon_url", "transaction_type"]
    );
    for typed in ["amount", "name", "transaction_id", "date"] {
        assert!(
            staged.contains_key(typed),
            "{typed} is staged for its column"
        );
    }
    assert!(
        !staged.contains_key("location") && !staged.contains_key("transaction_type"),
        "only typed keys on top"
    );
}

#[test]
fn anything_a_column_would_not_give_back_exactly_stays() {
    let mut o = plaid_object();
    let changes = json!({
        "date": "2026-5-21", "datetime": "2026-05-21T12:00:00+02:00", "authorized_date": null,
        "pending": null, "amount": "1.50", "name": 5, "category": ["Shops", null],
        "location": {"city": "Oslo", "address": null, "region": null, "postal_code": null,
                     "country": null, "lat": null, "lon": null, "store_number": null},
        "counterparties": [{"name": "Amazon"}], "website": "", "original_description": "AMZN"
    });
    for (k, v) in changes.as_object().unwrap() {
        o[k] = v.clone();
    }
    let marked = round_trip(&o);
    let staged: Map<String, Value> = serde_json::from_str(&marked).unwrap();
    let derived = derived(&marked);
    for k in ["date", "datetime", "pending", "amount", "name", "category"] {
        assert!(!derived.iter().any(|d| d == k), "{k} is not derived");
    }
    assert!(
        derived.iter().any(|d| d == "authorized_date"),
        "null is NULL"
    );
    for (k, v) in changes.as_object().unwrap() {
        assert_eq!(&staged[MARK]["rest"][k], v, "{k} is kept as sent");
    }
}

#[test]
fn times_and_dates_out_of_the_printed_range_stay() {
    for dt in [
        "2026-05-21T24:00:00Z",
        "2026-05-21T23:59:60Z",
        "2026-05-21T12:00:00.5Z",
        "2026-13-01T00:00:00Z",
    ] {
        let mut o = plaid_object();
        o["datetime"] = json!(dt);
        let marked = round_trip(&o);
        assert!(!derived(&marked).contains(&"datetime".to_string()), "{dt}");
    }
}

#[test]
fn missing_keys_are_absent_and_extra_keys_kept() {
    let o = json!({"transaction_id": "t", "account_id": "a", "amount": 1, "business_finance_category": {"x": 1}});
    let marked = round_trip(&o);
    let absent = literal(&serde_json::from_str::<Value>(&marked).unwrap()[MARK]["absent"]);
    assert!(absent.contains(&"location".to_string()) && absent.contains(&"pending".to_string()));
    assert!(!absent.contains(&"amount".to_string()));
    round_trip(&json!({}));
}

#[test]
fn a_page_is_marked_and_everything_else_on_it_kept() {
    let page = json!({"added": [plaid_object()], "modified": [plaid_object(), 7], "removed": [{"transaction_id": "r"}],
                      "next_cursor": "c\u{e9}", "has_more": false, "accounts": [{"account_id": "a", "balances": {"current": 1.10}}]});
    let body = page.to_string();
    let page_marked = mark_page(&SyncPage::parse(&body).unwrap(), "item");
    assert!(
        page_marked.copy.is_none(),
        "a page that modifies is applied by SQL"
    );
    let marked: Value = serde_json::from_str(&page_marked.body).unwrap();
    assert_eq!(rebuild(&marked["added"][0].to_string()), plaid_object());
    assert_eq!(marked["modified"][1], json!(7));
    for k in ["removed", "next_cursor", "has_more", "accounts"] {
        assert_eq!(marked[k], page[k]);
    }
    assert!(SyncPage::parse("[1]").is_err() && SyncPage::parse("{\"added\": 3}").is_err());
    assert!(
        mark(&marked["added"][0].to_string()).is_none(),
        "never marked twice"
    );
}

#[test]
fn the_sql_absent_keys_are_the_template_and_the_typed_columns() {
    // plaid_sync.transaction_absent lists the typed keys as a jsonb object literal.
    for sql in [
        include_str!("../../sql/schema.sql"),
        include_str!("../../sql/plaid_sync--0.1.0--0.2.0.sql"),
    ] {
        let f = &sql[sql
            .find("CREATE FUNCTION plaid_sync.transaction_absent")
            .unwrap()..];
        let typed = f.split("|| '").nth(1).unwrap().split('\'').next().unwrap();
        let keys: Map<String, Value> = serde_json::from_str(typed).unwrap();
        let want: Vec<&str> = TYPED.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys.keys().map(String::as_str).collect::<Vec<_>>(), want);
        assert!(f.contains(&format!("'{TEMPLATE}'::jsonb")));
    }
}

#[test]
fn the_sql_template_is_this_one() {
    for (name, sql) in [
        ("schema.sql", include_str!("../../sql/schema.sql")),
        (
            "the upgrade",
            include_str!("../../sql/plaid_sync--0.1.0--0.2.0.sql"),
        ),
    ] {
        assert!(
            sql.contains(&format!("'{TEMPLATE}'::jsonb")),
            "{name} holds codec 1's template"
        );
    }
}

#[test]
fn every_known_key_is_found_and_no_other() {
    let k = known();
    assert_eq!(k.keys.len(), TYPED.len() + 10);
    for (i, (key, _)) in k.keys.iter().enumerate() {
        assert_eq!(k.index(key), Some(i), "{key}");
    }
    for other in ["", "x", "amounts", "transaction_type", "Amount", MARK] {
        assert_eq!(k.index(other), None, "{other}");
    }
}
