//! The errors a caller can see, each with the SQLSTATE the README documents.
//!
//! Messages never carry a secret: values that might be one (tokens, keys) are described,
//! never quoted.

/// What went wrong, in the terms a caller can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// 22023: an argument is NULL, empty, too long, malformed or refers to nothing.
    #[error("{0}")]
    InvalidParameter(String),
    /// 22P02: text that should be JSON is not.
    #[error("{0}")]
    InvalidJson(String),
    /// 42501: the caller may not do this.
    #[error("{0}")]
    Privilege(String),
    /// 55000: the server is not configured for this (missing or malformed key, secret, …).
    #[error("{0}")]
    NotConfigured(String),
    /// 40001: a concurrent change got in the way; the same call again succeeds.
    #[error("{0}")]
    Retry(String),
    /// 53400: a budget the settings give is spent (paid Plaid calls per day).
    #[error("{0}")]
    OverBudget(String),
    /// 25001: the call must not run inside a transaction block (what it did could be rolled
    /// back after Plaid acted on it).
    #[error("{0}")]
    InTransactionBlock(String),
    /// 23505: what the call would create exists already (its message names it).
    #[error("{0}")]
    Duplicate(String),
    /// 58000: Plaid failed a call made while the caller waits (its error_code, message and
    /// request_id are in the message), or could not be reached.
    #[error("{0}")]
    Plaid(String),
}

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidParameter(msg.into())
    }
    pub fn not_configured(msg: impl Into<String>) -> Self {
        Error::NotConfigured(msg.into())
    }

    /// The five-character SQLSTATE, as documented: the one place it is written
    /// (`database::raise` turns it into Postgres's code).
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Error::InvalidParameter(_) => "22023",
            Error::InvalidJson(_) => "22P02",
            Error::Privilege(_) => "42501",
            Error::NotConfigured(_) => "55000",
            Error::Retry(_) => "40001",
            Error::OverBudget(_) => "53400",
            Error::InTransactionBlock(_) => "25001",
            Error::Duplicate(_) => "23505",
            Error::Plaid(_) => "58000",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Error::InvalidParameter(m)
            | Error::InvalidJson(m)
            | Error::Privilege(m)
            | Error::NotConfigured(m)
            | Error::Retry(m)
            | Error::OverBudget(m)
            | Error::InTransactionBlock(m)
            | Error::Duplicate(m)
            | Error::Plaid(m) => m,
        }
    }

    /// What to do about it, when the message alone does not say.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Error::InTransactionBlock(_) => {
                Some("call it on its own, outside BEGIN ... COMMIT, so its work commits at once")
            }
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
