//! New transactions as COPY text for `plaid_sync.transaction_rows`: the values the apply's SQL
//! would store (src/store/transactions.rs, `APPLY`), written in the job thread so that a run of
//! new transactions loads through Postgres's bulk path. A line is written only when every typed
//! value has the JSON type its column reads; any other object sends its run to the SQL apply,
//! which stays the one definition of what is stored.

use std::borrow::Cow;

use super::columns::{TYPED, Typed};
use super::split::Split;

/// How a column's value is read from the object, as the apply's SQL reads it.
#[derive(Clone, Copy)]
enum Read {
    /// A string, required: the row's key.
    Id,
    /// The run's Item.
    Item,
    /// `o ->> key`: a string, or NULL for null or a missing key.
    Text,
    /// `(o ->> key)::numeric`: the number's own digits.
    Number,
    /// `coalesce((o ->> key)::boolean, false)`.
    Flag,
    /// A text[] of the array's strings.
    TextArray,
    /// `CASE WHEN jsonb_typeof(o -> key) = 'object' THEN o -> key END`.
    Object,
    /// The lean split's leftovers and missing keys.
    Rest,
    Absent,
}

/// Each line's fields, in order: the key, the Item, every other typed column (`columns.rs`,
/// the list the apply is made from too), the rest and the absent keys. The other columns
/// take their defaults, as in the apply.
const LAYOUT: [(&str, Read); TYPED.len() + 3] = layout();

const fn layout() -> [(&'static str, Read); TYPED.len() + 3] {
    let mut out = [("", Read::Rest); TYPED.len() + 3];
    out[0] = ("transaction_id", Read::Id);
    out[1] = ("item_id", Read::Item);
    let (mut i, mut n) = (0, 2);
    while i < TYPED.len() {
        let (key, kind) = TYPED[i];
        if !same(key, "transaction_id") {
            out[n] = (key, read(kind));
            n += 1;
        }
        i += 1;
    }
    out[n] = ("rest", Read::Rest);
    out[n + 1] = ("absent", Read::Absent);
    out
}

/// How a line reads a typed column: dates and times go in as sent, and Postgres parses them
/// as the apply's casts do.
const fn read(kind: Typed) -> Read {
    match kind {
        Typed::Text | Typed::Date | Typed::DateTime => Read::Text,
        Typed::Number => Read::Number,
        Typed::Bool => Read::Flag,
        Typed::TextArray => Read::TextArray,
        Typed::Object => Read::Object,
    }
}

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The columns each line fills, in order (for the COPY's column list).
pub const COLUMNS: [&str; LAYOUT.len()] = {
    let mut names = [""; LAYOUT.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = LAYOUT[i].0;
        i += 1;
    }
    names
};

/// The lines of a page's new transactions, and the pending transactions they post over
/// (the apply removes those, as it does for `posted_over`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Rows {
    pub text: String,
    pub posted_over: Vec<String>,
}

impl Rows {
    /// Appends one transaction's line; false (and nothing appended) when it does not fit.
    pub fn push(&mut self, item_id: &str, s: &Split) -> bool {
        let mark = self.text.len();
        if self.line(item_id, s).is_some() {
            if let Some(Some(over)) = s.get("pending_transaction_id").map(string) {
                self.posted_over.push(over.into_owned());
            }
            true
        } else {
            self.text.truncate(mark);
            false
        }
    }

    fn line(&mut self, item_id: &str, s: &Split) -> Option<()> {
        let out = &mut self.text;
        for (column, read) in LAYOUT {
            let raw = s.get(column);
            match read {
                Read::Id => field(out, Some(&string(raw?)?)),
                Read::Item => field(out, Some(item_id)),
                Read::Text => field(out, text(raw)?.as_deref()),
                Read::Number => field(out, Some(raw.filter(|r| number(r))?)),
                Read::Flag => field(
                    out,
                    Some(match raw {
                        None | Some("null" | "false") => "f",
                        Some("true") => "t",
                        Some(_) => return None,
                    }),
                ),
                Read::TextArray => field(out, category(raw)?.as_deref()),
                Read::Object => field(
                    out,
                    match raw {
                        None | Some("null") => None,
                        Some(r) if r.starts_with('{') => Some(r),
                        Some(_) => return None,
                    },
                ),
                Read::Rest => field(out, Some(&s.rest)),
                Read::Absent => {
                    let absent = (!s.absent.is_empty()).then(|| s.absent_literal());
                    field(out, absent.as_deref())
                }
            }
        }
        out.pop();
        out.push('\n');
        Some(())
    }
}

/// One field and its tab: `\N` for NULL, else the text with COPY's four escapes.
fn field(out: &mut String, value: Option<&str>) {
    match value {
        None => out.push_str("\\N"),
        Some(v)
            if !v
                .bytes()
                .any(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r')) =>
        {
            out.push_str(v)
        }
        Some(v) => {
            for c in v.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
        }
    }
    out.push('\t');
}

/// A JSON string's value (what `->>` gives); None when `raw` is not a string.
fn string(raw: &str) -> Option<Cow<'_, str>> {
    let b = raw.as_bytes();
    if b.len() >= 2 && b[0] == b'"' && b[b.len() - 1] == b'"' && !raw.contains('\\') {
        return Some(Cow::Borrowed(&raw[1..raw.len() - 1]));
    }
    if b.first() != Some(&b'"') {
        return None;
    }
    serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
}

/// A text column: a string, or NULL for null or a missing key; None (does not fit) otherwise.
fn text(raw: Option<&str>) -> Option<Option<Cow<'_, str>>> {
    match raw {
        None | Some("null") => Some(None),
        Some(r) => string(r).map(Some),
    }
}

/// A JSON number (`raw` is one JSON value): numeric's input reads its text as jsonb does.
fn number(raw: &str) -> bool {
    matches!(raw.as_bytes().first(), Some(b'-' | b'0'..=b'9'))
}

/// `category` as a text[] literal: an array of strings and nulls, NULL for anything but an
/// array; None when an element is neither.
fn category(raw: Option<&str>) -> Option<Option<String>> {
    let Some(raw) = raw.filter(|r| r.starts_with('[')) else {
        return match raw {
            None | Some("null") => Some(None),
            Some(_) => None, // another type: the SQL apply decides
        };
    };
    let elements: Vec<&serde_json::value::RawValue> = serde_json::from_str(raw).ok()?;
    let mut out = String::from("{");
    for (i, e) in elements.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if e.get() == "null" {
            out.push_str("NULL");
            continue;
        }
        out.push('"');
        for c in string(e.get())?.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    }
    out.push('}');
    Some(Some(out))
}

#[cfg(test)]
#[path = "copy_text_tests.rs"]
mod unit;
