//! The check and assign hooks: the secret settings keep their value out of the GUC variable
//! (src/gucs/mod.rs says why), and `plaid_sync.rate_limits` must parse.

use std::ffi::{CStr, CString, c_char, c_void};
use std::sync::Mutex;

use pgrx::{pg_guard, pg_sys};

use super::{HTTP_SECRET, KEY, MASK, NOTIFY_SECRET, PREV_KEYS, SECRET};

/// Check hook shared by the secret GUCs: keep the real value in `extra`, put the mask in its
/// place. The mask is the same whether a value is set or not: the postmaster logs
/// `parameter … changed to "<raw value>"` whenever the variable's text changes on reload, so
/// it must never change. Both strings belong to the GUC machinery, which frees them.
unsafe fn hide_secret(newval: *mut *mut c_char, extra: *mut *mut c_void) -> bool {
    unsafe {
        let value = *newval;
        let copy = if value.is_null() || *value == 0 {
            std::ptr::null_mut()
        } else {
            guc_strdup(value)
        };
        let mask = guc_strdup(MASK.as_ptr());
        if mask.is_null() || (copy.is_null() && !value.is_null() && *value != 0) {
            guc_free(copy);
            guc_free(mask);
            return false; // out of memory: PostgreSQL reports it without the value
        }
        *extra = copy.cast();
        guc_free(value);
        *newval = mask;
        true
    }
}

// PostgreSQL 15 and older allocate GUC strings and `extra` with malloc and free them with
// free(); from 16 on they live in GUC memory (guc_malloc/guc_strdup/guc_free), and a libc
// pointer handed over aborts the server (`munmap_chunk(): invalid pointer`).
#[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
unsafe fn guc_strdup(s: *const c_char) -> *mut c_char {
    unsafe { libc::strdup(s) }
}
#[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
unsafe fn guc_free(p: *mut c_char) {
    unsafe { libc::free(p.cast()) }
}
#[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15")))]
unsafe fn guc_strdup(s: *const c_char) -> *mut c_char {
    // LOG: out of memory returns NULL (reported by the caller) instead of raising.
    unsafe { pg_sys::guc_strdup(pg_sys::LOG as i32, s) }
}
#[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15")))]
unsafe fn guc_free(p: *mut c_char) {
    if !p.is_null() {
        unsafe { pg_sys::guc_free(p.cast()) }
    }
}

unsafe fn keep_secret(slot: &Mutex<Option<String>>, extra: *mut c_void) {
    let value = if extra.is_null() {
        None
    } else {
        Some(
            unsafe { CStr::from_ptr(extra.cast()) }
                .to_string_lossy()
                .into_owned(),
        )
    };
    *slot.lock().unwrap_or_else(|p| p.into_inner()) = value;
}

macro_rules! secret_hooks {
    ($check:ident, $assign:ident, $slot:ident) => {
        #[pg_guard]
        pub(super) unsafe extern "C-unwind" fn $check(
            newval: *mut *mut c_char,
            extra: *mut *mut c_void,
            _source: pg_sys::GucSource::Type,
        ) -> bool {
            unsafe { hide_secret(newval, extra) }
        }
        #[pg_guard]
        pub(super) unsafe extern "C-unwind" fn $assign(_newval: *const c_char, extra: *mut c_void) {
            unsafe { keep_secret(&$slot, extra) }
        }
    };
}
secret_hooks!(check_secret, assign_secret, SECRET);
secret_hooks!(check_key, assign_key, KEY);
secret_hooks!(check_prev_keys, assign_prev_keys, PREV_KEYS);
secret_hooks!(check_http_secret, assign_http_secret, HTTP_SECRET);
secret_hooks!(check_notify_secret, assign_notify_secret, NOTIFY_SECRET);

/// The shape of every check hook on a text setting: a value `check` refuses is refused with
/// its reason (shown as the error's DETAIL), and the old value stays in force.
pub(super) unsafe fn check_text(
    newval: *mut *mut c_char,
    check: impl Fn(&str) -> Result<(), String>,
) -> bool {
    let text = unsafe {
        let v = *newval;
        if v.is_null() {
            return true;
        }
        CStr::from_ptr(v).to_string_lossy().into_owned()
    };
    match check(text.trim()) {
        Ok(()) => true,
        Err(why) => {
            let why = CString::new(why).unwrap_or_default();
            unsafe { pg_sys::GUC_check_errdetail_string = pg_sys::pstrdup(why.as_ptr()) };
            false
        }
    }
}

/// `plaid_sync.rate_limits` must parse.
#[pg_guard]
pub(super) unsafe extern "C-unwind" fn check_rate_limits(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    unsafe { check_text(newval, |t| crate::plaid::limits::parse(t).map(|_| ())) }
}
