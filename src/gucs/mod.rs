//! Settings (`plaid_sync.*`). Every one is listed in the README's GUC table.
//!
//! Secrets (`secret`, `encryption_key`, `previous_encryption_keys`) never live in the GUC
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
static CONNECT_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(5_000);
static REQUEST_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(30_000);
static MAX_ATTEMPTS: GucSetting<i32> = GucSetting::<i32>::new(8);
static RETRY_BASE_MS: GucSetting<i32> = GucSetting::<i32>::new(1_000);
static RETRY_MAX_MS: GucSetting<i32> = GucSetting::<i32>::new(600_000);
static JOB_LEASE_S: GucSetting<i32> = GucSetting::<i32>::new(300);
static POLL_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);
static DONE_RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(7 * 86_400);
static RESYNC_INTERVAL_S: GucSetting<i32> = GucSetting::<i32>::new(86_400);
static UNKNOWN_ITEM_GRACE_S: GucSetting<i32> = GucSetting::<i32>::new(3_600);
static CALLS_IN_FLIGHT: GucSetting<i32> = GucSetting::<i32>::new(32);
static REFRESHES_PER_ITEM_PER_DAY: GucSetting<i32> = GucSetting::<i32>::new(4);
static REFRESHES_PER_DAY: GucSetting<i32> = GucSetting::<i32>::new(100);
static RATE_LIMITS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

// The variables behind the secret GUCs only ever hold the mask; the values live here.
static SECRET_VAR: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static KEY_VAR: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static PREV_KEYS_VAR: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static SECRET: Mutex<Option<String>> = Mutex::new(None);
static KEY: Mutex<Option<String>> = Mutex::new(None);
static PREV_KEYS: Mutex<Option<String>> = Mutex::new(None);

