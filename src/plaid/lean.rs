//! Transactions stored lean. Most of a Plaid transaction object is its shape: the same ~30
//! keys on every row, most of them null, and values that the typed columns already hold.
//! Here, in the worker's job thread, each object of a `/transactions/sync` page is marked
//! with what Postgres can rebuild without storing it again:
//!
//! - `absent`: the keys of the template or the typed columns that the object does not have;
//! - `rest`: every other key, except typed-column keys whose value the column gives back
//!   exactly and keys whose value is the template's (`null`, `[]`, an all-null `location`).
//!
//! The row then stores only the rest, and `plaid_sync.transactions.data` is
//! `((template || typed columns) - absent) || rest`: Plaid's object, exactly. A value is left
//! in the rest whenever there is any doubt, so the rule only ever costs bytes, never data.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

/// The key each marked object carries: `{"rest": {…}, "absent": "{…}"}` (a text[] literal).
pub const MARK: &str = "plaid_sync:lean";

/// Codec 1's template: Plaid transaction keys and the value almost every row has. Frozen:
/// rows record their codec, so a new template is a new codec, never an edit of this one.
/// `sql/schema.sql` holds the same text in `plaid_sync.transaction_template` (a test checks).
pub const TEMPLATE: &str = r#"{"account_owner": null, "authorized_datetime": null, "check_number": null, "counterparties": [], "location": {"address": null, "city": null, "country": null, "lat": null, "lon": null, "postal_code": null, "region": null, "store_number": null}, "logo_url": null, "merchant_entity_id": null, "payment_meta": {"by_order_of": null, "payee": null, "payer": null, "payment_method": null, "payment_processor": null, "ppd_id": null, "reason": null, "reference_number": null}, "transaction_code": null, "website": null}"#;

/// What a typed column gives back, and so which raw values it can stand for.
#[derive(Clone, Copy)]
enum Typed {
    Text,
    Number,
    Bool,
    Date,
    DateTime,
    TextArray,
    Object,
}

/// The typed columns of `plaid_sync.transaction_rows` that rebuild their key.
const TYPED: [(&str, Typed); 15] = [
    ("account_id", Typed::Text),
    ("amount", Typed::Number),
    ("authorized_date", Typed::Date),
    ("category", Typed::TextArray),
    ("date", Typed::Date),
    ("datetime", Typed::DateTime),
    ("iso_currency_code", Typed::Text),
    ("merchant_name", Typed::Text),
    ("name", Typed::Text),
    ("payment_channel", Typed::Text),
    ("pending", Typed::Bool),
    ("pending_transaction_id", Typed::Text),
    ("personal_finance_category", Typed::Object),
    ("transaction_id", Typed::Text),
    ("unofficial_currency_code", Typed::Text),
];

/// Whether the column rebuilds `raw` exactly. Nullable columns give `null` back as NULL, except
/// `pending` (NOT NULL, a missing value is stored as false) and `amount` (NOT NULL).
fn derivable(kind: Typed, raw: &str) -> bool {
    let b = raw.as_bytes();
    match kind {
        Typed::Bool => raw == "true" || raw == "false",
        Typed::Number => matches!(b.first(), Some(b'-' | b'0'..=b'9')),
        _ if raw == "null" => true,
        // `->>` unescapes a string and to_jsonb escapes it again: the same jsonb string.
        Typed::Text => b.first() == Some(&b'"'),
        // Canonical forms only: what to_jsonb(date) and the view's UTC format print.
        Typed::Date => b.len() == 12 && is_date(&b[1..11]) && b[0] == b'"' && b[11] == b'"',
        Typed::DateTime => {
            b.len() == 22
                && b[0] == b'"'
                && is_date(&b[1..11])
                && b[11] == b'T'
                && is_time(&b[12..20])
                && &b[20..] == b"Z\""
        }
        Typed::TextArray => serde_json::from_str::<Vec<&RawValue>>(raw)
            .is_ok_and(|v| v.iter().all(|e| e.get().starts_with('"'))),
        Typed::Object => b.first() == Some(&b'{'),
    }
}

fn digits(b: &[u8]) -> bool {
    b.iter().all(u8::is_ascii_digit)
}

/// Two ASCII digits as a number.
fn two(b: &[u8]) -> u32 {
    u32::from(b[0] - b'0') * 10 + u32::from(b[1] - b'0')
}

/// YYYY-MM-DD with a month and day in range (an impossible date fails the cast and the row
/// is rejected by the apply, so it never needs rebuilding).
fn is_date(b: &[u8]) -> bool {
    b.len() == 10
        && digits(&b[0..4])
        && b[4] == b'-'
        && digits(&b[5..7])
        && b[7] == b'-'
        && digits(&b[8..10])
        && (1..=12).contains(&two(&b[5..7]))
        && (1..=31).contains(&two(&b[8..10]))
}

