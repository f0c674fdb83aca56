//! The HTTP settings: the listener's address, connection cap and time limit (read by the
//! postmaster when it registers the listener, so they exist only when preloaded) and the
//! backend's shared secret; where notification webhooks go and the secret they are signed
//! with. Both secrets are hidden like the others.

use std::ffi::{CString, c_char, c_void};

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::{pg_guard, pg_sys};

use super::hooks::{
    assign_http_secret, assign_notify_secret, check_http_secret, check_notify_secret, check_text,
};
use super::link::check_webhook_url;

static LISTEN: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static MAX_CONNECTIONS: GucSetting<i32> = GucSetting::<i32>::new(100);
static TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);
static SECRET_VAR: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static NOTIFY_URL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static NOTIFY_SECRET_VAR: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

pub(super) fn define(preloaded: bool) {
    if preloaded {
        unsafe {
            GucRegistry::define_string_guc_with_hooks(
                c"plaid_sync.http_listen",
                c"host:port the HTTP listener serves (behind a TLS proxy); empty: no listener.",
                c"",
                &LISTEN,
                GucContext::Postmaster,
                GucFlags::default(),
                Some(check_listen),
                None,
                None,
            );
        }
        GucRegistry::define_int_guc(
            c"plaid_sync.http_max_connections",
            c"Open connections the HTTP listener keeps at most; one more is answered 503.",
            c"",
            &MAX_CONNECTIONS,
            1,
            10_000,
            GucContext::Postmaster,
            GucFlags::default(),
        );
        GucRegistry::define_int_guc(
            c"plaid_sync.http_timeout",
            c"Time a client has to send a request's headers, and again its body, and an idle keep-alive connection stays open.",
            c"",
            &TIMEOUT_MS,
            100,
            300_000,
            GucContext::Postmaster,
            GucFlags::UNIT_MS,
        );
    }
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"plaid_sync.http_secret",
            c"Shared secret the backend sends to the HTTP listener (masked, superuser-only).",
            c"",
            &SECRET_VAR,
            GucContext::Sighup,
            GucFlags::SUPERUSER_ONLY | GucFlags::NO_SHOW_ALL,
            Some(check_http_secret),
            Some(assign_http_secret),
            None,
        );
        GucRegistry::define_string_guc_with_hooks(
            c"plaid_sync.notify_url",
            c"URL the workers POST notification webhooks to (sync and Item events); empty: none.",
            c"",
            &NOTIFY_URL,
            GucContext::Sighup,
            GucFlags::default(),
            Some(check_webhook_url),
            None,
            None,
        );
        GucRegistry::define_string_guc_with_hooks(
            c"plaid_sync.notify_secret",
            c"Secret notification webhooks are signed with (Plaid-Sync-Signature; masked, superuser-only).",
            c"",
            &NOTIFY_SECRET_VAR,
            GucContext::Sighup,
            GucFlags::SUPERUSER_ONLY | GucFlags::NO_SHOW_ALL,
            Some(check_notify_secret),
            Some(assign_notify_secret),
            None,
        );
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn check_listen(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    unsafe { check_text(newval, |t| listen_address(t).map(|_| ())) }
}

/// `host:port` (an IPv6 host in brackets), or empty for none; the text itself is what the
/// listener binds.
fn listen_address(text: &str) -> Result<Option<&str>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let bad = || format!("expected host:port (for example 127.0.0.1:8480), got \"{text}\"");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .is_empty()
        || port == 0
    {
        return Err(bad());
    }
    Ok(Some(text))
}

/// The address to serve, when the listener is on.
pub fn http_listen() -> Option<String> {
    super::main_thread_only();
    let text = super::text(&LISTEN)?;
    listen_address(&text).ok().flatten().map(str::to_string)
}
pub fn http_max_connections() -> usize {
    super::main_thread_only();
    MAX_CONNECTIONS.get().max(1) as usize
}
pub fn http_timeout() -> std::time::Duration {
    super::main_thread_only();
    std::time::Duration::from_millis(TIMEOUT_MS.get().max(100) as u64)
}
pub fn http_secret() -> Option<String> {
    super::main_thread_only();
    super::secret_value(&super::HTTP_SECRET).filter(|s| !s.trim().is_empty())
}
pub fn notify_url() -> Option<String> {
    super::main_thread_only();
    super::text(&NOTIFY_URL)
}
pub fn notify_secret() -> Option<String> {
    super::main_thread_only();
    super::secret_value(&super::NOTIFY_SECRET).filter(|s| !s.trim().is_empty())
}
