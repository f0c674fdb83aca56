//! The typed columns of `plaid_sync.transaction_rows`: the one list that the split (which raw
//! values a column gives back exactly, `split.rs`), the COPY layout (`copy_text.rs`) and the
//! SQL apply (`store/transactions.rs`) are all made from. `sql/schema.sql` creates the table;
//! a unit test keeps it in step with this list. A new typed column is a line here (and a new
//! codec, since `absent` lists typed keys).

/// What a typed column holds, and so how each consumer reads and writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Typed {
    Text,
    Number,
    Bool,
    Date,
    DateTime,
    TextArray,
    Object,
}

/// Each typed column and its key in Plaid's transaction object (the same name).
pub const TYPED: [(&str, Typed); 15] = [
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

impl Typed {
    /// The column's type as `sql/schema.sql` declares it.
    pub const fn sql_type(self) -> &'static str {
        match self {
            Typed::Text => "text",
            Typed::Number => "numeric",
            Typed::Bool => "boolean",
            Typed::Date => "date",
            Typed::DateTime => "timestamptz",
            Typed::TextArray => "text[]",
            Typed::Object => "jsonb",
        }
    }

    /// How the SQL apply reads the column from the object `o` (jsonb): a value of another
    /// JSON type than the column's is NULL (arrays, objects) or fails the cast (the apply
    /// then leaves that transaction out and says why).
    pub fn sql_read(self, key: &str) -> String {
        match self {
            Typed::Text => format!("o ->> '{key}'"),
            Typed::Number => format!("(o ->> '{key}')::numeric"),
            // NOT NULL: a missing or null `pending` is false, as Plaid means it.
            Typed::Bool => format!("coalesce((o ->> '{key}')::boolean, false)"),
            Typed::Date => format!("(o ->> '{key}')::date"),
            Typed::DateTime => format!("(o ->> '{key}')::timestamptz"),
            Typed::TextArray => format!(
                "CASE WHEN jsonb_typeof(o -> '{key}') = 'array' \
                 THEN ARRAY(SELECT jsonb_array_elements_text(o -> '{key}')) END"
            ),
            Typed::Object => {
                format!("CASE WHEN jsonb_typeof(o -> '{key}') = 'object' THEN o -> '{key}' END")
            }
        }
    }
}

/// The typed columns the apply writes from the object, in `TYPED`'s order: all but
/// `transaction_id`, the row's key, which it takes from the page's event.
pub fn applied() -> impl Iterator<Item = (&'static str, Typed)> {
    TYPED.into_iter().filter(|(k, _)| *k != "transaction_id")
}

#[cfg(test)]
#[path = "columns_tests.rs"]
mod unit;
