//! The rate limiter every process shares: per endpoint (per client) and per Item, a window
//! of the calls of the last minute, counted as Plaid counts them (src/pace_window.rs), in
//! shared memory, so any thread of any process books a call without a Postgres call. Calls
//! fill each limit in force (src/plaid/limits.rs) less 5% in any 60 s; a 429 cuts that
//! endpoint's share and it recovers minute by minute, since Plaid's real limits differ per
//! customer. Backlog calls (lane 1) also pass a window at 92% of that, so fresh work always
//! finds room.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering::*};
use std::time::Duration;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::plaid::limits::{ENDPOINTS, Limit, index};

#[path = "pace_window.rs"]
mod window;
use window::Window;

const E: usize = ENDPOINTS.len();
/// The client's windows hold 4,096 calls; a larger limit is paced as shorter windows.
const CLIENT_LOG: usize = 4_096;
const ITEM_LOG: usize = 16;
/// Per-Item windows, found by a hash of (token, endpoint) with a few probes; a window with no
/// call in the last minute is free for another Item. Only when every probe is busy do two
/// Items share one, which errs on the slow side.
const ITEM_SLOTS: usize = 16_384;
const PROBES: usize = 8;
const BULK_SHARE: f64 = 0.92;
const MAX_CUT: u32 = 900; // permille of the configured rate a 429 can take away
const PENALTY_NS: u64 = 1_000_000_000;

/// All zeros is the starting state: it is allocated zeroed, never built on a stack.
#[repr(C)]
pub struct PaceShm {
    client: [Window<CLIENT_LOG>; E],
    bulk: [Window<CLIENT_LOG>; E],
    /// No call before this (a 429 was just seen).
    hold: [AtomicU64; E],
    /// Permille of the configured rate cut by 429s; and when it last changed.
    cut: [AtomicU32; E],
    cut_at: [AtomicU64; E],
    in_flight: [AtomicI32; E],
    /// (second << 24 | count) per second of the last minute, and per minute of the last hour.
    calls: [[AtomicU64; 60]; E],
    throttled: [[AtomicU64; 60]; E],
    item: [Window<ITEM_LOG>; ITEM_SLOTS],
    item_key: [AtomicU64; ITEM_SLOTS],
}

fn zeroed() -> Box<PaceShm> {
    // SAFETY: every field is an atomic or an array of them, for which zero is a value.
    unsafe { Box::<PaceShm>::new_zeroed().assume_init() }
}

static mut SHARED: *const PaceShm = std::ptr::null();
static mut PREV_REQUEST: pg_sys::shmem_request_hook_type = None;
static mut PREV_STARTUP: pg_sys::shmem_startup_hook_type = None;
/// Without preloading (plaid_process_inbox only), each backend paces itself.
static LOCAL: OnceLock<Box<PaceShm>> = OnceLock::new();

thread_local! {
    /// The lane of the job this thread runs: 0 fresh, 1 backlog.
    static LANE: Cell<i16> = const { Cell::new(0) };
}

