//! Plaid's error envelope as a typed error, and what a sync should do about each one.

use serde::Deserialize;

/// A failed Plaid call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaidError {
    /// No usable HTTP answer: connection refused, timeout, reset.
    #[error("network error: {0}")]
    Transport(String),
    /// An HTTP answer that is not a Plaid success: the envelope when there is one.
    #[error("HTTP {status} {error_type}/{error_code}{}{}", colon(.error_message), request(.request_id))]
    Api {
        status: u16,
        error_type: String,
        error_code: String,
        error_message: String,
        request_id: Option<String>,
    },
    /// A 200 whose body is not what the spec says (truncated JSON, missing fields).
    #[error("unreadable Plaid response: {0}")]
    Decode(String),
}

/// `: message`, when Plaid gave one.
fn colon(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

/// ` (request_id …)`, when Plaid gave one: what Plaid's support asks for.
fn request(request_id: &Option<String>) -> String {
    request_id
        .as_deref()
        .map(|r| format!(" (request_id {r})"))
        .unwrap_or_default()
}

/// What the caller does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Retry later with backoff (network, 5xx, 429, institution down, product not ready).
    Transient,
    /// Restart the whole pagination loop from its first cursor.
    MutationDuringPagination,
    /// The Item needs its user or is gone: set this status, pause syncing, do not retry.
    ItemState(&'static str),
    /// Retrying cannot help (bad keys, our own bad request): fail the job.
    Fatal,
}

#[derive(Deserialize)]
struct Envelope {
    error_type: String,
    error_code: String,
    #[serde(default)]
    error_message: Option<String>,
    #[serde(default)]
    request_id: Option<String>,
}

impl PlaidError {
    /// Builds the error for a non-2xx answer from its body (which may not be an envelope).
    pub fn from_response(status: u16, body: &str) -> PlaidError {
        match serde_json::from_str::<Envelope>(body) {
            Ok(e) => PlaidError::Api {
                status,
                error_type: e.error_type,
                error_code: e.error_code,
                error_message: e.error_message.unwrap_or_default(),
                request_id: e.request_id,
            },
            Err(_) => PlaidError::Api {
                status,
                error_type: if status >= 500 {
                    "API_ERROR"
                } else {
                    "UNKNOWN"
                }
                .into(),
                error_code: format!("HTTP_{status}"),
                error_message: "response is not a Plaid error envelope".into(),
                request_id: None,
            },
        }
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            PlaidError::Api { error_code, .. } => Some(error_code),
            _ => None,
        }
    }

    /// The error as kept in the database: Plaid's fields, or what failed on the way.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            PlaidError::Api {
                status,
                error_type,
                error_code,
                error_message,
                request_id,
            } => serde_json::json!({"error_type": error_type, "error_code": error_code,
                "error_message": error_message, "request_id": request_id, "status": status}),
            other => serde_json::json!({"error_type": null, "error_code": null,
                "error_message": other.to_string()}),
        }
    }

    pub fn request_id(&self) -> Option<&str> {
        match self {
            PlaidError::Api { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// Plaid's own rate limit (HTTP 429, `RATE_LIMIT_EXCEEDED`): pace down and come back,
    /// never a failed attempt.
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, PlaidError::Api { status, error_type, .. }
                 if *status == 429 || error_type == "RATE_LIMIT_EXCEEDED")
    }

    /// For a call of one product's endpoint: the state an error that concerns only that
    /// product puts the product in (docs/plaid.md, Errors). None for everything else, which is
    /// classified as usual: a product error never pauses the Item's other products.
    pub fn product_state(&self) -> Option<ProductState> {
        Some(match self.code()? {
            "PRODUCT_NOT_READY" => ProductState::NotReady,
            "PRODUCTS_NOT_SUPPORTED" | "PRODUCT_NOT_ENABLED" | "INVALID_PRODUCT" => {
                ProductState::Unsupported
            }
            "NO_INVESTMENT_ACCOUNTS" | "NO_INVESTMENT_AUTH_ACCOUNTS" | "NO_LIABILITY_ACCOUNTS" => {
                ProductState::NoAccounts
            }
            "ADDITIONAL_CONSENT_REQUIRED" | "ACCESS_NOT_GRANTED" => ProductState::NeedsConsent,
            _ => return None,
        })
    }

    /// Classified by `error_code` first, then `error_type`, then HTTP status, as Plaid advises.
    pub fn class(&self) -> Class {
        let (status, error_type, code) = match self {
            PlaidError::Transport(_) | PlaidError::Decode(_) => return Class::Transient,
            PlaidError::Api {
                status,
                error_type,
                error_code,
                ..
            } => (*status, error_type.as_str(), error_code.as_str()),
        };
        match code {
            "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION" => Class::MutationDuringPagination,
            "ITEM_LOGIN_REQUIRED"
            | "ITEM_LOCKED"
            | "PASSWORD_RESET_REQUIRED"
            | "USER_SETUP_REQUIRED"
            | "ACCESS_NOT_GRANTED"
            | "ADDITIONAL_CONSENT_REQUIRED"
            | "INSUFFICIENT_CREDENTIALS"
            | "INVALID_CREDENTIALS"
            | "INVALID_MFA"
            | "INVALID_UPDATED_USERNAME"
            | "ITEM_NOT_SUPPORTED" => Class::ItemState("login_required"),
            "INVALID_ACCESS_TOKEN" | "ITEM_NOT_FOUND" => Class::ItemState("invalid_token"),
            "USER_PERMISSION_REVOKED" => Class::ItemState("revoked"),
            "NO_ACCOUNTS" | "PRODUCTS_NOT_SUPPORTED" => Class::ItemState("error"),
            "PRODUCT_NOT_READY"
            | "INSTITUTION_DOWN"
            | "INSTITUTION_NOT_RESPONDING"
            | "INSTITUTION_NOT_AVAILABLE"
            | "INSTITUTION_RATE_LIMIT"
            | "PLANNED_MAINTENANCE"
            | "INTERNAL_SERVER_ERROR" => Class::Transient,
            _ if error_type == "RATE_LIMIT_EXCEEDED" || status == 429 => Class::Transient,
            _ if error_type == "API_ERROR" || status >= 500 => Class::Transient,
            _ => Class::Fatal,
        }
    }
}

/// Where a product of an Item stands after a call of its endpoint failed for that product alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProductState {
    /// Not extracted yet: retried later.
    NotReady,
    /// The institution, the Item or our Plaid client cannot have it: recorded, not retried.
    Unsupported,
    /// No account of a kind the product serves.
    NoAccounts,
    /// The user has not consented to it (Link update mode).
    NeedsConsent,
}

impl ProductState {
    /// `item_products.state`.
    pub fn label(self) -> &'static str {
        match self {
            ProductState::NotReady => "not_ready",
            ProductState::Unsupported => "unsupported",
            ProductState::NoAccounts => "no_accounts",
            ProductState::NeedsConsent => "needs_consent",
        }
    }
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod unit;
