//! A worker's jobs in flight: each claimed job runs on a thread of its own, which calls Plaid
//! and hands every database step to the main thread (src/database/bridge.rs). The main
//! thread serves those steps, records finished jobs and claims new ones into free slots.
//! The backlog lane may take at most three quarters of the slots, so fresh work always has
//! room.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};

use crate::database::bridge::{self, Bell, Task, ToMain};
use crate::job::{Ctx, Job, Outcome};

pub struct JobThreads {
    /// The worker's index, under which its busy Items are published.
    worker: usize,
    slots: usize,
    running: HashMap<i64, Job>,
    to_main: ToMain,
    tasks: Receiver<Task>,
    done_tx: Sender<(i64, Outcome)>,
    done: Receiver<(i64, Outcome)>,
}

impl JobThreads {
    pub fn new(worker: usize, slots: usize) -> std::io::Result<JobThreads> {
        quiet_job_thread_panics();
        crate::busy_items::publish(worker, std::iter::empty()); // a previous process's
        let (tasks_tx, tasks) = channel();
        let (done_tx, done) = channel();
        Ok(JobThreads {
            worker,
            slots,
            running: HashMap::new(),
            to_main: ToMain {
                tasks: tasks_tx,
                bell: Bell::new()?,
            },
            tasks,
            done_tx,
            done,
        })
    }

    /// The eventfd that is readable while job threads have something for the main thread.
    pub fn bell(&self) -> &Bell {
        &self.to_main.bell
    }

    /// The same bell, for other threads of the worker (deliveries) to ring.
    pub fn shared_bell(&self) -> Arc<Bell> {
        self.to_main.bell.clone()
    }

    /// After a reload: slots in use keep running; new claims see the new size.
    pub fn resize(&mut self, slots: usize) {
        self.slots = slots.max(1);
    }

    pub fn in_flight(&self) -> usize {
        self.running.len()
    }

    pub fn free(&self) -> usize {
        self.slots.saturating_sub(self.running.len())
    }

    /// The lanes a claim may take from now, in order: fresh first; the backlog only while it
    /// holds under three quarters of the slots, and first every fourth claim so fresh work
    /// cannot starve it either.
    pub fn lanes(&self, claims: u64) -> &'static [i16] {
        let backlog = self.running.values().filter(|j| j.lane > 0).count();
        let backlog_cap = (self.slots * 3 / 4).max(1);
        match (backlog < backlog_cap, claims % 4 == 3) {
            (false, _) => &[0],
            (true, true) => &[1, 0],
            (true, false) => &[0, 1],
        }
    }

    /// Starts a claimed job on a thread of its own, with the client and settings made for it
    /// on this (the main) thread.
    pub fn spawn(&mut self, job: Job, ctx: Arc<Ctx>) {
        let to_main = self.to_main.clone();
        let done = self.done_tx.clone();
        let id = job.id;
        let run = job.clone();
        let started = std::thread::Builder::new()
            .name(format!("{JOB_THREAD}{id}"))
            .spawn(move || {
                block_signals();
                let bell = to_main.bell.clone();
                bridge::attach(to_main);
                let outcome = crate::runner::run_claimed(&run, &ctx);
                let _ = done.send((id, outcome));
                bell.ring();
            });
        match started {
            Ok(_) => {
                self.running.insert(id, job);
                self.publish();
            }
            Err(e) => {
                crate::runner::finish(&job, &Outcome::Retry(format!("no thread for the job: {e}")))
            }
        }
    }

    /// Runs the database steps job threads are waiting for; returns how many ran.
    pub fn serve(&mut self) -> usize {
        let mut n = 0;
        loop {
            match self.tasks.try_recv() {
                Ok(task) => {
                    task();
                    n += 1;
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return n,
            }
        }
    }

    /// Records the jobs that finished; returns how many.
    pub fn reap(&mut self) -> usize {
        let mut n = 0;
        while let Ok((id, outcome)) = self.done.try_recv() {
            if let Some(job) = self.running.remove(&id) {
                crate::runner::finish(&job, &outcome);
                n += 1;
            }
        }
        if n > 0 {
            self.publish();
        }
        n
    }

    /// The Items of the jobs in flight, for other claims to skip. Published once the job is
    /// recorded, so a claim that no longer skips the Item finds its job finished.
    fn publish(&self) {
        crate::busy_items::publish(
            self.worker,
            self.running.values().filter_map(|j| j.item_id.as_deref()),
        );
    }
}

/// The name every job thread has; the panic hook knows them by it.
const JOB_THREAD: &str = "plaid_sync job ";

/// A panic on a job thread is a bug in that job: it ends the job `failed` and the main thread
/// logs it once, with its message and no source paths (src/runner.rs). Rust's default hook
/// would also print it to the server log with the build machine's paths, so job threads skip
/// it; any other thread keeps the hook it had (pgrx's).
fn quiet_job_thread_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let job = std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with(JOB_THREAD));
            if !job {
                previous(info)
            }
        }));
    });
}

/// Signals are the main thread's: a job thread must never run a handler.
pub(crate) fn block_signals() {
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
    }
}
