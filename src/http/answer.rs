//! What the listener does with a request, decided without Postgres: whose it is (the backend's,
//! by its secret header, or Plaid's), and the HTTP answer for each outcome of the SQL function
//! it becomes. No answer carries a token or a secret: refusals quote the SQL error's message,
//! which never does (src/error.rs).

use subtle::ConstantTimeEq;

/// The most a body may hold (a Plaid webhook is a few hundred bytes).
pub const MAX_BODY: usize = 1 << 20;

/// The backend's headers: WebhookDB's, so its customers' code works unchanged, and ours.
pub const SECRET_HEADERS: [&str; 2] = ["whdb-webhook-secret", "plaid-sync-secret"];

/// The SQL function a request becomes.
#[derive(Debug, PartialEq, Eq)]
pub enum Call {
    /// `plaid_notify(body)`: the backend's notice.
    Notify(String),
    /// `plaid_receive_webhook(body, verification)`: Plaid's webhook, verified by the workers.
    Webhook(String, Option<String>),
}

/// An HTTP answer: status and JSON body.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    fn new(status: u16, body: serde_json::Value) -> Answer {
        Answer {
            status,
            body: body.to_string(),
        }
    }
    pub fn error(status: u16, message: &str) -> Answer {
        Answer::new(status, serde_json::json!({ "error": message }))
    }
    pub fn stored(inbox_id: i64) -> Answer {
        Answer::new(200, serde_json::json!({ "inbox_id": inbox_id }))
    }
    pub fn too_large() -> Answer {
        Answer::error(413, "the body is larger than 1 MiB")
    }
    pub fn too_slow() -> Answer {
        Answer::error(408, "the body did not arrive in time")
    }
    pub fn unavailable(why: &str) -> Answer {
        Answer::error(503, why)
    }
}

/// The request as the listener read it.
pub struct Request<'a> {
    pub method: &'a str,
    /// The first of `SECRET_HEADERS` present, if any (empty when sent empty).
    pub secret: Option<&'a [u8]>,
    pub verification: Option<&'a str>,
    pub body: &'a [u8],
}

/// The call a request becomes, or the answer that refuses it. `secret` is
/// `plaid_sync.http_secret`; with none set, every backend request is refused.
pub fn route(req: &Request, secret: Option<&str>) -> Result<Call, Answer> {
    if let Some(refused) = refuse_method(req.method) {
        return Err(refused);
    }
    let body = std::str::from_utf8(req.body)
        .map_err(|_| Answer::error(400, "the body is not UTF-8 text"))?;
    match req.secret {
        Some(given) => {
            if !secret_matches(given, secret) {
                return Err(Answer::error(401, "wrong or missing secret"));
            }
            Ok(Call::Notify(body.to_string()))
        }
        None => Ok(Call::Webhook(
            body.to_string(),
            req.verification.map(str::to_string),
        )),
    }
}

/// 405 for any method but POST (the server asks before it reads a body).
pub fn refuse_method(method: &str) -> Option<Answer> {
    (method != "POST").then(|| Answer::error(405, "only POST is served"))
}

/// Compared in constant time; an empty secret (given or set) never matches.
pub fn secret_matches(given: &[u8], secret: Option<&str>) -> bool {
    match secret {
        Some(s) if !s.is_empty() && !given.is_empty() => {
            // Lengths differ in time only by whether they differ at all.
            given.len() == s.len() && bool::from(given.ct_eq(s.as_bytes()))
        }
        _ => false,
    }
}

/// The answer for an SQL function's refusal, by its SQLSTATE: what it refuses as input is
/// 400 (the sender must change the request); what the server cannot take now is 503 (the
/// sender retries: not configured, a concurrent change, a budget, a standby).
pub fn refused(sqlstate: &str, message: &str) -> Answer {
    let status = match sqlstate {
        "22023" | "22P02" | "23505" => 400,
        _ => 503,
    };
    Answer::error(status, message)
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod unit;
