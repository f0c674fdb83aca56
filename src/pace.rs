//! The rate limiter every process shares: a GCRA "theoretical arrival time" per endpoint (per
//! client) and per Item, kept as atomics in shared memory, so any thread of any process can
//! book a call without a lock or a Postgres call. Calls run at 95% of the limits in force
//! (src/plaid/limits.rs), with a burst small enough that no sliding minute sees more than
//! the limit; a 429 cuts that endpoint's rate and it recovers minute by minute, since Plaid's
//! real limits differ per customer. Backlog calls (lane 1) also pass a bucket at 92% of that
//! rate, so fresh work always finds room.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering::*};
use std::time::Duration;

use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;
use pgrx::{PgAtomic, pg_shmem_init};

use crate::plaid::limits::{ENDPOINTS, Limit, index};

const E: usize = ENDPOINTS.len();
/// Per-Item buckets, found by a hash of (token, endpoint) with a few probes; a bucket whose
/// time has passed is free for another Item. Only when every probe is busy do two Items
/// share one, which errs on the slow side.
const ITEM_SLOTS: usize = 16_384;
const PROBES: usize = 8;
const SHARE: f64 = 0.95;
const BULK_SHARE: f64 = 0.92;
const MIN_FACTOR: u32 = 100; // permille of the configured rate
const PENALTY_NS: u64 = 1_000_000_000;

pub struct PaceShm {
    client: [AtomicU64; E],
    bulk: [AtomicU64; E],
    /// Permille of the configured rate, cut by 429s; and when it last changed.
    factor: [AtomicU32; E],
    factor_at: [AtomicU64; E],
    in_flight: [AtomicI32; E],
    /// (second << 24 | count) per second of the last minute, and per minute of the last hour.
    calls: [[AtomicU64; 60]; E],
    throttled: [[AtomicU64; 60]; E],
    item: [AtomicU64; ITEM_SLOTS],
    item_key: [AtomicU64; ITEM_SLOTS],
}
unsafe impl PGRXSharedMemory for PaceShm {}

impl Default for PaceShm {
    fn default() -> Self {
        use std::array::from_fn;
        PaceShm {
            client: from_fn(|_| AtomicU64::new(0)),
            bulk: from_fn(|_| AtomicU64::new(0)),
            factor: from_fn(|_| AtomicU32::new(1000)),
            factor_at: from_fn(|_| AtomicU64::new(0)),
            in_flight: from_fn(|_| AtomicI32::new(0)),
            calls: from_fn(|_| from_fn(|_| AtomicU64::new(0))),
            throttled: from_fn(|_| from_fn(|_| AtomicU64::new(0))),
            item: from_fn(|_| AtomicU64::new(0)),
            item_key: from_fn(|_| AtomicU64::new(0)),
        }
    }
}

static SHARED: PgAtomic<PaceShm> = unsafe { PgAtomic::new(c"plaid_sync_pace") };
static PRELOADED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Without preloading (plaid_process_inbox only), each backend paces itself.
static LOCAL: OnceLock<Box<PaceShm>> = OnceLock::new();

thread_local! {
    /// The lane of the job this thread runs: 0 fresh, 1 backlog.
    static LANE: Cell<i16> = const { Cell::new(0) };
}

/// In the postmaster, while preloading.
pub fn init() {
    pg_shmem_init!(SHARED);
    PRELOADED.store(true, Relaxed);
}

fn state() -> &'static PaceShm {
    if PRELOADED.load(Relaxed) {
        SHARED.get()
    } else {
        LOCAL.get_or_init(Default::default)
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

/// Books one call on a GCRA bucket arriving at `at`: the wait until it conforms.
fn book(tat: &AtomicU64, at: u64, interval: u64, tolerance: u64) -> u64 {
    let mut old = tat.load(Acquire);
    loop {
        let t = old.max(at);
        let wait = t.saturating_sub(tolerance).saturating_sub(at);
        match tat.compare_exchange_weak(old, t + interval, AcqRel, Acquire) {
            Ok(_) => return wait,
            Err(now) => old = now,
        }
    }
}

/// (interval, tolerance) in ns for `per_minute` at `share` (at most 95%) of it. A minute then
/// holds at most share × limit + burst + 1 calls, so the burst is 5% of the limit less one.
fn gcra(per_minute: u32, share: f64) -> (u64, u64) {
    let interval = (60e9 / (per_minute as f64 * share)) as u64;
    (
        interval,
        interval * (per_minute as u64 / 20).saturating_sub(1),
    )
}

/// The bucket of one Item and endpoint (`key` is never 0).
fn item_bucket(s: &PaceShm, key: u64, now: u64) -> &AtomicU64 {
    let start = key as usize % ITEM_SLOTS;
    for p in 0..PROBES {
        let i = (start + p) % ITEM_SLOTS;
        let k = s.item_key[i].load(Acquire);
        if k == key {
            return &s.item[i];
        }
        let free = k == 0 || s.item[i].load(Acquire) <= now;
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
    fn factor(&self, i: usize, now: u64) -> f64 {
        let s = state();
        let f = s.factor[i].load(Acquire);
        let at = s.factor_at[i].load(Acquire);
        if f < 1000 && now.saturating_sub(at) >= 60_000_000_000 {
            // A clean minute: recover 10% of the configured rate.
            let up = (f + 100).min(1000);
            if s.factor[i].compare_exchange(f, up, AcqRel, Acquire).is_ok() {
                s.factor_at[i].store(now, Release);
            }
            return up as f64 / 1000.0;
        }
        f as f64 / 1000.0
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
        let factor = self.factor(i, now);
        let (per_client, per_item) = self.limits[i];
        let mut wait = 0;
        if let Some(limit) = per_client {
            let mut at = now;
            if LANE.with(Cell::get) > 0 {
                let (iv, tol) = gcra(limit, SHARE * BULK_SHARE * factor);
                at += book(&s.bulk[i], now, iv, tol);
            }
            let (iv, tol) = gcra(limit, SHARE * factor);
            wait = at - now + book(&s.client[i], at, iv, tol);
        }
        if let (Some(limit), Some(token)) = (per_item, access_token) {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (token, i).hash(&mut h);
            let (iv, tol) = gcra(limit, SHARE);
            let bucket = item_bucket(s, h.finish() | 1, now);
            wait = wait.max(book(bucket, now, iv, tol));
        }
        Duration::from_nanos(wait)
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
        let f = s.factor[i].load(Acquire);
        let _ = s.factor[i].compare_exchange(f, (f * 7 / 10).max(MIN_FACTOR), AcqRel, Acquire);
        s.factor_at[i].store(now, Release);
        // Nobody calls this endpoint for a moment.
        let _ = s.client[i].fetch_max(now + PENALTY_NS, AcqRel);
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
                s.factor[i].load(Acquire) as f64 / 1000.0,
            )
        })
        .collect()
}

#[cfg(test)]
#[path = "pace_tests.rs"]
mod unit;
