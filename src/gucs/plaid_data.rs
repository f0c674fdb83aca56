//! The settings that say what plaid_sync asks Plaid for and what it keeps once consent ends:
//! the options of `/transactions/sync` and `plaid_sync.purge_on_revoke`. All `sighup`, all in
//! the README's GUC table; jobs get them in `JobSettings`.

use std::ffi::{CString, c_char, c_void};

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::{pg_guard, pg_sys};

static INCLUDE_ORIGINAL_DESCRIPTION: GucSetting<bool> = GucSetting::<bool>::new(false);
static PFC_VERSION: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static DAYS_REQUESTED: GucSetting<i32> = GucSetting::<i32>::new(730);
static PURGE_ON_REVOKE: GucSetting<bool> = GucSetting::<bool>::new(false);

pub(super) fn define() {
    GucRegistry::define_bool_guc(
        c"plaid_sync.include_original_description",
        c"Ask /transactions/sync for each transaction's original_description (the bank's own text).",
        c"",
        &INCLUDE_ORIGINAL_DESCRIPTION,
        GucContext::Sighup,
        GucFlags::default(),
    );
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"plaid_sync.personal_finance_category_version",
            c"Category taxonomy /transactions/sync asks for: v1, v2, or empty for Plaid's default.",
            c"Clients enabled for Transactions before December 2025 get v1 unless they ask for v2.",
            &PFC_VERSION,
            GucContext::Sighup,
            GucFlags::default(),
            Some(check_pfc_version),
            None,
            None,
        );
    }
    GucRegistry::define_int_guc(
        c"plaid_sync.days_requested",
        c"Days of history asked for when a sync initialises Transactions on an Item (1-730).",
        c"Plaid honours it only on the call that adds Transactions to an Item.",
        &DAYS_REQUESTED,
        1,
        730,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"plaid_sync.purge_on_revoke",
        c"Delete (not just mark) a revoked Item's or account's data when the user revokes consent.",
        c"",
        &PURGE_ON_REVOKE,
        GucContext::Sighup,
        GucFlags::default(),
    );
}

/// A taxonomy Plaid does not know is refused with the reason.
#[pg_guard]
unsafe extern "C-unwind" fn check_pfc_version(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    unsafe { super::hooks::check_text(newval, crate::plaid::sync_request::check_pfc_version) }
}

/// The `/transactions/sync` options, read on the main thread.
pub fn sync_options() -> crate::plaid::SyncOptions {
    super::main_thread_only();
    crate::plaid::SyncOptions {
        include_original_description: INCLUDE_ORIGINAL_DESCRIPTION.get(),
        personal_finance_category_version: super::text(&PFC_VERSION),
        days_requested: DAYS_REQUESTED.get(),
    }
}

pub fn purge_on_revoke() -> bool {
    super::main_thread_only();
    PURGE_ON_REVOKE.get()
}
