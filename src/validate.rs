//! Checks on everything a caller hands to the SQL functions. Pure Rust: no Postgres needed.
//! Errors describe the problem and never echo a value that could be a secret.

use crate::error::{Error, Result};

pub const MAX_ITEM_ID: usize = 128;
pub const MAX_TOKEN: usize = 512;
pub const MAX_TEXT: usize = 256;
pub const MAX_URL: usize = 2048;
/// Plaid webhooks are a few hundred bytes; a megabyte is generous and keeps junk out.
pub const MAX_WEBHOOK_BODY: usize = 1024 * 1024;
pub const MAX_JOBS: i32 = 10_000;

fn present<'a>(value: Option<&'a str>, what: &str) -> Result<&'a str> {
    match value {
        None => Err(Error::invalid(format!("{what} must not be NULL"))),
        Some(v) if v.trim().is_empty() => Err(Error::invalid(format!("{what} must not be empty"))),
        Some(v) => Ok(v),
    }
}

/// Plaid ids are opaque base62 strings; we accept letters, digits, '-' and '_' so that an id
/// can never smuggle whitespace, control characters or SQL into logs and tables.
pub fn item_id(value: Option<&str>) -> Result<&str> {
    let v = present(value, "item_id")?;
    if v.len() > MAX_ITEM_ID {
        return Err(Error::invalid(format!(
            "item_id is longer than {MAX_ITEM_ID} characters"
        )));
    }
    if !v
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::invalid(
            "item_id may contain only letters, digits, '-' and '_'",
        ));
    }
    // A token passed where an item_id belongs (arguments swapped) must not be echoed by the
    // errors that name an unknown Item: Plaid's item_ids never look like one.
    if ["access-", "public-", "link-"]
        .iter()
        .any(|p| v.starts_with(p))
    {
        return Err(Error::invalid(
            "item_id looks like a Plaid token, not an item_id (arguments swapped?); it is not shown",
        ));
    }
    Ok(v)
}

/// Access tokens are `access-<environment>-<uuid>` (Plaid's format: the UUID as 8-4-4-4-12 hex
/// digits); the environment must be the one this server talks to. The token itself is never
/// part of an error.
pub fn access_token<'a>(value: Option<&'a str>, environment: &str) -> Result<&'a str> {
    let v = present(value, "access_token")?;
    if v.len() > MAX_TOKEN {
        return Err(Error::invalid(format!(
            "access_token is longer than {MAX_TOKEN} characters"
        )));
    }
    let rest = v.strip_prefix("access-").ok_or_else(|| {
        Error::invalid("access_token is not a Plaid access token (expected access-<environment>-…)")
    })?;
    let (env, id) = rest.split_once('-').unwrap_or((rest, ""));
    // The environment first: a token of the wrong one is the likelier mistake to name.
    if env != environment && !id.is_empty() {
        let env = if matches!(env, "sandbox" | "production" | "development") {
            env
        } else {
            "an unknown"
        };
        return Err(Error::invalid(format!(
            "access_token belongs to {env} environment, but plaid_sync.environment is {environment}"
        )));
    }
    if env != environment || !is_uuid(id) {
        return Err(Error::invalid(
            "access_token is not a Plaid access token (expected access-<environment>-<uuid>)",
        ));
    }
    Ok(v)
}

/// 8-4-4-4-12 hexadecimal digits.
fn is_uuid(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Optional free text (client_user_id): bounded, no control characters.
pub fn optional_text<'a>(value: Option<&'a str>, what: &str) -> Result<Option<&'a str>> {
    match value {
        None => Ok(None),
        Some(v) if v.len() > MAX_TEXT => Err(Error::invalid(format!(
            "{what} is longer than {MAX_TEXT} characters"
        ))),
        Some(v) if v.chars().any(char::is_control) => Err(Error::invalid(format!(
            "{what} must not contain control characters"
        ))),
        Some(v) if v.trim().is_empty() => Err(Error::invalid(format!("{what} must not be empty"))),
        Some(v) => Ok(Some(v)),
    }
}

