//! Counters since the server started, in shared memory: jobs finished, Plaid calls made and
//! access tokens decrypted, read by `plaid_sync.plaid_counters()`. They show what a job costs
//! without a debugger: a job decrypts its Item's token once, however many pages it reads.
//! Without preloading (`plaid_process_inbox` only) each backend counts its own.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;
use pgrx::{PgAtomic, pg_shmem_init};

/// What is counted, in the order `plaid_counters()` lists it.
#[derive(Copy, Clone)]
pub enum Counter {
    JobsFinished,
    PlaidCalls,
    TokensDecrypted,
}

const NAMES: [&str; 3] = ["jobs_finished", "plaid_calls", "tokens_decrypted"];

#[derive(Default)]
pub struct Tally {
    counts: [AtomicU64; 3],
}
unsafe impl PGRXSharedMemory for Tally {}

static SHARED: PgAtomic<Tally> = unsafe { PgAtomic::new(c"plaid_sync_tally") };
static LOCAL: OnceLock<Tally> = OnceLock::new();

/// In the postmaster, while preloading (`wake::preloaded()` then says the memory is there).
pub fn init() {
    pg_shmem_init!(SHARED);
}

fn tally() -> &'static Tally {
    if crate::wake::preloaded() {
        SHARED.get()
    } else {
        LOCAL.get_or_init(Default::default)
    }
}

pub fn add(counter: Counter) {
    tally().counts[counter as usize].fetch_add(1, Relaxed);
}

/// Each counter's name and value.
pub fn read() -> Vec<(&'static str, i64)> {
    let t = tally();
    NAMES
        .iter()
        .zip(&t.counts)
        .map(|(name, n)| (*name, n.load(Relaxed) as i64))
        .collect()
}
