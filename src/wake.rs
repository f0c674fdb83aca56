//! The wake-up: shared-memory latches through which a commit that queued work wakes one idle
//! worker, and the flags that tell a worker process apart (its index, shutdown requested).
//!
//! One, not all: waking every worker on every commit made each notice cost a claim query in
//! every worker, and with 8 idle workers the entry points ran at a fifth of their speed.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use pgrx::callbacks::{PgXactCallbackEvent, register_xact_callback};
use pgrx::lwlock::PgLwLock;
use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;
use pgrx::{PgAtomic, pg_shmem_init};

pub const MAX_WORKERS: usize = 64;

/// The PIDs of running workers, so any backend can wake them.
#[derive(Copy, Clone)]
pub struct Slots {
    pids: [i32; MAX_WORKERS],
}
impl Default for Slots {
    fn default() -> Self {
        Slots {
            pids: [0; MAX_WORKERS],
        }
    }
}
unsafe impl PGRXSharedMemory for Slots {}

static SLOTS: PgLwLock<Slots> = unsafe { PgLwLock::new(c"plaid_sync_worker_slots") };
/// Bit i is set while worker i waits for work; a waker clears the bit it wakes, so two commits
/// wake two workers, not the same one twice.
static IDLE: PgAtomic<AtomicU64> = unsafe { PgAtomic::new(c"plaid_sync_idle_workers") };
/// Bit i is set from a wake until worker i starts looking for work. While any is set, a commit
/// needs no wake of its own: that worker's look starts after the commit and sees its rows.
static WOKEN: PgAtomic<AtomicU64> = unsafe { PgAtomic::new(c"plaid_sync_woken_workers") };
/// Set in the postmaster while preloading; every backend inherits it.
static PRELOADED: AtomicBool = AtomicBool::new(false);
/// In a worker process, its index (`NOT_A_WORKER` elsewhere). A worker's Plaid calls can be
/// abandoned on shutdown, and its claims clear its idle bit.
static MY_INDEX: AtomicUsize = AtomicUsize::new(NOT_A_WORKER);
const NOT_A_WORKER: usize = usize::MAX;

thread_local! {
    static WAKE_ARMED: Cell<bool> = const { Cell::new(false) };
}

/// In the postmaster, while preloading: the shared memory the latches live in.
pub fn init() {
    pg_shmem_init!(SLOTS);
    pg_shmem_init!(IDLE);
    pg_shmem_init!(WOKEN);
    PRELOADED.store(true, Ordering::Relaxed);
}

/// True when the library was preloaded (so workers exist).
pub fn preloaded() -> bool {
    PRELOADED.load(Ordering::Relaxed)
}

/// Wakes an idle worker when the current transaction commits (once per transaction).
pub fn wake_on_commit() {
    if !preloaded() || WAKE_ARMED.with(|a| a.replace(true)) {
        return;
    }
    register_xact_callback(PgXactCallbackEvent::Commit, || {
        WAKE_ARMED.with(|a| a.set(false));
        wake_one();
    });
    register_xact_callback(PgXactCallbackEvent::Abort, || {
        WAKE_ARMED.with(|a| a.set(false))
    });
}

/// Wakes one idle worker, unless a woken one has yet to look. With none idle, every worker is
/// busy and looks for work again before it sleeps (it marks itself idle first), so the job is
/// not missed.
fn wake_one() {
    if WOKEN.get().load(Ordering::SeqCst) != 0 {
        return;
    }
    let idle = IDLE.get();
    let mut bits = idle.load(Ordering::SeqCst);
    while bits != 0 {
        let i = bits.trailing_zeros() as usize;
        match idle.compare_exchange(bits, bits & !(1 << i), Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => {
                WOKEN.get().fetch_or(1 << i, Ordering::SeqCst);
                let pid = SLOTS.share().pids[i];
                let proc_ = if pid == 0 {
                    std::ptr::null_mut()
                } else {
                    unsafe { pg_sys::BackendPidGetProc(pid) }
                };
                if !proc_.is_null() {
                    unsafe { pg_sys::SetLatch(&mut (*proc_).procLatch) };
                    return;
                }
                // A worker that died without clearing its bits: try the next one.
                clear_woken(i);
                bits = idle.load(Ordering::SeqCst);
            }
            Err(now) => bits = now,
        }
    }
}

/// Marks worker `index` as waiting for work (or not).
pub fn set_idle(index: usize, idle: bool) {
    if idle {
        IDLE.get().fetch_or(1 << index, Ordering::SeqCst);
    } else {
        IDLE.get().fetch_and(!(1 << index), Ordering::SeqCst);
    }
}

/// Clears worker i's woken bit; true when it was set.
pub fn clear_woken(i: usize) -> bool {
    WOKEN.get().fetch_and(!(1 << i), Ordering::SeqCst) & (1 << i) != 0
}

/// Called when a job is claimed: a worker is busy from here on. When more jobs are due, or a
/// commit woke this worker to look for its rows (the claim may have taken an older job), the
/// next idle worker looks instead.
pub fn on_claim(more_due: bool) {
    let mut hand_on = more_due;
    if let Some(i) = my_index() {
        set_idle(i, false);
        hand_on |= clear_woken(i);
    }
    if hand_on && preloaded() {
        wake_one();
    }
}

/// A worker process announces itself: its PID for wakers, its index for this process.
pub fn register_worker(index: usize) {
    SLOTS.exclusive().pids[index] = unsafe { pg_sys::MyProcPid };
    MY_INDEX.store(index, Ordering::Relaxed);
}

/// A worker process leaves: no bits, no PID.
pub fn unregister_worker(index: usize) {
    set_idle(index, false);
    clear_woken(index);
    SLOTS.exclusive().pids[index] = 0;
}

fn my_index() -> Option<usize> {
    Some(MY_INDEX.load(Ordering::Relaxed)).filter(|&i| i != NOT_A_WORKER)
}

/// The server asked this process to stop.
pub fn stopping() -> bool {
    unsafe { pg_sys::ShutdownRequestPending != 0 }
}
