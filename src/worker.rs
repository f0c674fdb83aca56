//! Background workers: registration and the loop, nothing else. What a job does is in
//! `route.rs` and `sync/`; the jobs in flight are in `job_threads.rs`; how a commit wakes a worker is
//! in `wake.rs`.
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

use crate::database::bridge::Bell;
use crate::database::try_db;
use crate::gucs;
use crate::job::Outcome;
use crate::job_threads::JobThreads;
use crate::runner::{self, Next};
use crate::wake::{self, MAX_WORKERS};

/// How often worker 0 runs retention and the resync scan.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(5);
/// A busy worker with free slots looks for new work at least this often (commits wake it
/// sooner).
const LOOK_WHILE_BUSY: Duration = Duration::from_millis(200);
/// While notification webhooks are on, a worker looks for due deliveries at least this often.
const DELIVERIES_EVERY: Duration = Duration::from_secs(1);

pub(crate) enum Wake {
    Latch,
    Timeout,
    Exit,
}

/// Waits on the process latch and the job threads' bell; tells a wake-up from a timeout.
/// The bell (job threads' steps and finished jobs) is silenced here and served by the loop.
pub(crate) fn wait_latch(bell: &Bell, timeout: Duration) -> Wake {
    let events = unsafe {
        let rc = pg_sys::WaitLatchOrSocket(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET
                | pg_sys::WL_SOCKET_READABLE
                | pg_sys::WL_TIMEOUT
                | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            bell.fd(),
            timeout.as_millis() as std::ffi::c_long,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
        rc
    };
    if events & pg_sys::WL_SOCKET_READABLE as i32 != 0 {
        bell.reset();
    }
    if BackgroundWorker::sigterm_received() || wake::stopping() {
        Wake::Exit
    } else if events & pg_sys::WL_LATCH_SET as i32 != 0 {
        Wake::Latch
    } else {
        Wake::Timeout
    }
}

/// The workers run as the bootstrap superuser: every name their statements use resolves in
/// plaid_sync or pg_catalog, never in a schema another role can create objects in (`public`
/// keeps its CREATE grant in databases upgraded from PostgreSQL 14 and older): the path the
/// SQL functions pin. The formats are pinned too, as for `plaid_process_inbox`
/// (sql/finalize.sql), so a job reads and writes the same text wherever it runs. Set for the
/// session, above any `ALTER DATABASE … SET`.
pub(crate) fn pin_session_settings() {
    let pinned: [(&std::ffi::CStr, &std::ffi::CStr); 6] = [
        (c"search_path", c"plaid_sync, pg_catalog, pg_temp"),
        (c"DateStyle", c"ISO, MDY"),
        (c"IntervalStyle", c"postgres"),
        (c"TimeZone", c"UTC"),
        (c"extra_float_digits", c"1"),
        (c"bytea_output", c"hex"),
    ];
    for (name, value) in pinned {
        unsafe {
            pg_sys::SetConfigOption(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_SUSET,
                pg_sys::GucSource::PGC_S_OVERRIDE,
            );
        }
    }
}

/// The extension is there (again): worker 0 says so once after it said it waited.
fn found_extension(index: usize, installed: &mut Option<bool>) {
    if index == 0 && *installed == Some(false) {
        log!(
            "plaid_sync: the plaid_sync extension is installed in database \"{}\": the workers run jobs",
            gucs::database()
        );
    }
    *installed = Some(true);
}

pub fn init() {
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        return; // CREATE EXTENSION alone: no workers, plaid_process_inbox() still works
    }
    wake::init();
    crate::pace::init();
    crate::tally::init();
    crate::busy_items::init();
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
    pin_session_settings();
    wake::register_worker(index);
    log!(
        "plaid_sync worker {index} started, serving database {}",
        gucs::database()
    );

    let mut threads =
        JobThreads::new(index, gucs::calls_in_flight() as usize).unwrap_or_else(|e| {
            error!("plaid_sync worker {index}: no eventfd for its job threads: {e}")
        });
    let mut deliverer = crate::deliverer::Deliverer::new(threads.shared_bell());
    let mut last_maintenance: Option<Instant> = None;
    let mut skew_reported: Option<String> = None;
    // Whether the extension was there at the last look (worker 0 says when that changes).
    let mut installed: Option<bool> = None;
    let mut last_look = Instant::now() - LOOK_WHILE_BUSY;
    let mut claims: u64 = 0;
    let mut look = true;
    loop {
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            threads.resize(gucs::calls_in_flight() as usize);
        }
        if wake::stopping() {
            break; // calls in flight are abandoned with the process; their jobs are reclaimed
        }
        threads.serve();
        if threads.reap() > 0 {
            look = true; // a slot is free
        }
        deliverer.serve();
        if threads.free() > 0 && (look || last_look.elapsed() >= LOOK_WHILE_BUSY) {
            look = false;
            last_look = Instant::now();
            // Idle before looking: a commit after this point wakes us, one before it is seen.
            wake::set_idle(index, true);
            wake::clear_woken(index);
            let mut more_due = false;
            while threads.free() > 0 {
                match runner::next(threads.lanes(claims)) {
                    Next::Job(job, more) => {
                        found_extension(index, &mut installed);
                        claims += 1;
                        more_due = more;
                        match runner::context() {
                            Ok(ctx) => threads.spawn(job, ctx),
                            Err(m) => runner::finish(
                                &job,
                                &Outcome::Retry(format!("not configured: {m}")),
                            ),
                        }
                    }
                    Next::Busy => continue,
                    Next::NotInstalled => {
                        if index == 0 && installed != Some(false) {
                            log!(
                                "plaid_sync: no plaid_sync extension in database \"{}\": the workers wait for CREATE EXTENSION plaid_sync there",
                                gucs::database()
                            );
                        }
                        installed = Some(false);
                        break;
                    }
                    Next::Failed(e) => {
                        // Dropped or changed under us, most likely: the next look tells.
                        log!("plaid_sync worker {index}: could not claim a job: {e}");
                        break;
                    }
                    Next::Skewed(sql) => {
                        // New library, old SQL: wait for ALTER EXTENSION UPDATE, said once (by worker 0).
                        if index == 0 && skew_reported.as_ref() != Some(&sql) {
                            warning!(
                                "{}; the workers run no jobs until then",
                                crate::database::skew_message(&sql, &gucs::database())
                            );
                        }
                        skew_reported = Some(sql);
                        break;
                    }
                    Next::Idle => {
                        found_extension(index, &mut installed);
                        if skew_reported.take().is_some() && index == 0 {
                            log!(
                                "plaid_sync: the SQL objects are version {}: the workers run jobs again",
                                crate::database::LIBRARY_VERSION
                            );
                        }
                        break;
                    }
                }
            }
            // More due than this worker took (its slots, or its backlog share, are full): the
            // next idle worker takes them. With slots free, commits may still wake this one.
            wake::on_claim(more_due);
            wake::set_idle(index, threads.free() > 0);
        }
        unsafe { pg_sys::pgstat_report_stat(false) };
        // Not while the SQL objects are another version: its statements are this version's.
        // Not without the extension either, nor before a look has found it.
        if index == 0
            && skew_reported.is_none()
            && installed == Some(true)
            && last_maintenance.is_none_or(|t| t.elapsed() >= MAINTENANCE_EVERY)
        {
            if let Err(e) = try_db(|| {
                crate::inbox::maintenance();
                crate::store::resync::resync();
                crate::store::webhook_keys::prune();
                crate::store::history::prune();
                crate::store::deliveries::prune(gucs::done_retention_s());
            }) {
                crate::database::sql_version_unknown();
                installed = None; // look again before the next round
                log!("plaid_sync worker 0: maintenance failed: {e}");
            }
            last_maintenance = Some(Instant::now());
        }
        // Busy: the bell wakes us for the job threads' steps. Idle: sleep until woken.
        let mut wait = if threads.in_flight() > 0 {
            LOOK_WHILE_BUSY
        } else if index == 0 {
            Duration::from_millis(gucs::poll_interval_ms()).min(MAINTENANCE_EVERY)
        } else {
            Duration::from_millis(gucs::poll_interval_ms())
        };
        if crate::deliverer::Deliverer::on() {
            wait = wait.min(DELIVERIES_EVERY); // events committed elsewhere, retries coming due
        }
        match wait_latch(threads.bell(), wait) {
            Wake::Latch => look = true,
            Wake::Timeout => look |= threads.in_flight() == 0,
            Wake::Exit => break,
        }
    }
    wake::unregister_worker(index);
    crate::busy_items::publish(index, std::iter::empty());
    // Exit code 1: the postmaster starts the worker again after plaid_sync's restart delay
    // (exit 0 would unregister it). At server shutdown nothing is restarted anyway.
    unsafe { pg_sys::proc_exit(1) };
}
