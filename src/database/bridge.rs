//! Job threads run a job's code but never call Postgres: each database step they take is sent
//! to the worker's main thread, which runs it and sends back the result (or the ERROR, raised
//! again on the job thread). The job thread waits meanwhile, so the step may borrow from it.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::mpsc::{Sender, sync_channel};

use pgrx::pg_sys;

/// A step for the main thread.
pub type Task = Box<dyn FnOnce() + Send>;

thread_local! {
    static MAIN: RefCell<Option<Sender<Task>>> = const { RefCell::new(None) };
}

/// Makes this thread a job thread whose steps go to `main`.
pub fn attach(main: Sender<Task>) {
    MAIN.with(|m| *m.borrow_mut() = Some(main));
}

pub fn on_job_thread() -> bool {
    MAIN.with(|m| m.borrow().is_some())
}

/// Runs `f` on the main thread and returns what it returned.
pub fn run_on_main<R>(f: impl FnOnce() -> R) -> R {
    let main = MAIN.with(|m| m.borrow().clone()).expect("not a job thread");
    let (done, result) = sync_channel(1);
    let task: Box<dyn FnOnce() + '_> = Box::new(move || {
        let r = catch_unwind(AssertUnwindSafe(f));
        if r.is_err() && unsafe { pg_sys::IsTransactionState() } {
            // The step's transaction failed: leave it before the next step runs.
            unsafe {
                pg_sys::FlushErrorState();
                pg_sys::AbortCurrentTransaction();
            }
        }
        let _ = done.send(r);
    });
    // SAFETY: this thread blocks below until the task has run or been dropped, so everything
    // the task borrows outlives it, and nothing else touches that data meanwhile.
    let task: Task = unsafe { std::mem::transmute::<Box<dyn FnOnce() + '_>, Task>(task) };
    if main.send(task).is_err() {
        panic!("plaid_sync: the worker is stopping");
    }
    match result.recv() {
        Ok(Ok(v)) => v,
        Ok(Err(payload)) => resume_unwind(payload),
        Err(_) => panic!("plaid_sync: the worker is stopping"),
    }
}
