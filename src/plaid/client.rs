//! The HTTP client: one POST per call, JSON in, raw JSON text out (so amounts reach
//! Postgres as the exact digits Plaid sent, never through a float).

use std::time::Duration;

use serde_json::{Value, json};

use super::error::PlaidError;

pub const PLAID_VERSION: &str = "2020-09-14";
/// The largest response we read; a 500-transaction page is well under a megabyte.
const MAX_BODY: u64 = 32 * 1024 * 1024;

/// Paces calls to Plaid's rate limits across every process (src/pace.rs keeps the state in
/// shared memory). Called from any thread: implementations make no Postgres call.
pub trait Pacer: Send + Sync {
    /// How long to wait before calling `path` (for the Item behind `access_token`); the call is
    /// booked for the end of the wait. It may sleep first, while the Item's own allowance (or
    /// the backlog's share) is used up, so that no other call waits behind this one.
    fn reserve(&self, path: &str, access_token: Option<&str>) -> Duration;
    /// A call to `path` starts (`true`) or ends (`false`).
    fn in_flight(&self, path: &str, starts: bool);
    /// Plaid answered `path` with its rate-limit error: slow that endpoint down.
    fn throttled(&self, path: &str);
}

/// Everything needed to call Plaid. Built on the main thread from the settings; the secret
/// goes only into request bodies sent to `base_url`.
#[derive(Clone)]
pub struct Config {
    pub base_url: String,
    pub client_id: String,
    pub secret: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Keep-alive connections kept open: one per call that may be in flight at once.
    pub max_idle_connections: usize,
    pub pacer: Option<std::sync::Arc<dyn Pacer>>,
}

/// Same settings, same client (the pacer is fixed for the life of a process).
impl PartialEq for Config {
    fn eq(&self, o: &Config) -> bool {
        (
            &self.base_url,
            &self.client_id,
            &self.secret,
            self.connect_timeout,
            self.request_timeout,
            self.max_idle_connections,
        ) == (
            &o.base_url,
            &o.client_id,
            &o.secret,
            o.connect_timeout,
            o.request_timeout,
            o.max_idle_connections,
        )
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// A 429 is retried in place this many times (each paced, after the endpoint slowed down)
/// before the job goes back to the queue.
const RATE_LIMIT_RETRIES: u32 = 2;

pub fn base_url_for(environment: &str) -> &'static str {
    match environment {
        "production" => "https://production.plaid.com",
        _ => "https://sandbox.plaid.com",
    }
}

/// A successful call: the body, storable as `jsonb` (src/plaid/storable.rs), and its
/// request_id. When the body had to change, `raw` keeps it as received.
#[derive(Debug, Clone)]
pub struct Response {
    pub body: String,
    pub request_id: String,
    pub raw: Option<RawBody>,
}

/// A body as Plaid sent it, and where it held characters Postgres refuses.
#[derive(Debug, Clone)]
pub struct RawBody {
    pub text: String,
    pub refused: Vec<std::ops::Range<usize>>,
}

impl Response {
    /// Makes a received body storable.
    pub fn received(text: String) -> Result<Response, PlaidError> {
        let (body, raw) = match crate::codec::storable::storable(&text) {
            None => (text, None),
            Some((fixed, refused)) => (fixed, Some(RawBody { text, refused })),
        };
        let request_id = serde_json::from_str::<RequestId>(&body)
            .map_err(|e| PlaidError::Decode(e.to_string()))?
            .request_id;
        Ok(Response {
            body,
            request_id,
            raw,
        })
    }

    /// The elements of the top-level array `key` that had to change, with their `id_field`
    /// and their text as received.
    pub fn altered(&self, key: &str, id_field: &str) -> Vec<(String, String)> {
        match &self.raw {
            None => Vec::new(),
            Some(r) => crate::codec::storable::altered_elements(&r.text, &r.refused, key, id_field),
        }
    }

    pub fn json(&self) -> Result<Value, PlaidError> {
        serde_json::from_str(&self.body).map_err(|e| PlaidError::Decode(e.to_string()))
    }
}

pub struct Client {
    config: Config,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(config: Config) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(config.connect_timeout)
            .timeout(config.request_timeout)
            .max_idle_connections(config.max_idle_connections.max(1))
            .max_idle_connections_per_host(config.max_idle_connections.max(1))
            .build();
        Client { config, agent }
    }

    /// The secret the client sends: errors shown to a caller are checked for it.
    pub fn secret(&self) -> &str {
        &self.config.secret
    }

