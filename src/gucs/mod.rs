//! Settings (`plaid_sync.*`). Every one is listed in the README's GUC table.
//!
//! Secrets (`secret`, `encryption_key`, `previous_encryption_keys`, `http_secret`, `notify_secret`) never live in the GUC
//! variable itself: a check hook moves the real value into the hook's private `extra` and
//! leaves `********` in the variable, set or not. So `SHOW`, `current_setting()`, `pg_settings`
//! and the postmaster's "parameter … changed to …" reload message only ever see the mask, for
//! every role, superusers included.

use std::ffi::{CStr, CString};
use std::sync::Mutex;

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::{PostgresGucEnum, pg_sys};

#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Environment {
    #[name = c"sandbox"]
    Sandbox,
    #[name = c"production"]
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Sandbox => "sandbox",
            Environment::Production => "production",
        }
    }
}

const MASK: &CStr = c"********";

static ENVIRONMENT: GucSetting<Environment> = GucSetting::<Environment>::new(Environment::Sandbox);
static API_URL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static CLIENT_ID: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static DATABASE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"postgres"));
static WORKERS: GucSetting<i32> = GucSetting::<i32>::new(2);
static VERIFY_WEBHOOKS: GucSetting<bool> = GucSetting::<bool>::new(true);
static RATE_LIMITS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

// The variables behind the secret GUCs only ever hold the mask; the values live here.
static SECRET_VAR: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static KEY_VAR: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static PREV_KEYS_VAR: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static SECRET: Mutex<Option<String>> = Mutex::new(None);
static KEY: Mutex<Option<String>> = Mutex::new(None);
static PREV_KEYS: Mutex<Option<String>> = Mutex::new(None);
static HTTP_SECRET: Mutex<Option<String>> = Mutex::new(None);
static NOTIFY_SECRET: Mutex<Option<String>> = Mutex::new(None);

mod hooks;
mod http;
mod link;
mod numbers;
mod plaid_data;
use hooks::{
    assign_key, assign_prev_keys, assign_secret, check_key, check_prev_keys, check_rate_limits,
    check_secret,
};
pub use http::{
    http_listen, http_max_connections, http_secret, http_timeout, notify_secret, notify_url,
};
pub use link::{link_settings, webhook_url};
pub use numbers::{
    add_consented_products, calls_in_flight, connect_timeout_ms, done_retention_s,
    history_retention_s, job_lease_s, max_attempts, poll_interval_ms, refreshes_per_day,
    refreshes_per_item_per_day, request_timeout_ms, resync_interval_s, retry_base_ms, retry_max_ms,
    unknown_item_grace_s,
};
pub use plaid_data::{purge_on_revoke, sync_options};

pub fn init() {
    let secret_flags = GucFlags::SUPERUSER_ONLY | GucFlags::NO_SHOW_ALL;
    GucRegistry::define_enum_guc(
        c"plaid_sync.environment",
        c"Plaid environment: sandbox or production.",
        c"Access tokens must belong to this environment.",
        &ENVIRONMENT,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"plaid_sync.api_url",
        c"Overrides the Plaid base URL (local emulator, proxy).",
        c"Empty means the URL of plaid_sync.environment.",
        &API_URL,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"plaid_sync.client_id",
        c"Plaid client_id.",
        c"",
        &CLIENT_ID,
        GucContext::Sighup,
        GucFlags::default(),
    );
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"plaid_sync.secret",
            c"Plaid secret (masked, superuser-only).",
            c"",
            &SECRET_VAR,
            GucContext::Sighup,
            secret_flags,
            Some(check_secret),
            Some(assign_secret),
            None,
        );
        GucRegistry::define_string_guc_with_hooks(
            c"plaid_sync.encryption_key",
            c"Key that encrypts access tokens: 64 hex characters or base64 of 32 bytes (masked).",
            c"",
            &KEY_VAR,
            GucContext::Sighup,
            secret_flags,
            Some(check_key),
            Some(assign_key),
            None,
        );
        GucRegistry::define_string_guc_with_hooks(
            c"plaid_sync.previous_encryption_keys",
            c"Comma-separated older keys, used only to decrypt (masked).",
            c"",
            &PREV_KEYS_VAR,
            GucContext::Sighup,
            secret_flags,
            Some(check_prev_keys),
            Some(assign_prev_keys),
            None,
        );
    }
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"plaid_sync.rate_limits",
            c"Plaid rate limits: '<endpoint>=<per client per minute>/<per Item per minute>, ...'.",
            c"Empty means Plaid's documented production table; an entry overrides only its endpoint; - is no limit.",
            &RATE_LIMITS,
            GucContext::Sighup,
            GucFlags::default(),
            Some(check_rate_limits),
            None,
            None,
        );
    }
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        define_postmaster_gucs();
    }
    GucRegistry::define_bool_guc(
        c"plaid_sync.verify_webhooks",
        c"Plaid-origin webhooks need a valid Plaid-Verification JWT. Turn off only for local development.",
        c"",
        &VERIFY_WEBHOOKS,
        GucContext::Sighup,
        GucFlags::default(),
    );
    numbers::define();
    plaid_data::define();
    link::define();
    http::define(unsafe { pg_sys::process_shared_preload_libraries_in_progress });
    unsafe { pg_sys::MarkGUCPrefixReserved(c"plaid_sync".as_ptr()) };
}

