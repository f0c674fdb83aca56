//! The numeric settings (timeouts, retries, intervals, sizes, budgets) and the product
//! switches: all `sighup`, all listed in the README's GUC table.

use std::ffi::CStr;

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};

static CONNECT_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(5_000);
static REQUEST_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(30_000);
static MAX_ATTEMPTS: GucSetting<i32> = GucSetting::<i32>::new(8);
static RETRY_BASE_MS: GucSetting<i32> = GucSetting::<i32>::new(1_000);
static RETRY_MAX_MS: GucSetting<i32> = GucSetting::<i32>::new(600_000);
static JOB_LEASE_S: GucSetting<i32> = GucSetting::<i32>::new(300);
static POLL_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);
static DONE_RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(7 * 86_400);
static RESYNC_INTERVAL_S: GucSetting<i32> = GucSetting::<i32>::new(86_400);
static HISTORY_RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(30 * 86_400);
static UNKNOWN_ITEM_GRACE_S: GucSetting<i32> = GucSetting::<i32>::new(3_600);
static CALLS_IN_FLIGHT: GucSetting<i32> = GucSetting::<i32>::new(32);
static REFRESHES_PER_ITEM_PER_DAY: GucSetting<i32> = GucSetting::<i32>::new(4);
static REFRESHES_PER_DAY: GucSetting<i32> = GucSetting::<i32>::new(100);
static ADD_CONSENTED_PRODUCTS: GucSetting<bool> = GucSetting::<bool>::new(false);

type IntGuc = (
    &'static CStr,
    &'static CStr,
    &'static GucSetting<i32>,
    i32,
    i32,
    GucFlags,
);

pub(super) fn define() {
    let ints: [IntGuc; 14] = [
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
            c"plaid_sync.history_retention",
            c"How long sync runs, resolved rejects and paid calls are kept (0 = forever).",
            &HISTORY_RETENTION_S,
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
    GucRegistry::define_bool_guc(
        c"plaid_sync.add_consented_products",
        c"Call a product's endpoints for Items that list it only in consented_products (the first call adds it, and Plaid bills it).",
        c"",
        &ADD_CONSENTED_PRODUCTS,
        GucContext::Sighup,
        GucFlags::default(),
    );
}

pub fn connect_timeout_ms() -> u64 {
    super::main_thread_only();
    CONNECT_TIMEOUT_MS.get() as u64
}
pub fn request_timeout_ms() -> u64 {
    super::main_thread_only();
    REQUEST_TIMEOUT_MS.get() as u64
}
pub fn max_attempts() -> i32 {
    super::main_thread_only();
    MAX_ATTEMPTS.get()
}
pub fn retry_base_ms() -> i64 {
    super::main_thread_only();
    RETRY_BASE_MS.get() as i64
}
pub fn retry_max_ms() -> i64 {
    super::main_thread_only();
    RETRY_MAX_MS.get() as i64
}
pub fn job_lease_s() -> i32 {
    super::main_thread_only();
    JOB_LEASE_S.get()
}
pub fn poll_interval_ms() -> u64 {
    super::main_thread_only();
    POLL_INTERVAL_MS.get() as u64
}
pub fn done_retention_s() -> i32 {
    super::main_thread_only();
    DONE_RETENTION_S.get()
}
pub fn history_retention_s() -> i32 {
    super::main_thread_only();
    HISTORY_RETENTION_S.get()
}
pub fn resync_interval_s() -> i32 {
    super::main_thread_only();
    RESYNC_INTERVAL_S.get()
}
pub fn calls_in_flight() -> i32 {
    super::main_thread_only();
    CALLS_IN_FLIGHT.get()
}
pub fn refreshes_per_item_per_day() -> i32 {
    super::main_thread_only();
    REFRESHES_PER_ITEM_PER_DAY.get()
}
pub fn refreshes_per_day() -> i32 {
    super::main_thread_only();
    REFRESHES_PER_DAY.get()
}
pub fn unknown_item_grace_s() -> i32 {
    super::main_thread_only();
    UNKNOWN_ITEM_GRACE_S.get()
}
pub fn add_consented_products() -> bool {
    super::main_thread_only();
    ADD_CONSENTED_PRODUCTS.get()
}
