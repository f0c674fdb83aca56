//! The HTTP listener (`plaid_sync.http_listen`): one more background worker, connected to
//! `plaid_sync.database`. Its server thread (src/http/server.rs) reads requests and never calls
//! Postgres; each call comes to this worker's main thread as a job's database step does
//! (src/database/bridge.rs), runs as the SQL function would, in a transaction of its own, and
//! its answer goes back to the server thread.

use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::prelude::*;

use crate::database::bridge::{Bell, Task};
use crate::gucs;
use crate::http::answer::{self, Answer, Call};
use crate::http::server::{self, Handler, Limits};
use crate::worker::{Wake, pin_session_settings, wait_latch};

/// In the postmaster, while preloading: the listener, when `plaid_sync.http_listen` is set.
pub fn init() {
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress }
        || gucs::http_listen().is_none()
    {
        return;
    }
    BackgroundWorkerBuilder::new("plaid_sync listener")
        .set_type("plaid_sync listener")
        .set_library("plaid_sync")
        .set_function("plaid_sync_listener_main")
        .enable_spi_access()
        // On a standby too, from when it is consistent: it answers 503 there, so a sender
        // retries (against the primary), and serves as soon as the standby is promoted.
        .set_start_time(BgWorkerStartTime::ConsistentState)
        .set_restart_time(Some(Duration::from_secs(2)))
        .load();
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn plaid_sync_listener_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(Some(&gucs::database()), None);
    pin_session_settings();
    let Some(address) = gucs::http_listen() else {
        return;
    };
    let bell = Bell::new()
        .unwrap_or_else(|e| error!("plaid_sync listener: no eventfd for its server thread: {e}"));
    let (tasks_tx, tasks) = channel::<Task>();
    let ring = bell.clone();
    // Called on the server thread: queue the call for this thread and ring.
    let handler: Handler = Arc::new(move |call, reply| {
        let task: Task = Box::new(move || {
            let _ = reply.send(run(call));
        });
        if tasks_tx.send(task).is_ok() {
            ring.ring();
        }
    });
    let limits = Limits {
        timeout: gucs::http_timeout(),
        max_connections: gucs::http_max_connections(),
    };
    let secret = Arc::new(RwLock::new(gucs::http_secret()));
    match server::start(&address, limits, secret.clone(), handler) {
        Ok(bound) => log!(
            "plaid_sync listener serving http://{bound} for database {}",
            gucs::database()
        ),
        // Restarted after its restart time: the address may be free by then.
        Err(e) => error!("plaid_sync listener: cannot listen on {address}: {e}"),
    }
    serve(&bell, &tasks, &secret);
    // Exit code 1: started again after the restart delay, as the workers are.
    unsafe { pg_sys::proc_exit(1) };
}

/// The main thread's loop: run the calls the server thread queued; reread the secret on
/// reload; leave on SIGTERM (the server thread ends with the process).
fn serve(bell: &Bell, tasks: &Receiver<Task>, secret: &server::Secret) {
    loop {
        if let Wake::Exit = wait_latch(bell, Duration::from_secs(1)) {
            return;
        }
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            *secret.write().unwrap_or_else(|p| p.into_inner()) = gucs::http_secret();
        }
        while let Ok(task) = tasks.try_recv() {
            task();
        }
    }
}

/// A call, exactly as its SQL function: committed with its answer, or rolled back with the
/// refusal's message.
fn run(call: Call) -> Answer {
    if unsafe { pg_sys::RecoveryInProgress() } {
        return Answer::unavailable("this server is a standby: send it to the primary");
    }
    let mut refusal = None;
    let outcome = crate::database::try_db(|| {
        let result = match &call {
            Call::Notify(body) => crate::api::notify(Some(body)),
            Call::Webhook(body, verification) => {
                crate::api::receive_webhook(Some(body), verification.as_deref())
            }
        };
        result.unwrap_or_else(|e| {
            refusal = Some(answer::refused(e.sqlstate(), e.message()));
            crate::database::raise(e) // rolls back whatever the call wrote
        })
    });
    match (outcome, refusal) {
        (Ok(inbox_id), _) => Answer::stored(inbox_id),
        (Err(_), Some(refused)) => refused,
        (Err(m), None) => {
            log!("plaid_sync listener: a request failed: {m}");
            Answer::unavailable("the database cannot take it now; try again")
        }
    }
}
