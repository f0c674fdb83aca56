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

use super::copy_text::Rows;
use super::split::{MARK, Split, TYPED, pair, split};
use super::sync_page::SyncPage;

/// One transaction object, marked: its typed keys as sent (the apply reads the columns from
/// them) and `{"plaid_sync:lean": {"rest": {…}, "absent": "{…}"}}`, the rest being what the
/// row stores. None when it is not split (the apply then stores it whole).
pub fn mark(object: &str) -> Option<String> {
    split(object).map(|s| render(&s))
}

fn render(s: &Split) -> String {
    let mut out = String::with_capacity(s.rest.len() + 400);
    out.push('{');
    for (k, _) in TYPED {
        if let Some(raw) = s.get(k) {
            pair(&mut out, k, raw);
        }
    }
    out.push_str(&format!(
        "\"{MARK}\":{{\"rest\":{},\"absent\":\"{}\"}}}}",
        s.rest,
        s.absent_literal()
    ));
    out
}

/// A `/transactions/sync` page with every `added` and `modified` object marked, and, when the
/// page only adds transactions that all fit the typed columns, those rows as COPY text.
pub struct MarkedPage {
    pub body: String,
    pub copy: Option<Rows>,
    /// The page's `accounts`, as sent.
    pub accounts: Option<String>,
}

/// Marks a page read by `SyncPage::parse`.
pub fn mark_page(page: &SyncPage, item_id: &str) -> MarkedPage {
    let only_adds = page.modified.is_empty() && page.removed.is_empty();
    let mut copy = only_adds.then(Rows::default);
    let size: usize = page.fields.values().map(|v| v.get().len()).sum();
    let mut out = String::with_capacity(size + page.added.len() * 1000);
    out.push('{');
    for (k, v) in &page.fields {
        out.push_str(&serde_json::to_string(k).expect("a key is a string"));
        out.push(':');
        out.push_str(v.get());
        out.push(',');
    }
    for (key, list) in [("added", &page.added), ("modified", &page.modified)] {
        out.push_str(&format!("\"{key}\":["));
        for (j, e) in list.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            let Some(s) = split(e.get()) else {
                out.push_str(e.get()); // stored whole
                copy = None;
                continue;
            };
            out.push_str(&render(&s));
            if let Some(rows) = copy.as_mut().filter(|_| key == "added")
                && !rows.push(item_id, &s)
            {
                copy = None;
            }
        }
        out.push_str("],");
    }
    out.push_str("\"removed\":[");
    for (j, e) in page.removed.iter().enumerate() {
        if j > 0 {
            out.push(',');
        }
        out.push_str(e.get());
    }
    out.push_str("]}");
    MarkedPage {
        body: out,
        copy,
        accounts: page.fields.get("accounts").map(|a| a.get().to_string()),
    }
}

#[cfg(test)]
#[path = "lean_tests.rs"]
mod unit;
