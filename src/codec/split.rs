//! One Plaid transaction object split as its row stores it (see `lean.rs` for the rule): the
//! raw value of each key a typed column or the template knows, the rest, and the known keys
//! the object lacks. Borrowed from the page's text; nothing is parsed twice.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

pub(super) use super::columns::{TYPED, Typed};

/// The key each marked object carries: `{"rest": {…}, "absent": "{…}"}` (a text[] literal).
pub const MARK: &str = "plaid_sync:lean";

/// Codec 1's template: Plaid transaction keys and the value almost every row has. Frozen:
/// rows record their codec, so a new template is a new codec, never an edit of this one.
/// `sql/schema.sql` holds the same text in `plaid_sync.transaction_template` (a test checks).
pub const TEMPLATE: &str = r#"{"account_owner": null, "authorized_datetime": null, "check_number": null, "counterparties": [], "location": {"address": null, "city": null, "country": null, "lat": null, "lon": null, "postal_code": null, "region": null, "store_number": null}, "logo_url": null, "merchant_entity_id": null, "payment_meta": {"by_order_of": null, "payee": null, "payer": null, "payment_method": null, "payment_processor": null, "ppd_id": null, "reason": null, "reference_number": null}, "transaction_code": null, "website": null}"#;

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
    let (Some(want), Some(got)) = (
        super::sync_page::object_fields(t),
        super::sync_page::object_fields(raw),
    ) else {
        return false;
    };
    want.len() == got.len()
        && got.iter().all(|(_, v)| v.get() == "null")
        && want
            .iter()
            .all(|(k, _)| got.iter().filter(|(g, _)| g == k).count() == 1)
}

/// The template's keys and values, parsed once (every transaction of every page is marked).
fn template() -> &'static BTreeMap<String, &'static RawValue> {
    static PARSED: std::sync::LazyLock<BTreeMap<String, &'static RawValue>> =
        std::sync::LazyLock::new(|| serde_json::from_str(TEMPLATE).expect("the template is JSON"));
    &PARSED
}

/// An object split as the row stores it: its fields (borrowed from the page's text), the rest
/// (a JSON object) and the template's and typed keys it lacks, sorted.
pub struct Split<'a> {
    /// The raw value of each of `known()`'s keys, None where the object lacks it.
    known: Vec<Option<&'a RawValue>>,
    pub rest: String,
    pub absent: Vec<&'static str>,
}

impl<'a> Split<'a> {
    /// The raw JSON of a typed or template key, None when the object lacks it.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.known[known().index(key)?].map(RawValue::get)
    }

    /// `absent` as the text[] literal the row stores (every key here is [a-z_]).
    pub fn absent_literal(&self) -> String {
        format!("{{{}}}", self.absent.join(","))
    }
}

/// What a key of the template or of a typed column is.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Template(&'static RawValue),
    Typed(Typed),
}

/// The template's and the typed columns' keys, sorted, with an open-addressing table on them:
/// every key of every object is looked up here, and a search by comparison showed in profiles.
pub(super) struct Known {
    pub(super) keys: Vec<(&'static str, Kind)>,
    slots: [u8; 64],
}

impl Known {
    fn slot(key: &[u8]) -> usize {
        let (first, last) = (key[0] as usize, key[key.len() - 1] as usize);
        (key.len() * 31 + first * 7 + last * 3) & 63
    }

    pub(super) fn index(&self, key: &str) -> Option<usize> {
        if key.is_empty() {
            return None;
        }
        let mut h = Self::slot(key.as_bytes());
        loop {
            let i = self.slots[h];
            if i == u8::MAX {
                return None;
            }
            if self.keys[i as usize].0 == key {
                return Some(i as usize);
            }
            h = (h + 1) & 63;
        }
    }
}

pub(super) fn known() -> &'static Known {
    static KNOWN: std::sync::LazyLock<Known> = std::sync::LazyLock::new(|| {
        let mut keys: Vec<(&'static str, Kind)> = template()
            .iter()
            .map(|(k, v)| (k.as_str(), Kind::Template(v)))
            .chain(TYPED.iter().map(|(k, t)| (*k, Kind::Typed(*t))))
            .collect();
        keys.sort_unstable_by_key(|(k, _)| *k);
        assert!(keys.len() < 48, "the table keeps free slots");
        let mut slots = [u8::MAX; 64];
        for (i, (k, _)) in keys.iter().enumerate() {
            let mut h = Known::slot(k.as_bytes());
            while slots[h] != u8::MAX {
                h = (h + 1) & 63;
            }
            slots[h] = i as u8;
        }
        Known { keys, slots }
    });
    &KNOWN
}

/// Splits one transaction object; None when it is not an object, or has a key written with
/// escapes (such an object is stored whole, which is exact).
pub fn split(object: &str) -> Option<Split<'_>> {
    let fields = super::sync_page::object_fields(object)?;
    let table = known();
    let mut known: Vec<Option<&RawValue>> = vec![None; table.keys.len()];
    let mut rest = String::with_capacity(300);
    rest.push('{');
    for (k, v) in fields {
        match table.index(k) {
            // A key seen twice: the last one counts, as in jsonb.
            Some(i) => known[i] = Some(v),
            None if k == MARK => return None,
            None => pair(&mut rest, k, v.get()),
        }
    }
    let mut absent = Vec::new();
    for ((k, kind), v) in table.keys.iter().zip(&known) {
        let Some(v) = v else {
            absent.push(*k);
            continue;
        };
        let keep = match kind {
            Kind::Template(t) => !is_default(v.get(), t),
            Kind::Typed(t) => !derivable(*t, v.get()),
        };
        if keep {
            pair(&mut rest, k, v.get());
        }
    }
    if rest.len() > 1 {
        rest.pop(); // the last comma
    }
    rest.push('}');
    Some(Split {
        known,
        rest,
        absent,
    })
}

/// `"key":raw,` (a borrowed key has no escapes, so quoting it is exact).
pub(super) fn pair(out: &mut String, key: &str, raw: &str) {
    out.push('"');
    out.push_str(key);
    out.push_str("\":");
    out.push_str(raw);
    out.push(',');
}
