//! Background workers: the loop only. What a job does is in `jobs.rs` and `sync/`.
//!
//! `plaid_sync.workers` static workers, registered only while the library is preloaded, each
//! connected to `plaid_sync.database`. They sleep on their latch; a transaction that adds
//! work wakes one idle worker when it commits (`wake_on_commit`), so a new job starts at once
//! and `plaid_sync.poll_interval` is only the fallback. A worker that claims a job while more
//! are due wakes the next idle one, so a burst spreads over all workers.
//!
//! One, not all: waking every worker on every commit made each notice cost a claim query in
//! every worker, and with 8 idle workers the entry points ran at a fifth of their speed.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::callbacks::{PgXactCallbackEvent, register_xact_callback};
use pgrx::lwlock::PgLwLock;
use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;
use pgrx::{IntoDatum, PgAtomic, pg_shmem_init};

use crate::gucs;
use crate::jobs::{self, Step, db};

const MAX_WORKERS: usize = 64;
/// How often worker 0 runs retention and the resync scan.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(5);

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

pub fn init() {
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        return; // CREATE EXTENSION alone: no workers, plaid_process_inbox() still works
    }
    pg_shmem_init!(SLOTS);
    pg_shmem_init!(IDLE);
    pg_shmem_init!(WOKEN);
    PRELOADED.store(true, Ordering::Relaxed);
    let n = gucs::workers().clamp(0, MAX_WORKERS as i32);
    for i in 0..n {
        BackgroundWorkerBuilder::new(&format!("plaid_sync worker {i}"))
            .set_type("plaid_sync worker")
            .set_library("plaid_sync")
            .set_function("plaid_sync_worker_main")
            .set_argument((i as i64).into_datum())
            .enable_spi_access()
            .set_restart_time(Some(Duration::from_secs(2)))
            .load();
    }
}

/// Wakes an idle worker when the current transaction commits (once per transaction).
pub fn wake_on_commit() {
    if !PRELOADED.load(Ordering::Relaxed) || WAKE_ARMED.with(|a| a.replace(true)) {
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

fn set_idle(index: usize, idle: bool) {
    if idle {
        IDLE.get().fetch_or(1 << index, Ordering::SeqCst);
    } else {
        IDLE.get().fetch_and(!(1 << index), Ordering::SeqCst);
    }
}

/// Clears worker i's woken bit; true when it was set.
fn clear_woken(i: usize) -> bool {
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
    if hand_on && PRELOADED.load(Ordering::Relaxed) {
        wake_one();
    }
}

fn my_index() -> Option<usize> {
    Some(MY_INDEX.load(Ordering::Relaxed)).filter(|&i| i != NOT_A_WORKER)
}

fn stopping() -> bool {
    unsafe { pg_sys::ShutdownRequestPending != 0 }
}

/// In a worker, Plaid calls give up as soon as the server asks the worker to stop.
pub fn interrupt_check() -> Option<fn() -> bool> {
    my_index().map(|_| stopping as fn() -> bool)
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn plaid_sync_worker_main(arg: pg_sys::Datum) {
    let index = (unsafe { i64::from_datum(arg, false) }.unwrap_or(0) as usize).min(MAX_WORKERS - 1);
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(Some(&gucs::database()), None);
    SLOTS.exclusive().pids[index] = unsafe { pg_sys::MyProcPid };
    MY_INDEX.store(index, Ordering::Relaxed);
    log!(
        "plaid_sync worker {index} started, serving database {}",
        gucs::database()
    );

    let mut last_maintenance: Option<Instant> = None;
    loop {
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        if stopping() {
            break;
        }
        // Idle before looking: a commit after this point wakes us, one before it is seen.
        set_idle(index, true);
        clear_woken(index);
        let step = jobs::run_next();
        unsafe { pg_sys::pgstat_report_stat(false) };
        if matches!(step, Step::Ran) {
            continue;
        }
        if index == 0
            && matches!(step, Step::Idle)
            && last_maintenance.is_none_or(|t| t.elapsed() >= MAINTENANCE_EVERY)
        {
            // Busy meanwhile, so commits wake another worker; then look for work again.
            set_idle(index, false);
            db(maintenance);
            last_maintenance = Some(Instant::now());
            continue;
        }
        let mut wait = Duration::from_millis(gucs::poll_interval_ms());
        if index == 0 {
            wait = wait.min(MAINTENANCE_EVERY); // maintenance keeps its own schedule
        }
        if !BackgroundWorker::wait_latch(Some(wait)) {
            break;
        }
    }
    set_idle(index, false);
    clear_woken(index);
    SLOTS.exclusive().pids[index] = 0;
    // Exit code 1: the postmaster starts the worker again after plaid_sync's restart delay
    // (exit 0 would unregister it). At server shutdown nothing is restarted anyway.
    unsafe { pg_sys::proc_exit(1) };
}

/// Worker 0, when idle: drop old done inbox rows, and queue a sync for Items nobody has
/// synced for `plaid_sync.resync_interval` (webhooks can be lost: Plaid gives up after a day).
fn maintenance() {
    let retention = gucs::done_retention_s();
    if retention > 0 {
        Spi::run_with_args(
            "DELETE FROM plaid_sync.inbox WHERE id IN (
                 SELECT id FROM plaid_sync.inbox
                  WHERE status = 'done' AND finished_at < now() - make_interval(secs => $1)
                  ORDER BY finished_at LIMIT 1000)",
            &[retention.into()],
        )
        .expect("inbox retention");
    }
    let resync = gucs::resync_interval_s();
    if resync > 0 {
        let queued = crate::api::one::<i64>(
            "WITH stale AS (
                 SELECT i.item_id FROM plaid_sync.items i
                  WHERE i.status IN ('healthy', 'pending_expiration', 'pending_disconnect')
                    AND i.last_synced_at < now() - make_interval(secs => $1)
                    AND NOT EXISTS (SELECT 1 FROM plaid_sync.inbox q
                                     WHERE q.item_id = i.item_id AND q.status IN ('pending', 'running'))
                  ORDER BY i.last_synced_at LIMIT 100),
             queued AS (
                 INSERT INTO plaid_sync.inbox (source, webhook_type, webhook_code, item_id, body)
                 SELECT 'backend', 'TRANSACTIONS', 'SYNC_UPDATES_AVAILABLE', item_id,
                        '{\"reason\": \"resync_interval\"}'
                   FROM stale RETURNING 1)
             SELECT count(*) FROM queued",
            &[resync.into()],
        )
        .unwrap_or(0);
        if queued > 0 {
            log!(
                "plaid_sync: queued a sync for {queued} Items not synced within plaid_sync.resync_interval"
            );
        }
    }
}
