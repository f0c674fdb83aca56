//! What `/link/token/create` is sent (docs/plaid.md "Link"), the checks on the settings behind
//! it, and Link's `onSuccess` metadata as the duplicate check reads it. Pure: unit-tested.

use serde_json::{Map, Value, json};

/// Plaid's `CountryCode` enum.
pub const COUNTRY_CODES: &[&str] = &[
    "US", "GB", "ES", "NL", "FR", "IE", "CA", "DE", "IT", "PL", "DK", "NO", "SE", "EE", "LT", "LV",
    "PT", "BE", "AT", "FI",
];
/// The languages Link is displayed in.
pub const LANGUAGES: &[&str] = &[
    "da", "nl", "en", "et", "fr", "de", "hi", "it", "lv", "lt", "no", "pl", "pt", "ro", "es", "sv",
    "vi",
];
/// What Link's `products` accepts; `balance`, `recurring_transactions` and
/// `transactions_refresh` are Plaid products but Link refuses them (INVALID_PRODUCT).
pub const LINK_PRODUCTS: &[&str] = &[
    "assets",
    "auth",
    "beacon",
    "employment",
    "identity",
    "income_verification",
    "identity_verification",
    "investments",
    "investments_auth",
    "liabilities",
    "payment_initiation",
    "protect_transactions",
    "standing_orders",
    "signal",
    "statements",
    "transactions",
    "transfer",
    "cra_base_report",
    "cra_income_insights",
    "cra_cashflow_insights",
    "cra_lend_score",
    "cra_partner_insights",
    "cra_network_insights",
    "cra_monitoring",
    "layer",
    "protect_linked_bank",
];
/// Plaid shows at most 30 characters of the client name.
pub const MAX_CLIENT_NAME: usize = 30;

/// Keys of `options` plaid_sync fills itself: the credentials, the Item's token and the
/// webhook come from the database, `products` is the function's own argument.
const OWNED: &[&str] = &[
    "client_id",
    "secret",
    "access_token",
    "access_tokens",
    "webhook",
    "user_token",
    "products",
];
/// Link's other fields, passed through as given.
const PASSED: &[&str] = &[
    "redirect_uri",
    "android_package_name",
    "account_filters",
    "additional_consented_products",
    "required_if_supported_products",
    "optional_products",
    "update",
    "user",
    "link_customization_name",
    "institution_data",
    "institution_id",
    "eu_config",
    "investments",
    "auth",
    "transactions",
    "hosted_link",
    "language",
    "country_codes",
];

/// The settings a Link token is made from (`plaid_sync.webhook_url`, `client_name`,
/// `country_codes`, `language`, `days_requested`), read on the main thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSettings {
    pub webhook_url: Option<String>,
    pub client_name: Option<String>,
    pub country_codes: Vec<String>,
    pub language: String,
    pub days_requested: i32,
}

/// `plaid_sync.country_codes`: a comma-separated list of Plaid's country codes.
pub fn country_codes(text: &str) -> Result<Vec<String>, String> {
    let codes: Vec<String> = text
        .split(',')
        .map(|c| c.trim().to_ascii_uppercase())
        .collect();
    if codes.iter().all(|c| c.is_empty()) {
        return Err("at least one country code is needed, e.g. US".into());
    }
    for c in &codes {
        if !COUNTRY_CODES.contains(&c.as_str()) {
            return Err(format!(
                "\"{}\" is not a country code Plaid supports (one of {})",
                c.chars().take(8).collect::<String>(),
                COUNTRY_CODES.join(", ")
            ));
        }
    }
    Ok(codes)
}

/// `plaid_sync.language`: one of the languages Link is shown in.
pub fn language(text: &str) -> Result<(), String> {
    if LANGUAGES.contains(&text) {
        Ok(())
    } else {
        Err(format!(
            "Link is not shown in \"{}\" (one of {})",
            text.chars().take(8).collect::<String>(),
            LANGUAGES.join(", ")
        ))
    }
}

/// `plaid_sync.client_name`: what Link shows as the app's name (empty means not set).
pub fn client_name(text: &str) -> Result<(), String> {
    if text.chars().count() > MAX_CLIENT_NAME {
        return Err(format!(
            "Link shows at most {MAX_CLIENT_NAME} characters of the client name"
        ));
    }
    if text.chars().any(char::is_control) {
        return Err("the client name must not contain control characters".into());
    }
    Ok(())
}

