//! What a `/transactions/sync` request asks Plaid for beyond the cursor: the raw bank text,
//! the category taxonomy, and how much history to fetch when the call initialises the product.
//! Built from the settings of the same names (README, settings), copied into `JobSettings`.

use serde_json::{Value, json};

/// `plaid_sync.include_original_description`, `.personal_finance_category_version`,
/// `.days_requested`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOptions {
    pub include_original_description: bool,
    /// None: Plaid's default for the client (v1 for clients enabled before December 2025).
    pub personal_finance_category_version: Option<String>,
    pub days_requested: i32,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            include_original_description: false,
            personal_finance_category_version: None,
            days_requested: 730,
        }
    }
}

/// The taxonomies Plaid knows; the setting refuses anything else.
pub fn check_pfc_version(v: &str) -> Result<(), String> {
    match v.trim() {
        "" | "v1" | "v2" => Ok(()),
        other => Err(format!(
            "personal_finance_category_version must be empty (Plaid's default), v1 or v2, not {other:?}"
        )),
    }
}

/// The request body. `days_requested` is sent only when this call initialises Transactions
/// on the Item (the first sync of an Item that listed it only in `consented_products`):
/// Plaid ignores it on every other call, since history cannot be changed once requested.
pub fn sync_body(
    access_token: &str,
    cursor: Option<&str>,
    count: u32,
    opts: &SyncOptions,
    initialises: bool,
) -> Value {
    let mut options = json!({ "include_original_description": opts.include_original_description });
    if let Some(v) = opts
        .personal_finance_category_version
        .as_deref()
        .filter(|v| !v.is_empty())
    {
        options["personal_finance_category_version"] = Value::String(v.to_string());
    }
    let cursor = cursor.filter(|c| !c.is_empty());
    if initialises && cursor.is_none() {
        options["days_requested"] = opts.days_requested.into();
    }
    let mut body = json!({ "access_token": access_token, "count": count, "options": options });
    if let Some(c) = cursor {
        body["cursor"] = Value::String(c.to_string());
    }
    body
}

#[cfg(test)]
#[path = "sync_request_tests.rs"]
mod unit;