pub fn webhook_url(value: Option<&str>) -> Result<&str> {
    let v = present(value, "webhook_url")?;
    if v.len() > MAX_URL {
        return Err(Error::invalid(format!(
            "webhook_url is longer than {MAX_URL} characters"
        )));
    }
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"))
        .ok_or_else(|| Error::invalid("webhook_url must start with https:// or http://"))?;
    if rest.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(
            "webhook_url must be a URL without spaces or control characters",
        ));
    }
    Ok(v)
}

pub fn max_jobs(value: Option<i32>) -> Result<i32> {
    match value {
        Some(n) if (1..=MAX_JOBS).contains(&n) => Ok(n),
        _ => Err(Error::invalid(format!(
            "max_jobs must be between 1 and {MAX_JOBS}"
        ))),
    }
}

/// The webhook fields we dispatch on, pulled out of a JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub webhook_type: String,
    pub webhook_code: String,
    pub item_id: Option<String>,
}

/// Reads `webhook_type`, `webhook_code` and `item_id` from a parsed body.
pub fn notice(body: &serde_json::Value) -> Result<Notice> {
    let obj = body
        .as_object()
        .ok_or_else(|| Error::invalid("the body must be a JSON object"))?;
    let field = |name: &str| -> Result<String> {
        match obj.get(name) {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => {
                if s.len() > 64 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    Err(Error::invalid(format!(
                        "{name} must be an upper-case word such as SYNC_UPDATES_AVAILABLE"
                    )))
                } else {
                    Ok(s.clone())
                }
            }
            Some(_) => Err(Error::invalid(format!("{name} must be a non-empty string"))),
            None => Err(Error::invalid(format!("the body has no {name}"))),
        }
    };
    let webhook_type = field("webhook_type")?;
    let webhook_code = field("webhook_code")?;
    let item_id = match obj.get("item_id") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(item_id(Some(s))?.to_string()),
        Some(_) => return Err(Error::invalid("item_id must be a string")),
    };
    Ok(Notice {
        webhook_type,
        webhook_code,
        item_id,
    })
}

/// Parses a body given as text (a webhook, a backend notice): size-checked, JSON (22P02
/// otherwise: serde's message names what and where, never quotes the text), an object.
pub fn json_object(value: Option<&str>) -> Result<serde_json::Value> {
    let v = present(value, "body")?;
    if v.len() > MAX_WEBHOOK_BODY {
        return Err(Error::invalid(format!(
            "body is larger than {MAX_WEBHOOK_BODY} bytes"
        )));
    }
    let parsed: serde_json::Value = serde_json::from_str(v)
        .map_err(|e| Error::InvalidJson(format!("body is not valid JSON: {e}")))?;
    if !parsed.is_object() {
        return Err(Error::invalid("the body must be a JSON object"));
    }
    Ok(parsed)
}

/// Whether `jsonb` could refuse this JSON text that serde accepted, so Postgres must be asked:
/// a `\u` escape (NUL, an unpaired surrogate, or a character the server encoding lacks), or a
/// number with an exponent or many digits (`numeric` caps both where serde does not). Plaid's
/// webhooks have neither, so they are stored as text and parsed once, when verified.
pub fn jsonb_may_refuse(json: &str) -> bool {
    if json.contains("\\u") {
        return true;
    }
    let b = json.as_bytes();
    let (mut i, mut in_string) = (0, false);
    while i < b.len() {
        match (in_string, b[i]) {
            (true, b'\\') => i += 1,
            (_, b'"') => in_string = !in_string,
            (false, b'-' | b'0'..=b'9') => {
                let start = i;
                while i < b.len() && matches!(b[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                {
                    i += 1;
                }
                let number = &b[start..i];
                if number.len() > 32 || number.iter().any(|c| matches!(c, b'e' | b'E')) {
                    return true;
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    false
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod unit;
