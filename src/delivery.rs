//! Notification webhooks to the backend, the parts that need no Postgres: the signature a
//! receiver checks, and when a failed delivery is tried again.
//!
//! `Plaid-Sync-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` under
//! `plaid_sync.notify_secret`, as Stripe signs its webhooks: the timestamp inside the MAC lets a
//! receiver refuse old replays.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How long a delivery is tried before it is `dead`.
pub const GIVE_UP_AFTER_S: i64 = 24 * 3600;
/// The longest wait between two tries.
const MAX_BACKOFF_S: f64 = 3600.0;

/// The signature header's value for `body` sent at `t`.
pub fn signature(secret: &str, t: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Seconds until try `attempts + 1`: 1 s doubled per failed try, at most an hour, with ±20%
/// jitter (`jitter` in [0, 1)) so receivers coming back are not hit by every sender at once.
pub fn backoff_s(attempts: i32, jitter: f64) -> f64 {
    let base = 2f64.powi(attempts.clamp(1, 30) - 1).min(MAX_BACKOFF_S);
    base * (0.8 + 0.4 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
#[path = "delivery_tests.rs"]
mod unit;
