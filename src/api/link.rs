//! Link from SQL: the backend asks the database for a Link token and hands back Link's public
//! token, so Plaid's secret and every access token stay inside the database. Both functions
//! call Plaid from the calling backend while it waits (paced by the shared limiter, bounded by
//! `plaid_sync.connect_timeout_ms` and `request_timeout_ms`).

use pgrx::JsonB;
use pgrx::prelude::*;
use serde_json::Value;

use crate::database::ok;
use crate::error::{Error, Result};
use crate::plaid::{PlaidError, link_request};
use crate::store::{duplicates, items, token};
use crate::{gucs, validate};

/// The paced client of the settings in force (55000 when Plaid's keys are not set).
fn client() -> Result<std::sync::Arc<crate::job::Ctx>> {
    crate::runner::context().map_err(Error::not_configured)
}

/// A failed call as the caller's error: Plaid's error_code, message and request_id, never a
/// credential or token (any that Plaid echoed is blanked).
fn refused(e: PlaidError, path: &str, secrets: &[&str]) -> Error {
    let mut message = format!("Plaid refused {path}: {e}");
    for s in secrets.iter().filter(|s| s.len() >= 8) {
        message = message.replace(s, "[redacted]");
    }
    match &e {
        PlaidError::Api { error_code, .. }
            if [
                "INVALID_API_KEYS",
                "UNAUTHORIZED_ENVIRONMENT",
                "INVALID_SECRET",
            ]
            .contains(&error_code.as_str()) =>
        {
            Error::NotConfigured(message)
        }
        PlaidError::Api { error_type, .. }
            if error_type == "INVALID_INPUT" || error_type == "INVALID_REQUEST" =>
        {
            Error::InvalidParameter(message)
        }
        _ => Error::Plaid(message),
    }
}

/// The access token of the Item Link is to open in update mode. The Item must be live, and
/// belong to `client_user_id` when it has a recorded owner.
fn update_mode_token(item_id: &str, client_user_id: &str) -> Result<String> {
    let owner = items::owner(item_id)
        .ok_or_else(|| Error::invalid(format!("no Item {item_id}: link it first")))?;
    if owner.purged || owner.status == "removed" {
        return Err(Error::invalid(format!(
            "Item {item_id} was {}: link the bank again as a new Item",
            if owner.purged { "purged" } else { "removed" }
        )));
    }
    if owner
        .client_user_id
        .as_deref()
        .is_some_and(|o| o != client_user_id)
    {
        return Err(Error::invalid(format!(
            "Item {item_id} does not belong to this client_user_id"
        )));
    }
    token::open(item_id)?
        .ok_or_else(|| Error::invalid(format!("Item {item_id} has no access token any more")))
}

fn create_link_token(
    client_user_id: Option<&str>,
    products: Option<Vec<Option<String>>>,
    item_id: Option<&str>,
    options: Option<JsonB>,
) -> Result<JsonB> {
    let client_user_id = validate::optional_text(client_user_id, "client_user_id")?
        .ok_or_else(|| Error::invalid("client_user_id must not be NULL"))?;
    let products = products.ok_or_else(|| Error::invalid("products must not be NULL"))?;
    let products = link_request::products(&products).map_err(Error::InvalidParameter)?;
    let options = match options.map(|o| o.0) {
        None => serde_json::Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(Error::invalid("options must be a JSON object")),
    };
    let item_id = item_id.map(|i| validate::item_id(Some(i))).transpose()?;
    crate::database::require_current_sql()?;
    let settings = gucs::link_settings();
    if settings.client_name.is_none() {
        return Err(Error::not_configured(
            "plaid_sync.client_name is not set: Link shows it to the user",
        ));
    }
    let access_token = match item_id {
        Some(item) => Some(update_mode_token(item, client_user_id)?),
        None => None,
    };
    let body = link_request::link_token_body(
        &settings,
        client_user_id,
        &products,
        access_token.as_deref(),
        &options,
    )
    .map_err(Error::InvalidParameter)?;
    let ctx = client()?;
    let secrets = [ctx.client.secret(), access_token.as_deref().unwrap_or("")];
    let response = ctx
        .client
        .link_token_create(body)
        .map_err(|e| refused(e, "/link/token/create", &secrets))?;
    let json = response
        .json()
        .map_err(|e| refused(e, "/link/token/create", &secrets))?;
    Ok(JsonB(json))
}

