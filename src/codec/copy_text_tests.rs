use serde_json::{Value, json};

use super::*;
use crate::codec::lean::mark_page;
use crate::codec::split::split;
use crate::codec::sync_page::SyncPage;

fn mark(body: &str) -> crate::codec::lean::MarkedPage {
    mark_page(&SyncPage::parse(body).unwrap(), "item")
}

fn usual() -> Value {
    json!({
        "account_id": "acc1", "account_owner": null, "amount": -487.89, "iso_currency_code": "USD",
        "unofficial_currency_code": null, "counterparties": [], "date": "2026-05-21",
        "datetime": "2026-05-21T12:00:00Z", "authorized_date": null, "name": "AMAZON 8036",
        "merchant_name": "Amazon", "payment_channel": "online", "pending": false,
        "pending_transaction_id": null, "personal_finance_category": {"primary": "X", "detailed": "Y"},
        "transaction_id": "t1", "transaction_type": "place"
    })
}

/// The fields of the one line `o` gives, or None when it does not fit.
fn fields(o: &Value) -> Option<Vec<String>> {
    let text = o.to_string();
    let s = split(&text).unwrap();
    let mut rows = Rows::default();
    if !rows.push("item", &s) {
        assert_eq!(
            rows,
            Rows::default(),
            "nothing is left of a line that does not fit"
        );
        return None;
    }
    assert!(rows.text.ends_with('\n') && rows.text.matches('\n').count() == 1);
    let line = rows.text.trim_end_matches('\n');
    Some(line.split('\t').map(str::to_string).collect())
}

#[test]
fn a_line_holds_what_the_sql_apply_stores() {
    let f = fields(&usual()).unwrap();
    assert_eq!(f.len(), COLUMNS.len());
    let col = |name: &str| f[COLUMNS.iter().position(|c| *c == name).unwrap()].as_str();
    assert_eq!(col("transaction_id"), "t1");
    assert_eq!(col("item_id"), "item");
    assert_eq!(col("amount"), "-487.89", "the digits as sent");
    assert_eq!(col("unofficial_currency_code"), "\\N");
    assert_eq!(col("authorized_date"), "\\N");
    assert_eq!(col("datetime"), "2026-05-21T12:00:00Z");
    assert_eq!(col("pending"), "f");
    assert_eq!(col("category"), "\\N", "a missing category is NULL");
    let pfc: Value = serde_json::from_str(col("personal_finance_category")).unwrap();
    assert_eq!(
        pfc,
        json!({"primary": "X", "detailed": "Y"}),
        "the object as sent"
    );
    let rest: Value = serde_json::from_str(col("rest")).unwrap();
    assert_eq!(rest, json!({"transaction_type": "place"}));
    let absent = col("absent");
    assert!(absent.starts_with('{') && absent.contains("category") && absent.contains("location"));
}

#[test]
fn text_is_escaped_for_copy_and_arrays_for_postgres() {
    let mut o = usual();
    o["name"] = json!("tab\there\nline\\slash \"q\" caf\u{e9}");
    o["category"] = json!(["Food, Drink", "a\"b\\c", null]);
    o["pending"] = Value::Null;
    let f = fields(&o).unwrap();
    assert_eq!(
        f.len(),
        COLUMNS.len(),
        "a tab inside a value is escaped, not a field break"
    );
    let col = |name: &str| f[COLUMNS.iter().position(|c| *c == name).unwrap()].as_str();
    assert_eq!(col("name"), "tab\\there\\nline\\\\slash \"q\" caf\u{e9}");
    // The array literal, then COPY's escape of its backslashes.
    assert_eq!(col("category"), r#"{"Food, Drink","a\\"b\\\\c",NULL}"#);
    assert_eq!(
        col("pending"),
        "f",
        "null pending is stored false, as coalesce does"
    );
    o["category"] = json!([]);
    let category = COLUMNS.iter().position(|c| *c == "category").unwrap();
    assert_eq!(
        fields(&o).unwrap()[category],
        "{}",
        "an empty array is an empty text[]"
    );
}

#[test]
fn values_of_another_json_type_leave_the_run_to_the_sql_apply() {
    for (key, value) in [
        ("amount", json!("12.30")),
        ("amount", Value::Null),
        ("pending", json!("yes")),
        ("account_id", json!(7)),
        ("date", json!(20260521)),
        ("transaction_id", Value::Null),
        ("category", json!("Shops")),
        ("category", json!([1])),
        ("personal_finance_category", json!("X")),
    ] {
        let mut o = usual();
        o[key] = value.clone();
        assert_eq!(fields(&o), None, "{key}: {value}");
    }
    let mut o = usual();
    o.as_object_mut().unwrap().remove("transaction_id");
    assert_eq!(fields(&o), None, "no id");
}

#[test]
fn a_page_of_new_transactions_is_copied_and_any_other_is_not() {
    let mut posted = usual();
    posted["transaction_id"] = json!("t2");
    posted["pending_transaction_id"] = json!("p1");
    let page = |added: Vec<Value>, modified: Vec<Value>, removed: Vec<Value>| {
        json!({"added": added, "modified": modified, "removed": removed, "next_cursor": "c",
               "has_more": false, "accounts": [{"account_id": "acc1"}]})
        .to_string()
    };
    let m = mark(&page(vec![usual(), posted.clone()], vec![], vec![]));
    let rows = m.copy.expect("only new transactions");
    assert_eq!(rows.text.lines().count(), 2);
    assert_eq!(rows.posted_over, vec!["p1".to_string()]);
    assert_eq!(m.accounts.as_deref(), Some(r#"[{"account_id":"acc1"}]"#));
    let empty = mark(&page(vec![], vec![], vec![]));
    assert_eq!(
        empty.copy,
        Some(Rows::default()),
        "a page with nothing new copies nothing"
    );
    for (what, body) in [
        (
            "modified",
            page(vec![usual()], vec![posted.clone()], vec![]),
        ),
        (
            "removed",
            page(vec![usual()], vec![], vec![json!({"transaction_id": "x"})]),
        ),
        (
            "not an object",
            page(vec![usual(), json!(7)], vec![], vec![]),
        ),
        (
            "a value that does not fit",
            page(
                vec![json!({"transaction_id": "t", "amount": "1"})],
                vec![],
                vec![],
            ),
        ),
    ] {
        assert_eq!(mark(&body).copy, None, "{what}");
    }
}