/// The `products` argument: at least one, each a product Link accepts, none twice.
pub fn products(list: &[Option<String>]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for p in list {
        let p = p.as_deref().ok_or("products must not contain NULL")?;
        if !LINK_PRODUCTS.contains(&p) {
            let why = match p {
                "balance" => " (Balance comes with every other product and is never listed)",
                "recurring_transactions" | "transactions_refresh" => {
                    " (it comes with transactions; Link refuses it)"
                }
                _ => "",
            };
            return Err(format!(
                "\"{}\" is not a product Link accepts{why}",
                p.chars().take(40).collect::<String>()
            ));
        }
        if out.iter().any(|o| o == p) {
            return Err(format!("products lists \"{p}\" twice"));
        }
        out.push(p.to_string());
    }
    if out.is_empty() {
        return Err("products must list at least one product".into());
    }
    Ok(out)
}

/// The request body (credentials are added by the client). `access_token` is set in update
/// mode, where Plaid wants no `products`.
pub fn link_token_body(
    s: &LinkSettings,
    client_user_id: &str,
    products: &[String],
    access_token: Option<&str>,
    options: &Map<String, Value>,
) -> Result<Value, String> {
    let name = s
        .client_name
        .as_deref()
        .ok_or("plaid_sync.client_name is not set (Link shows it to the user)")?;
    let mut body = json!({
        "client_name": name,
        "language": s.language,
        "country_codes": s.country_codes,
        "user": { "client_user_id": client_user_id },
    });
    if let Some(url) = &s.webhook_url {
        body["webhook"] = json!(url);
    }
    match access_token {
        Some(token) => body["access_token"] = json!(token),
        None => {
            body["products"] = json!(products);
            body["transactions"] = json!({ "days_requested": s.days_requested });
        }
    }
    for (key, value) in options {
        if OWNED.contains(&key.as_str()) {
            return Err(format!(
                "options.{key} is set by plaid_sync and cannot be passed"
            ));
        }
        if !PASSED.contains(&key.as_str()) {
            return Err(format!(
                "options.{} is not a Link option plaid_sync passes on (one of {})",
                key.chars().take(40).collect::<String>(),
                PASSED.join(", ")
            ));
        }
        merge(&mut body, key, value, client_user_id)?;
    }
    Ok(body)
}

fn merge(body: &mut Value, key: &str, value: &Value, client_user_id: &str) -> Result<(), String> {
    match key {
        "user" | "transactions" => {
            let Value::Object(extra) = value else {
                return Err(format!("options.{key} must be an object"));
            };
            if key == "user"
                && let Some(id) = extra.get("client_user_id")
                && id != &json!(client_user_id)
            {
                return Err("options.user.client_user_id differs from client_user_id".into());
            }
            let target = body[key].as_object_mut();
            match target {
                Some(t) => t.extend(extra.clone()),
                None => body[key] = value.clone(),
            }
        }
        "language" => {
            language(value.as_str().ok_or("options.language must be a string")?)?;
            body[key] = value.clone();
        }
        "country_codes" => {
            let list = value
                .as_array()
                .ok_or("options.country_codes must be an array")?;
            let text: Vec<&str> = list
                .iter()
                .map(|c| c.as_str().ok_or("options.country_codes must hold strings"))
                .collect::<Result<_, _>>()?;
            body[key] = json!(country_codes(&text.join(","))?);
        }
        _ => body[key] = value.clone(),
    }
    Ok(())
}

/// Link's `onSuccess` metadata, as far as the duplicate check needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkMetadata {
    pub institution_id: String,
    /// `type:mask` of each account, sorted bytewise (as `COLLATE "C"` sorts them).
    pub accounts: Vec<String>,
}

pub fn metadata(v: &Value) -> Result<LinkMetadata, String> {
    let institution_id = v
        .get("institution")
        .and_then(|i| i.get("institution_id"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= 128)
        .ok_or("metadata.institution.institution_id must be a non-empty string")?;
    let list = v
        .get("accounts")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or("metadata.accounts must be a non-empty array")?;
    let mut accounts = Vec::with_capacity(list.len());
    for a in list {
        let kind = a
            .get("type")
            .and_then(Value::as_str)
            .ok_or("each of metadata.accounts needs a type")?;
        let mask = match a.get("mask") {
            None | Some(Value::Null) => "",
            Some(Value::String(m)) => m.as_str(),
            Some(_) => return Err("metadata.accounts[].mask must be a string or null".into()),
        };
        accounts.push(format!("{kind}:{mask}"));
    }
    accounts.sort();
    Ok(LinkMetadata {
        institution_id: institution_id.to_string(),
        accounts,
    })
}

#[cfg(test)]
#[path = "link_request_tests.rs"]
mod unit;
