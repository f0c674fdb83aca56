//! One limit as Plaid counts it: no more than N calls in any 60 seconds. A window keeps the
//! times of the last C calls booked on it; a call may go once the N-th last booked is a
//! minute (and a margin for the network) old. So a 5-page sync goes at once, as Plaid allows,
//! and a backlog runs at the limit without a 429. All zeros is an empty window, so the
//! windows live in shared memory zeroed at start.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};

pub const MINUTE_NS: u64 = 60_000_000_000;
/// How much later one call may reach Plaid than the call it follows in the count.
pub const MARGIN_NS: u64 = 500_000_000;

#[repr(C)]
pub struct Window<const C: usize> {
    lock: AtomicU32,
    /// Calls booked, wrapping: the next one goes in times[booked % C] (C is a power of two).
    booked: AtomicU32,
    /// When each of the last C calls goes out (ns on CLOCK_MONOTONIC; 0 = never).
    times: [AtomicU64; C],
}

/// `per_minute` as `calls` per `span` ns with calls ≤ C: k windows of a k-th of a minute each
/// hold at most k × calls ≤ per_minute.
pub fn shape(per_minute: u32, cap: usize) -> (usize, u64) {
    let per_minute = per_minute.max(1) as usize;
    let k = per_minute.div_ceil(cap);
    (per_minute / k, MINUTE_NS / k as u64)
}

impl<const C: usize> Window<C> {
    /// Books one call at `at` or later, no earlier than `hold`: the time it may go, and where
    /// it is written (for `settle`).
    pub fn book(&self, at: u64, per_minute: u32, hold: u64) -> (u64, usize) {
        let (calls, span) = shape(per_minute, C);
        let mut spins = 0u32;
        while self
            .lock
            .compare_exchange_weak(0, 1, Acquire, Relaxed)
            .is_err()
        {
            spins += 1;
            if spins.is_multiple_of(64) {
                std::thread::yield_now(); // the holder may be a thread waiting for a core
            }
            if spins >= 1 << 20 {
                // Held for many milliseconds, where a booking takes nanoseconds: its holder's
                // process exited mid-booking. Go on as the holder; a booking that raced this
                // one costs at most one call of the limit's 5% headroom.
                break;
            }
        }
        let n = self.booked.load(Relaxed) as usize;
        let last = self.times[n.wrapping_sub(1) % C].load(Relaxed);
        let back = self.times[n.wrapping_sub(calls) % C].load(Relaxed);
        let free = if back == 0 {
            0
        } else {
            back + span + MARGIN_NS
        };
        // Never before the last booking, so the times stay in order.
        let t = at.max(last).max(free).max(hold);
        let slot = n % C;
        self.times[slot].store(t, Relaxed);
        self.booked.store(n.wrapping_add(1) as u32, Relaxed);
        self.lock.store(0, Release);
        (t, slot)
    }

    /// The call booked at `slot` goes at `t` after all (another limit made it wait).
    pub fn settle(&self, slot: usize, t: u64) {
        self.times[slot].fetch_max(t, AcqRel);
    }

    /// True when no call of the last minute is booked here: the window may serve another key.
    pub fn idle(&self, now: u64) -> bool {
        let n = self.booked.load(Acquire) as usize;
        self.times[n.wrapping_sub(1) % C].load(Acquire) + MINUTE_NS + MARGIN_NS <= now
    }
}

#[cfg(test)]
#[path = "pace_window_tests.rs"]
mod unit;