/// Link's public token: `public-<environment>-<id>`, for this server's environment. Never
/// echoed.
fn public_token<'a>(value: Option<&'a str>, environment: &str) -> Result<&'a str> {
    let v = value
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| Error::invalid("public_token must not be NULL or empty"))?;
    if v.len() > validate::MAX_TOKEN
        || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        || !v.starts_with("public-")
    {
        return Err(Error::invalid(
            "public_token is not a Plaid public token (public-<environment>-<id>); it is not shown",
        ));
    }
    if !v.starts_with(&format!("public-{environment}-")) {
        return Err(Error::invalid(format!(
            "public_token is not from the {environment} environment plaid_sync.environment names"
        )));
    }
    Ok(v)
}

fn exchange_public_token(
    public_token_arg: Option<&str>,
    client_user_id: Option<&str>,
    metadata: Option<JsonB>,
) -> Result<String> {
    let env = gucs::environment().as_str();
    let public = public_token(public_token_arg, env)?;
    let client_user_id = validate::optional_text(client_user_id, "client_user_id")?;
    let metadata = metadata
        .map(|m| link_request::metadata(&m.0))
        .transpose()
        .map_err(Error::InvalidParameter)?;
    crate::database::require_current_sql()?;
    if unsafe { pg_sys::IsTransactionBlock() } {
        return Err(Error::InTransactionBlock(
            "plaid_exchange_public_token cannot run inside a transaction block: Plaid hands out \
             the access token once, and a rollback would lose it for good"
                .into(),
        ));
    }
    token::ready()?; // the token is sealed the moment it arrives: the key must be there first
    if let Some(m) = &metadata {
        let user = client_user_id.ok_or_else(|| {
            Error::invalid(
                "metadata is checked against the user's Items: give client_user_id with it",
            )
        })?;
        if let Some(existing) = duplicates::live_duplicate(user, &m.institution_id, &m.accounts) {
            return Err(Error::Duplicate(format!(
                "duplicate Item: Item {existing} of this client_user_id at {} has the same \
                 accounts; nothing was exchanged (to repair or extend it, open Link in update \
                 mode: plaid_create_link_token(client_user_id, item_id => '{existing}'))",
                m.institution_id
            )));
        }
    }
    let ctx = client()?;
    let secrets = [ctx.client.secret(), public];
    let response = ctx
        .client
        .item_public_token_exchange(public)
        .map_err(|e| refused(e, "/item/public_token/exchange", &secrets))?;
    let json = response
        .json()
        .map_err(|e| refused(e, "/item/public_token/exchange", &secrets))?;
    let (Some(access_token), Some(item_id)) = (
        json.get("access_token").and_then(Value::as_str),
        json.get("item_id").and_then(Value::as_str),
    ) else {
        return Err(Error::Plaid(format!(
            "Plaid's /item/public_token/exchange answer has no access_token or item_id (request_id {})",
            response.request_id
        )));
    };
    super::notify_item_created(Some(item_id), Some(access_token), client_user_id)?;
    Ok(item_id.to_string())
}

/// A Link token (`link_token`, `expiration`): for a new Item, or with `item_id` for Link's
/// update mode on that Item, whose access token never leaves the database.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn plaid_create_link_token(
    client_user_id: Option<&str>,
    products: default!(Option<Vec<Option<String>>>, "ARRAY['transactions']"),
    item_id: default!(Option<&str>, "NULL"),
    options: default!(Option<JsonB>, "'{}'"),
) -> JsonB {
    ok(create_link_token(
        client_user_id,
        products,
        item_id,
        options,
    ))
}

/// Exchanges Link's public token and announces the Item, as plaid_notify_item_created does;
/// returns its item_id. Must run on its own, outside a transaction block.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn plaid_exchange_public_token(
    public_token: Option<&str>,
    client_user_id: default!(Option<&str>, "NULL"),
    metadata: default!(Option<JsonB>, "NULL"),
) -> String {
    ok(exchange_public_token(
        public_token,
        client_user_id,
        metadata,
    ))
}