mod hooks;
use hooks::{
    assign_key, assign_prev_keys, assign_secret, check_key, check_prev_keys, check_rate_limits,
    check_secret,
};

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
    let ints: [(
        &'static CStr,
        &'static CStr,
        &'static GucSetting<i32>,
        i32,
        i32,
        GucFlags,
    ); 13] = [
        (
            c"plaid_sync.connect_timeout",
            c"Timeout to connect to Plaid.",
            &CONNECT_TIMEOUT_MS,
            100,
            600_000,
            GucFlags::UNIT_MS,
        ),
        (
            c"plaid_sync.request_timeout",
            c"Timeout for a whole Plaid call.",
            &REQUEST_TIMEOUT_MS,
            100,
            600_000,
            GucFlags::UNIT_MS,
        ),
        (
            c"plaid_sync.max_attempts",
            c"Attempts before a job with transient failures is marked failed.",
            &MAX_ATTEMPTS,
            1,
            1000,
            GucFlags::default(),
        ),
        (
            c"plaid_sync.retry_base_delay",
            c"First retry delay; doubled per attempt, with jitter.",
            &RETRY_BASE_MS,
            1,
            86_400_000,
            GucFlags::UNIT_MS,
        ),
        (
            c"plaid_sync.retry_max_delay",
            c"Upper bound of the retry delay.",
            &RETRY_MAX_MS,
            1,
            86_400_000,
            GucFlags::UNIT_MS,
        ),
        (
            c"plaid_sync.job_lease",
            c"How long a claimed job stays locked before another worker may take it.",
            &JOB_LEASE_S,
            5,
            86_400,
            GucFlags::UNIT_S,
        ),
        (
            c"plaid_sync.poll_interval",
            c"Fallback poll interval of idle workers (new jobs wake them at once).",
            &POLL_INTERVAL_MS,
            10,
            3_600_000,
            GucFlags::UNIT_MS,
        ),
        (
            c"plaid_sync.done_retention",
            c"How long done inbox rows are kept (failed rows are kept).",
            &DONE_RETENTION_S,
            0,
            i32::MAX,
            GucFlags::UNIT_S,
        ),
        (
            c"plaid_sync.resync_interval",
            c"An Item not synced for this long gets a sync without a webhook (0 = never).",
            &RESYNC_INTERVAL_S,
            0,
            i32::MAX,
            GucFlags::UNIT_S,
        ),
        (
            c"plaid_sync.calls_in_flight",
            c"Plaid calls one worker keeps in flight at once (and keep-alive connections it keeps).",
            &CALLS_IN_FLIGHT,
            1,
            64,
            GucFlags::default(),
        ),
        (
            c"plaid_sync.refreshes_per_item_per_day",
            c"Paid /transactions/refresh calls plaid_refresh_transactions may queue per Item in any 24 hours (0 = none).",
            &REFRESHES_PER_ITEM_PER_DAY,
            0,
            1_000,
            GucFlags::default(),
        ),
        (
            c"plaid_sync.refreshes_per_day",
            c"Paid /transactions/refresh calls plaid_refresh_transactions may queue for the whole server in any 24 hours (0 = none).",
            &REFRESHES_PER_DAY,
            0,
            10_000_000,
            GucFlags::default(),
        ),
        (
            c"plaid_sync.unknown_item_grace",
            c"How long a webhook for an unannounced Item waits for it.",
            &UNKNOWN_ITEM_GRACE_S,
            0,
            i32::MAX,
            GucFlags::UNIT_S,
        ),
    ];
    for (name, desc, setting, min, max, flags) in ints {
        GucRegistry::define_int_guc(
            name,
            desc,
            c"",
            setting,
            min,
            max,
            GucContext::Sighup,
            flags,
        );
    }
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
    ENVIRONMENT.get()
}
pub fn api_url() -> Option<String> {
    text(&API_URL)
}
pub fn client_id() -> Option<String> {
    text(&CLIENT_ID)
}
pub fn secret() -> Option<String> {
    secret_value(&SECRET).filter(|s| !s.trim().is_empty())
}
pub fn encryption_key() -> Option<String> {
    secret_value(&KEY)
}
pub fn previous_encryption_keys() -> Option<String> {
    secret_value(&PREV_KEYS)
}
pub fn database() -> String {
    text(&DATABASE).unwrap_or_else(|| "postgres".into())
}
pub fn workers() -> i32 {
    WORKERS.get()
}
pub fn verify_webhooks() -> bool {
    VERIFY_WEBHOOKS.get()
}
pub fn connect_timeout_ms() -> u64 {
    CONNECT_TIMEOUT_MS.get() as u64
}
pub fn request_timeout_ms() -> u64 {
    REQUEST_TIMEOUT_MS.get() as u64
}
pub fn max_attempts() -> i32 {
    MAX_ATTEMPTS.get()
}
pub fn retry_base_ms() -> i64 {
    RETRY_BASE_MS.get() as i64
}
pub fn retry_max_ms() -> i64 {
    RETRY_MAX_MS.get() as i64
}
pub fn job_lease_s() -> i32 {
    JOB_LEASE_S.get()
}
pub fn poll_interval_ms() -> u64 {
    POLL_INTERVAL_MS.get() as u64
}
pub fn done_retention_s() -> i32 {
    DONE_RETENTION_S.get()
}
pub fn resync_interval_s() -> i32 {
    RESYNC_INTERVAL_S.get()
}
pub fn calls_in_flight() -> i32 {
    CALLS_IN_FLIGHT.get()
}
pub fn rate_limits() -> String {
    text(&RATE_LIMITS).unwrap_or_default()
}
pub fn refreshes_per_item_per_day() -> i32 {
    REFRESHES_PER_ITEM_PER_DAY.get()
}
pub fn refreshes_per_day() -> i32 {
    REFRESHES_PER_DAY.get()
}
pub fn unknown_item_grace_s() -> i32 {
    UNKNOWN_ITEM_GRACE_S.get()
}

/// The keyring from the current settings (55000 when no key is set, 22023 when malformed).
pub fn keyring() -> crate::error::Result<crate::crypto::Keyring> {
    crate::crypto::Keyring::from_settings(
        encryption_key().as_deref(),
        previous_encryption_keys().as_deref(),
    )
}
