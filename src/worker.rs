//! Background workers: registration and the loop, nothing else. What a job does is in
//! `jobs.rs` and `sync/`; how a commit wakes a worker is in `wake.rs`.
//!
//! `plaid_sync.workers` static workers, registered only while the library is preloaded, each
//! connected to `plaid_sync.database`. They sleep on their latch; a transaction that adds
//! work wakes one idle worker when it commits, so a new job starts at once and
//! `plaid_sync.poll_interval` is only the fallback. A worker that claims a job while more
//! are due wakes the next idle one, so a burst spreads over all workers.

use std::time::{Duration, Instant};

use pgrx::IntoDatum;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::prelude::*;

use crate::database::db;
use crate::gucs;
use crate::jobs::{self, Step};
use crate::wake::{self, MAX_WORKERS};

/// How often worker 0 runs retention and the resync scan.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(5);

pub fn init() {
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        return; // CREATE EXTENSION alone: no workers, plaid_process_inbox() still works
    }
    wake::init();
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

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn plaid_sync_worker_main(arg: pg_sys::Datum) {
    let index = (unsafe { i64::from_datum(arg, false) }.unwrap_or(0) as usize).min(MAX_WORKERS - 1);
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(Some(&gucs::database()), None);
    wake::register_worker(index);
    log!(
        "plaid_sync worker {index} started, serving database {}",
        gucs::database()
    );

    let mut last_maintenance: Option<Instant> = None;
    let mut skew_reported: Option<String> = None;
    loop {
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        if wake::stopping() {
            break;
        }
        // Idle before looking: a commit after this point wakes us, one before it is seen.
        wake::set_idle(index, true);
        wake::clear_woken(index);
        let step = jobs::run_next();
        unsafe { pg_sys::pgstat_report_stat(false) };
        match &step {
            Step::Ran => continue,
            // New library, old SQL: wait for ALTER EXTENSION UPDATE, said once (by worker 0).
            Step::Skewed(sql) if skew_reported.as_ref() != Some(sql) => {
                if index == 0 {
                    warning!(
                        "{}; the workers run no jobs until then",
                        crate::database::skew_message(sql, &gucs::database())
                    );
                }
                skew_reported = Some(sql.clone());
            }
            Step::Skewed(_) => {}
            _ if skew_reported.take().is_some() && index == 0 => {
                log!(
                    "plaid_sync: the SQL objects are version {}: the workers run jobs again",
                    crate::database::LIBRARY_VERSION
                );
            }
            _ => {}
        }
        if index == 0
            && matches!(step, Step::Idle)
            && last_maintenance.is_none_or(|t| t.elapsed() >= MAINTENANCE_EVERY)
        {
            // Busy meanwhile, so commits wake another worker; then look for work again.
            wake::set_idle(index, false);
            db(crate::inbox::maintenance::maintenance);
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
    wake::unregister_worker(index);
    // Exit code 1: the postmaster starts the worker again after plaid_sync's restart delay
    // (exit 0 would unregister it). At server shutdown nothing is restarted anyway.
    unsafe { pg_sys::proc_exit(1) };
}