/// In the postmaster, while preloading: asks for the shared memory, zeroed when it is made.
pub fn init() {
    unsafe {
        PREV_REQUEST = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(request);
        PREV_STARTUP = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(startup);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn request() {
    unsafe {
        if let Some(prev) = PREV_REQUEST {
            prev();
        }
        pg_sys::RequestAddinShmemSpace(size_of::<PaceShm>());
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn startup() {
    unsafe {
        if let Some(prev) = PREV_STARTUP {
            prev();
        }
        let lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock; // AddinShmemInitLock
        pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let mut found = false;
        let p = pg_sys::ShmemInitStruct(
            c"plaid_sync_pace".as_ptr(),
            size_of::<PaceShm>(),
            &mut found,
        )
        .cast::<PaceShm>();
        if !found {
            std::ptr::write_bytes(p, 0, 1);
        }
        SHARED = p;
        pg_sys::LWLockRelease(lock);
    }
}

fn state() -> &'static PaceShm {
    // SAFETY: set once in the postmaster before any backend or worker is forked.
    match unsafe { SHARED.as_ref() } {
        Some(s) => s,
        None => LOCAL.get_or_init(zeroed),
    }
}

pub fn set_lane(lane: i16) {
    LANE.with(|l| l.set(lane));
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // CLOCK_MONOTONIC is one clock for every process of the machine.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Calls a window of `per_minute` admits at `share` (at most 1) of what the limit allows less
/// 5% kept back for calls that reach Plaid out of order (at least one). Whole calls only, so
/// a limit under 20 is used whole (Plaid's 2 refreshes a minute stay 2; the window's margin
/// covers the network).
fn allowed(per_minute: u32, share: f64) -> u32 {
    let usable = per_minute - per_minute / 20;
    ((usable as f64 * share) as u32).max(1)
}

/// Sleeps until a window's booked time; the slot it was booked in.
fn wait_for((t, slot): (u64, usize)) -> usize {
    let now = now_ns();
    if t > now {
        std::thread::sleep(Duration::from_nanos(t - now));
    }
    slot
}

/// The window of one Item and endpoint (`key` is never 0).
fn item_window(s: &PaceShm, key: u64, now: u64) -> &Window<ITEM_LOG> {
    let start = key as usize % ITEM_SLOTS;
    for p in 0..PROBES {
        let i = (start + p) % ITEM_SLOTS;
        let k = s.item_key[i].load(Acquire);
        if k == key {
            return &s.item[i];
        }
        let free = k == 0 || s.item[i].idle(now);
        if free
            && s.item_key[i]
                .compare_exchange(k, key, AcqRel, Acquire)
                .is_ok()
        {
            return &s.item[i];
        }
    }
    &s.item[start]
}

fn bump(ring: &[AtomicU64; 60], unit: u64) {
    let slot = &ring[(unit % 60) as usize];
    let mut old = slot.load(Acquire);
    loop {
        let new = if old >> 24 == unit {
            old + 1
        } else {
            unit << 24 | 1
        };
        match slot.compare_exchange_weak(old, new, AcqRel, Acquire) {
            Ok(_) => return,
            Err(now) => old = now,
        }
    }
}

fn sum(ring: &[AtomicU64; 60], unit: u64) -> u64 {
    ring.iter()
        .map(|s| s.load(Acquire))
        .filter(|v| unit.saturating_sub(v >> 24) < 60)
        .map(|v| v & 0xff_ffff)
        .sum()
}

/// The limiter with the limits in force for this process (read from the settings on the
/// main thread; a reload builds a new one).
pub struct SharedPacer {
    pub limits: [Limit; E],
}

impl SharedPacer {
    /// The share of the configured rate 429s leave this endpoint.
    fn factor(&self, i: usize, now: u64) -> f64 {
        let s = state();
        let cut = s.cut[i].load(Acquire);
        let at = s.cut_at[i].load(Acquire);
        if cut > 0 && now.saturating_sub(at) >= window::MINUTE_NS {
            // A clean minute: recover 10% of the configured rate.
            let less = cut.saturating_sub(100);
            if s.cut[i]
                .compare_exchange(cut, less, AcqRel, Acquire)
                .is_ok()
            {
                s.cut_at[i].store(now, Release);
            }
            return (1000 - less) as f64 / 1000.0;
        }
        (1000 - cut) as f64 / 1000.0
    }
}

impl crate::plaid::Pacer for SharedPacer {
    fn reserve(&self, path: &str, access_token: Option<&str>) -> Duration {
        crate::tally::add(crate::tally::Counter::PlaidCalls);
        let Some(i) = index(path) else {
            return Duration::ZERO;
        };
        let s = state();
        let now = now_ns();
        bump(&s.calls[i], now / 1_000_000_000);
        let (per_client, per_item) = self.limits[i];
        // Each window is booked when the one before it lets the call go, so a call waiting
        // for its Item's minute (or a backlog call, for the backlog's share) holds no place
        // in the client's window meanwhile: the client's stays in order, fresh calls first.
        let item = match (per_item, access_token) {
            (Some(limit), Some(token)) => {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                (token, i).hash(&mut h);
                let w = item_window(s, h.finish() | 1, now);
                Some((w, wait_for(w.book(now, allowed(limit, 1.0), 0))))
            }
            _ => None,
        };
        let Some(limit) = per_client else {
            return Duration::ZERO;
        };
        let factor = self.factor(i, now);
        let hold = s.hold[i].load(Acquire);
        let bulk = (LANE.with(Cell::get) > 0).then(|| {
            let share = allowed(limit, BULK_SHARE * factor);
            wait_for(s.bulk[i].book(now_ns(), share, hold))
        });
        let at = now_ns();
        let (go, _) = s.client[i].book(at, allowed(limit, factor), hold);
        if let Some((w, slot)) = item {
            w.settle(slot, go);
        }
        if let Some(slot) = bulk {
            s.bulk[i].settle(slot, go);
        }
        Duration::from_nanos(go - at)
    }

    fn in_flight(&self, path: &str, starts: bool) {
        if let Some(i) = index(path) {
            state().in_flight[i].fetch_add(if starts { 1 } else { -1 }, AcqRel);
        }
    }

    fn throttled(&self, path: &str) {
        let Some(i) = index(path) else { return };
        let s = state();
        let now = now_ns();
        bump(&s.throttled[i], now / 60_000_000_000);
        // 30% less of what is left, down to a tenth of the configured rate; the 429s that
        // answer one burst of calls are one signal, not one each.
        let cut = s.cut[i].load(Acquire);
        let at = s.cut_at[i].load(Acquire);
        if cut == 0 || now.saturating_sub(at) >= PENALTY_NS {
            let more = (1000 - (1000 - cut) * 7 / 10).min(MAX_CUT);
            if s.cut[i]
                .compare_exchange(cut, more, AcqRel, Acquire)
                .is_ok()
            {
                s.cut_at[i].store(now, Release);
            }
        }
        // Nobody calls this endpoint for a moment.
        s.hold[i].fetch_max(now + PENALTY_NS, AcqRel);
    }
}

/// For `plaid_sync.sync_progress`: per endpoint, (calls in the last minute, in flight,
/// 429s in the last hour, the share of the configured rate in use).
pub fn status() -> Vec<(&'static str, i64, i32, i64, f64)> {
    let s = state();
    let now = now_ns();
    ENDPOINTS
        .iter()
        .enumerate()
        .map(|(i, e)| {
            (
                *e,
                sum(&s.calls[i], now / 1_000_000_000) as i64,
                s.in_flight[i].load(Acquire).max(0),
                sum(&s.throttled[i], now / 60_000_000_000) as i64,
                (1000 - s.cut[i].load(Acquire)) as f64 / 1000.0,
            )
        })
        .collect()
}

#[cfg(test)]
#[path = "pace_tests.rs"]
mod unit;