/// HH:MM:SS, 00:00:00–23:59:59 (Postgres takes 24:00:00 and :60 but prints them otherwise).
fn is_time(b: &[u8]) -> bool {
    b.len() == 8
        && digits(&b[0..2])
        && b[2] == b':'
        && digits(&b[3..5])
        && b[5] == b':'
        && digits(&b[6..8])
        && two(&b[0..2]) <= 23
        && two(&b[3..5]) <= 59
        && two(&b[6..8]) <= 59
}

/// Whether `raw` is the template's value `template` (both JSON texts).
fn is_default(raw: &str, template: &RawValue) -> bool {
    let t = template.get();
    if t == "null" || t == "[]" {
        return raw == "null"
            || (t == "[]"
                && serde_json::from_str::<Vec<&RawValue>>(raw).is_ok_and(|v| v.is_empty()));
    }
    // An object of nulls: the same keys, every value null.
    let (Ok(want), Ok(got)) = (
        serde_json::from_str::<BTreeMap<String, &RawValue>>(t),
        serde_json::from_str::<BTreeMap<String, &RawValue>>(raw),
    ) else {
        return false;
    };
    want.len() == got.len()
        && got
            .iter()
            .all(|(k, v)| want.contains_key(k) && v.get() == "null")
}

/// The template's keys and values, parsed once (every transaction of every page is marked).
fn template() -> &'static BTreeMap<String, &'static RawValue> {
    static PARSED: std::sync::LazyLock<BTreeMap<String, &'static RawValue>> =
        std::sync::LazyLock::new(|| serde_json::from_str(TEMPLATE).expect("the template is JSON"));
    &PARSED
}

/// A text[] literal of plain keys (every key here is [a-z_]).
fn text_array(keys: &[&str]) -> String {
    format!("\"{{{}}}\"", keys.join(","))
}

/// One transaction object, marked: its typed keys as sent (the apply reads the columns from
/// them) and `{"plaid_sync:lean": {"rest": {…}, "absent": "{…}"}}`, the rest being what the
/// row stores. None when it is not an object (the apply then stores it whole).
pub fn mark(object: &str) -> Option<String> {
    let o: BTreeMap<String, &RawValue> = serde_json::from_str(object).ok()?;
    if o.contains_key(MARK) {
        return None;
    }
    let template = template();
    let mut absent: Vec<&str> = template
        .keys()
        .map(String::as_str)
        .chain(TYPED.iter().map(|(k, _)| *k))
        .filter(|k| !o.contains_key(*k))
        .collect();
    absent.sort_unstable();
    let (mut typed, mut rest) = (String::with_capacity(300), String::with_capacity(300));
    for (k, v) in &o {
        let raw = v.get();
        let pair = |out: &mut String| -> Option<()> {
            out.push_str(&serde_json::to_string(k).ok()?);
            out.push(':');
            out.push_str(raw);
            out.push(',');
            Some(())
        };
        if let Some(t) = template.get(k) {
            if !is_default(raw, t) {
                pair(&mut rest)?;
            }
        } else if let Some((_, kind)) = TYPED.iter().find(|(name, _)| name == k) {
            pair(&mut typed)?;
            if !derivable(*kind, raw) {
                pair(&mut rest)?;
            }
        } else {
            pair(&mut rest)?;
        }
    }
    rest.pop(); // the last comma
    Some(format!(
        "{{{typed}\"{MARK}\":{{\"rest\":{{{rest}}},\"absent\":{}}}}}",
        text_array(&absent)
    ))
}

/// A `/transactions/sync` page with every `added` and `modified` object marked; None when the
/// page is not the object Plaid documents (it is then staged as it came).
pub fn mark_page(body: &str) -> Option<String> {
    let page: BTreeMap<String, &RawValue> = serde_json::from_str(body).ok()?;
    let mut out = String::with_capacity(body.len());
    out.push('{');
    for (i, (k, v)) in page.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(k).ok()?);
        out.push(':');
        if k == "added" || k == "modified" {
            let list: Vec<&RawValue> = serde_json::from_str(v.get()).ok()?;
            out.push('[');
            for (j, e) in list.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                match mark(e.get()) {
                    Some(m) => out.push_str(&m),
                    None => out.push_str(e.get()),
                }
            }
            out.push(']');
        } else {
            out.push_str(v.get());
        }
    }
    out.push('}');
    Some(out)
}

#[cfg(test)]
#[path = "lean_tests.rs"]
mod unit;