    /// POSTs `body` (plus credentials) to `path` and returns the raw success body, paced by
    /// the rate limiter. Blocks the calling thread: workers call from their job threads.
    pub fn call(&self, path: &str, body: Value) -> Result<Response, PlaidError> {
        let token = body
            .get("access_token")
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut attempt = 0;
        loop {
            let Some(pacer) = &self.config.pacer else {
                return self.call_blocking(path, body);
            };
            let wait = pacer.reserve(path, token.as_deref());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
            pacer.in_flight(path, true);
            let result = self.call_blocking(path, body.clone());
            pacer.in_flight(path, false);
            match result {
                Err(e) if e.is_rate_limited() => {
                    pacer.throttled(path);
                    if attempt == RATE_LIMIT_RETRIES {
                        return Err(e);
                    }
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn call_blocking(&self, path: &str, mut body: Value) -> Result<Response, PlaidError> {
        if let Value::Object(map) = &mut body {
            map.insert(
                "client_id".into(),
                Value::String(self.config.client_id.clone()),
            );
            map.insert("secret".into(), Value::String(self.config.secret.clone()));
        }
        let url = format!("{}{}", self.config.base_url.trim_end_matches('/'), path);
        let result = self
            .agent
            .post(&url)
            .set("Content-Type", "application/json")
            .set("Plaid-Version", PLAID_VERSION)
            .send_string(&body.to_string());
        match result {
            Ok(resp) => {
                let text = read_body(resp)?;
                Response::received(text).map_err(|e| match e {
                    PlaidError::Decode(m) => PlaidError::Decode(format!("{path}: {m}")),
                    e => e,
                })
            }
            Err(ureq::Error::Status(status, resp)) => {
                let text = read_body(resp).unwrap_or_default();
                Err(PlaidError::from_response(status, &text))
            }
            Err(ureq::Error::Transport(t)) => Err(PlaidError::Transport(format!("{path}: {t}"))),
        }
    }

    pub fn item_get(&self, access_token: &str) -> Result<Response, PlaidError> {
        self.call("/item/get", json!({ "access_token": access_token }))
    }

    pub fn accounts_get(&self, access_token: &str) -> Result<Response, PlaidError> {
        self.call("/accounts/get", json!({ "access_token": access_token }))
    }

    pub fn institutions_get_by_id(&self, institution_id: &str) -> Result<Response, PlaidError> {
        self.call(
            "/institutions/get_by_id",
            json!({
                "institution_id": institution_id,
                "country_codes": ["US", "GB", "ES", "NL", "FR", "IE", "CA", "DE", "IT", "PL",
                                  "DK", "NO", "SE", "EE", "LT", "LV", "PT", "BE", "AT", "FI"],
            }),
        )
    }

    /// `initialises`: this sync is the first of an Item that only consented to Transactions.
    pub fn transactions_sync(
        &self,
        access_token: &str,
        cursor: Option<&str>,
        count: u32,
        opts: &super::SyncOptions,
        initialises: bool,
    ) -> Result<Response, PlaidError> {
        let body = super::sync_request::sync_body(access_token, cursor, count, opts, initialises);
        self.call("/transactions/sync", body)
    }

    pub fn transactions_refresh(&self, access_token: &str) -> Result<Response, PlaidError> {
        self.call(
            "/transactions/refresh",
            json!({ "access_token": access_token }),
        )
    }

    /// Every recurring stream of the Item: a full snapshot, no cursor.
    pub fn transactions_recurring_get(&self, access_token: &str) -> Result<Response, PlaidError> {
        self.call(
            "/transactions/recurring/get",
            json!({ "access_token": access_token }),
        )
    }

    /// Every liability of the Item (credit, student, mortgage): a full snapshot.
    pub fn liabilities_get(&self, access_token: &str) -> Result<Response, PlaidError> {
        self.call("/liabilities/get", json!({ "access_token": access_token }))
    }

    /// Every holding of the Item, with the securities they hold: a full snapshot.
    pub fn investments_holdings_get(&self, access_token: &str) -> Result<Response, PlaidError> {
        self.call(
            "/investments/holdings/get",
            json!({ "access_token": access_token }),
        )
    }

    /// One page of the investment transactions dated `start`..=`end` (YYYY-MM-DD).
    pub fn investments_transactions_get(
        &self,
        access_token: &str,
        start: &str,
        end: &str,
        offset: u32,
        count: u32,
    ) -> Result<Response, PlaidError> {
        self.call(
            "/investments/transactions/get",
            json!({ "access_token": access_token, "start_date": start, "end_date": end,
                    "options": { "offset": offset, "count": count } }),
        )
    }

    pub fn item_webhook_update(
        &self,
        access_token: &str,
        webhook: &str,
    ) -> Result<Response, PlaidError> {
        self.call(
            "/item/webhook/update",
            json!({ "access_token": access_token, "webhook": webhook }),
        )
    }

    pub fn item_remove(&self, access_token: &str) -> Result<Response, PlaidError> {
        self.call("/item/remove", json!({ "access_token": access_token }))
    }

    /// A Link token; `body` is `link_request::link_token_body`'s.
    pub fn link_token_create(&self, body: Value) -> Result<Response, PlaidError> {
        self.call("/link/token/create", body)
    }

    /// Trades Link's one-time public token for the Item's access token.
    pub fn item_public_token_exchange(&self, public_token: &str) -> Result<Response, PlaidError> {
        self.call(
            "/item/public_token/exchange",
            json!({ "public_token": public_token }),
        )
    }

    pub fn webhook_verification_key_get(&self, key_id: &str) -> Result<Response, PlaidError> {
        self.call("/webhook_verification_key/get", json!({ "key_id": key_id }))
    }
}

#[derive(serde::Deserialize)]
struct RequestId {
    request_id: String,
}

fn read_body(resp: ureq::Response) -> Result<String, PlaidError> {
    use std::io::Read;
    let mut text = String::new();
    resp.into_reader()
        .take(MAX_BODY)
        .read_to_string(&mut text)
        .map_err(|e| PlaidError::Transport(format!("reading the response: {e}")))?;
    Ok(text)
}