/// Settings read by the postmaster when it starts the workers. PostgreSQL refuses (FATAL) to
/// define postmaster settings after start-up, so they exist only when preloaded.
fn define_postmaster_gucs() {
    GucRegistry::define_string_guc(
        c"plaid_sync.database",
        c"Database the background workers serve.",
        c"",
        &DATABASE,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"plaid_sync.workers",
        c"Number of background worker processes (0 disables them).",
        c"",
        &WORKERS,
        0,
        64,
        GucContext::Postmaster,
        GucFlags::default(),
    );
}

/// Settings live in Postgres's memory, which only a backend's main thread may read. A job
/// thread gets what it needs in its `JobSettings` (src/job.rs), copied before it starts;
/// every reader here checks, so a slip fails the first test that runs that code under the
/// workers with this message rather than with a race.
#[track_caller]
pub(crate) fn main_thread_only() {
    if crate::database::bridge::on_job_thread() {
        panic!(
            "plaid_sync: a setting was read on a job thread (jobs get their settings in JobSettings)"
        );
    }
}

/// What a job reads of the settings, copied on the main thread when it is claimed.
pub fn job_settings() -> crate::job::JobSettings {
    crate::job::JobSettings {
        add_consented_products: add_consented_products(),
        verify_webhooks: verify_webhooks(),
        sync: sync_options(),
        purge_on_revoke: purge_on_revoke(),
    }
}

fn text(setting: &GucSetting<Option<CString>>) -> Option<String> {
    setting
        .get()
        .map(|c| c.to_string_lossy().trim().to_string())
        .filter(|s| !s.is_empty())
}

fn secret_value(slot: &Mutex<Option<String>>) -> Option<String> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

pub fn environment() -> Environment {
    main_thread_only();
    ENVIRONMENT.get()
}
pub fn api_url() -> Option<String> {
    main_thread_only();
    text(&API_URL)
}
pub fn client_id() -> Option<String> {
    main_thread_only();
    text(&CLIENT_ID)
}
pub fn secret() -> Option<String> {
    main_thread_only();
    secret_value(&SECRET).filter(|s| !s.trim().is_empty())
}
pub fn encryption_key() -> Option<String> {
    main_thread_only();
    secret_value(&KEY)
}
pub fn previous_encryption_keys() -> Option<String> {
    main_thread_only();
    secret_value(&PREV_KEYS)
}
pub fn database() -> String {
    main_thread_only();
    text(&DATABASE).unwrap_or_else(|| "postgres".into())
}
pub fn workers() -> i32 {
    main_thread_only();
    WORKERS.get()
}
pub fn verify_webhooks() -> bool {
    main_thread_only();
    VERIFY_WEBHOOKS.get()
}
pub fn rate_limits() -> String {
    main_thread_only();
    text(&RATE_LIMITS).unwrap_or_default()
}
