//! A `/transactions/sync` page read once: its top-level fields, its three lists as the JSON
//! text of each element, and the fields that steer the loop. Transaction objects are not parsed
//! here; marking reads each one once (src/plaid/lean.rs), and Postgres reads the rest.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::value::RawValue;

pub struct SyncPage<'a> {
    /// Every top-level field, as sent.
    pub fields: BTreeMap<Cow<'a, str>, &'a RawValue>,
    pub added: Vec<&'a RawValue>,
    pub modified: Vec<&'a RawValue>,
    pub removed: Vec<&'a RawValue>,
    pub next_cursor: String,
    pub has_more: bool,
    pub update_status: Option<String>,
}

impl<'a> SyncPage<'a> {
    /// Reads a page; an error names the field that is missing or of the wrong type.
    pub fn parse(body: &'a str) -> Result<Self, String> {
        let fields: BTreeMap<Cow<'a, str>, &'a RawValue> =
            serde_json::from_str(body).map_err(|e| e.to_string())?;
        let field = |key: &str| {
            fields
                .get(key)
                .map(|v| v.get())
                .ok_or_else(|| format!("missing field `{key}`"))
        };
        let list = |key: &str| -> Result<Vec<&'a RawValue>, String> {
            let raw: &'a RawValue = fields
                .get(key)
                .copied()
                .ok_or_else(|| format!("missing field `{key}`"))?;
            serde_json::from_str(raw.get()).map_err(|e| format!("`{key}`: {e}"))
        };
        let (added, modified, removed) = (list("added")?, list("modified")?, list("removed")?);
        let next_cursor =
            serde_json::from_str(field("next_cursor")?).map_err(|e| format!("`next_cursor`: {e}"))?;
        let has_more =
            serde_json::from_str(field("has_more")?).map_err(|e| format!("`has_more`: {e}"))?;
        let update_status = match fields.get("transactions_update_status") {
            None => None,
            Some(v) => serde_json::from_str(v.get())
                .map_err(|e| format!("`transactions_update_status`: {e}"))?,
        };
        Ok(SyncPage {
            fields,
            added,
            modified,
            removed,
            next_cursor,
            has_more,
            update_status,
        })
    }
}
