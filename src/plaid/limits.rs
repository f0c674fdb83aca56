//! Plaid's rate limits: the documented production table (docs/plaid.md, Rate limits), and the
//! `plaid_sync.rate_limits` setting that overrides entries of it:
//! `'<endpoint>=<per client per minute>/<per Item per minute>, …'`, `-` for no limit.

/// Every endpoint plaid_sync calls, in a fixed order (shared memory is indexed by it).
pub const ENDPOINTS: [&str; 16] = [
    "/transactions/sync",
    "/transactions/get",
    "/transactions/refresh",
    "/accounts/get",
    "/item/get",
    "/item/remove",
    "/institutions/get_by_id",
    "/item/webhook/update",
    "/webhook_verification_key/get",
    "/accounts/balance/get",
    "/transactions/recurring/get",
    "/investments/holdings/get",
    "/investments/transactions/get",
    "/liabilities/get",
    // Called by a backend while its caller waits (Link from SQL).
    "/link/token/create",
    "/item/public_token/exchange",
];

/// Calls per minute: per client, per Item (None = no limit).
pub type Limit = (Option<u32>, Option<u32>);

/// Plaid's documented production limits; endpoints it documents none for have none.
pub fn production(endpoint: &str) -> Limit {
    match endpoint {
        "/transactions/sync" => (Some(2_500), Some(50)),
        "/transactions/get" => (Some(20_000), Some(30)),
        "/transactions/refresh" => (Some(100), Some(2)),
        "/accounts/get" => (Some(15_000), Some(15)),
        "/item/get" => (Some(5_000), Some(15)),
        "/item/remove" => (Some(2_000), Some(30)),
        "/institutions/get_by_id" => (Some(400), None),
        // The products' own pages (docs/plaid.md, Rate limits).
        "/transactions/recurring/get" => (Some(1_000), Some(20)),
        "/investments/holdings/get" => (Some(2_000), Some(15)),
        "/investments/transactions/get" => (Some(20_000), Some(30)),
        "/liabilities/get" => (Some(1_000), Some(15)),
        "/accounts/balance/get" => (Some(1_200), Some(5)),
        // Plaid documents no limit here; keys change rarely, so forged kids get a small
        // allowance of look-ups instead of as many as they can send.
        "/webhook_verification_key/get" => (Some(120), None),
        _ => (None, None),
    }
}

pub fn index(endpoint: &str) -> Option<usize> {
    ENDPOINTS.iter().position(|e| *e == endpoint)
}

/// The limits in force: the production table with the setting's entries over it.
pub fn parse(setting: &str) -> Result<[Limit; ENDPOINTS.len()], String> {
    let mut limits = ENDPOINTS.map(production);
    for entry in setting.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (endpoint, values) = entry
            .split_once('=')
            .ok_or_else(|| format!("\"{entry}\" is not <endpoint>=<per client>/<per Item>"))?;
        let endpoint = endpoint.trim();
        let i = index(endpoint).ok_or_else(|| {
            format!(
                "unknown endpoint \"{endpoint}\"; known: {}",
                ENDPOINTS.join(", ")
            )
        })?;
        let (client, item) = values
            .split_once('/')
            .ok_or_else(|| format!("\"{entry}\": the limits are <per client>/<per Item>"))?;
        limits[i] = (per_minute(client, entry)?, per_minute(item, entry)?);
    }
    Ok(limits)
}

fn per_minute(v: &str, entry: &str) -> Result<Option<u32>, String> {
    match v.trim() {
        "-" => Ok(None),
        n => match n.parse::<u32>() {
            Ok(n) if (1..=1_000_000).contains(&n) => Ok(Some(n)),
            _ => Err(format!(
                "\"{entry}\": a limit is a number of calls per minute (1 to 1000000) or -"
            )),
        },
    }
}

#[cfg(test)]
#[path = "limits_tests.rs"]
mod unit;
