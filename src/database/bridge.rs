//! Job threads run a job's code but never call Postgres: each database step they take is sent
//! to the worker's main thread, which runs it and sends back the result (or the ERROR, raised
//! again on the job thread). The job thread waits meanwhile, so the step may borrow from it.
//! Every message to the main thread rings its `Bell`, an eventfd the main thread waits on
//! beside its latch, so it sleeps until there is something to do instead of polling.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::sync::mpsc::{Sender, sync_channel};

use pgrx::pg_sys;

/// A step for the main thread.
pub type Task = Box<dyn FnOnce() + Send>;

/// An eventfd: job threads ring it with a plain write (no Postgres call), the main thread
/// waits for it to be readable.
pub struct Bell(libc::c_int);

impl Bell {
    pub fn new() -> std::io::Result<Arc<Bell>> {
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Arc::new(Bell(fd)))
    }

    pub fn fd(&self) -> libc::c_int {
        self.0
    }

    pub fn ring(&self) {
        let one: u64 = 1;
        // Only fails when the counter is saturated, and then the bell is already ringing.
        unsafe { libc::write(self.0, (&one as *const u64).cast(), 8) };
    }

    /// Silences it; call before draining the channels, so a later ring is not lost.
    pub fn reset(&self) {
        let mut n: u64 = 0;
        unsafe { libc::read(self.0, (&mut n as *mut u64).cast(), 8) };
    }
}

impl Drop for Bell {
    fn drop(&mut self) {
        unsafe { libc::close(self.0) };
    }
}

/// The way to the main thread: its task channel and its bell.
#[derive(Clone)]
pub struct ToMain {
    pub tasks: Sender<Task>,
    pub bell: Arc<Bell>,
}

thread_local! {
    static MAIN: RefCell<Option<ToMain>> = const { RefCell::new(None) };
}

/// Makes this thread a job thread whose steps go to `main`.
pub fn attach(main: ToMain) {
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
    if main.tasks.send(task).is_err() {
        panic!("plaid_sync: the worker is stopping");
    }
    main.bell.ring();
    match result.recv() {
        Ok(Ok(v)) => v,
        Ok(Err(payload)) => resume_unwind(payload),
        Err(_) => panic!("plaid_sync: the worker is stopping"),
    }
}
