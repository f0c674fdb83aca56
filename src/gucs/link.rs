//! The settings Link tokens are made from: where Plaid sends webhooks, the name Link shows, its
//! countries and language. All `sighup`, all checked when set (a bad value is refused with
//! the reason), all in the README's GUC table.

use std::ffi::{CString, c_char, c_void};

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::{pg_guard, pg_sys};

use super::hooks::check_text;
use crate::plaid::link_request;

static WEBHOOK_URL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static CLIENT_NAME: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static COUNTRY_CODES: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"US"));
static LANGUAGE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"en"));

type Check = unsafe extern "C-unwind" fn(
    *mut *mut c_char,
    *mut *mut c_void,
    pg_sys::GucSource::Type,
) -> bool;

pub(super) fn define() {
    let settings: [(&std::ffi::CStr, &std::ffi::CStr, &std::ffi::CStr, &'static GucSetting<Option<CString>>, Check); 4] = [
        (
            c"plaid_sync.webhook_url",
            c"URL Plaid sends webhooks to: set on new Link tokens and by plaid_update_item_webhook without a URL.",
            c"Empty means no webhook is set on new Link tokens.",
            &WEBHOOK_URL,
            check_webhook_url,
        ),
        (
            c"plaid_sync.client_name",
            c"Application name Link shows to the user (at most 30 characters); needed for Link tokens.",
            c"",
            &CLIENT_NAME,
            check_client_name,
        ),
        (
            c"plaid_sync.country_codes",
            c"Comma-separated Plaid country codes whose institutions Link shows (default US).",
            c"",
            &COUNTRY_CODES,
            check_country_codes,
        ),
        (
            c"plaid_sync.language",
            c"Language Link is shown in (default en).",
            c"",
            &LANGUAGE,
            check_language,
        ),
    ];
    for (name, short, long, setting, check) in settings {
        unsafe {
            GucRegistry::define_string_guc_with_hooks(
                name,
                short,
                long,
                setting,
                GucContext::Sighup,
                GucFlags::default(),
                Some(check),
                None,
                None,
            );
        }
    }
}

/// Also `plaid_sync.notify_url`'s check: an `http(s)://` URL, or empty.
#[pg_guard]
pub(super) unsafe extern "C-unwind" fn check_webhook_url(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    unsafe {
        check_text(newval, |t| {
            if t.is_empty() {
                return Ok(());
            }
            crate::validate::webhook_url(Some(t))
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn check_client_name(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    unsafe { check_text(newval, link_request::client_name) }
}

#[pg_guard]
unsafe extern "C-unwind" fn check_country_codes(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    unsafe { check_text(newval, |t| link_request::country_codes(t).map(|_| ())) }
}

#[pg_guard]
unsafe extern "C-unwind" fn check_language(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    unsafe { check_text(newval, link_request::language) }
}

pub fn webhook_url() -> Option<String> {
    super::main_thread_only();
    super::text(&WEBHOOK_URL)
}

/// What a Link token is made from, read on the main thread.
pub fn link_settings() -> link_request::LinkSettings {
    super::main_thread_only();
    link_request::LinkSettings {
        webhook_url: webhook_url(),
        client_name: super::text(&CLIENT_NAME),
        // Checked when set, so they parse; the defaults stand in should they not.
        country_codes: link_request::country_codes(
            &super::text(&COUNTRY_CODES).unwrap_or_default(),
        )
        .unwrap_or_else(|_| vec!["US".into()]),
        language: super::text(&LANGUAGE).unwrap_or_else(|| "en".into()),
        days_requested: super::sync_options().days_requested,
    }
}
