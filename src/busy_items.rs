//! The Items each worker has a job in flight for, in shared memory: a claim skips their jobs
//! without reading the inbox for them. Found there instead, in `running` rows, every claim
//! also read the dead versions finished jobs leave (a bitmap scan never marks them dead), and
//! read more of them the longer the server ran until vacuum came by.
//!
//! Only a filter: `runner::lock_item` settles who runs an Item, so an Item missing here (an
//! ID too long for a slot, a worker between its claim and publishing) costs a claim that is
//! given back, and a stale one (a worker that exited, until it starts again) a short delay.
//! Without preloading there are no workers, and nothing is busy.

use pgrx::lwlock::PgLwLock;
use pgrx::pg_shmem_init;
use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;

use crate::wake::{MAX_WORKERS, preloaded};

/// `plaid_sync.calls_in_flight` at most: one job per slot.
pub const SLOTS: usize = 64;
/// Plaid's item_ids are 37 characters; a longer one is not published.
pub const ID_BYTES: usize = 63;

#[derive(Copy, Clone)]
#[repr(C)]
struct Held {
    len: u8,
    id: [u8; ID_BYTES],
}

const EMPTY: Held = Held {
    len: 0,
    id: [0; ID_BYTES],
};

#[derive(Copy, Clone)]
pub struct BusyItems {
    count: [u8; MAX_WORKERS],
    held: [[Held; SLOTS]; MAX_WORKERS],
}
impl Default for BusyItems {
    fn default() -> Self {
        BusyItems {
            count: [0; MAX_WORKERS],
            held: [[EMPTY; SLOTS]; MAX_WORKERS],
        }
    }
}
unsafe impl PGRXSharedMemory for BusyItems {}

static BUSY: PgLwLock<BusyItems> = unsafe { PgLwLock::new(c"plaid_sync_busy_items") };

/// In the postmaster, while preloading (`wake::preloaded()` then says the memory is there).
pub fn init() {
    pg_shmem_init!(BUSY);
}

/// Worker `index`'s Items now (a worker starting or leaving publishes none).
pub fn publish<'a>(index: usize, items: impl Iterator<Item = &'a str>) {
    if !preloaded() || index >= MAX_WORKERS {
        return;
    }
    let mut slots = [EMPTY; SLOTS];
    let mut n = 0;
    for id in items {
        if let Some(h) = encode(id).filter(|_| n < SLOTS) {
            slots[n] = h;
            n += 1;
        }
    }
    let mut busy = BUSY.exclusive();
    busy.held[index][..n].copy_from_slice(&slots[..n]);
    busy.count[index] = n as u8;
}

/// Every Item some worker has a job in flight for.
pub fn all() -> Vec<String> {
    if !preloaded() {
        return Vec::new();
    }
    let busy = BUSY.share();
    let mut out = Vec::new();
    for (w, &n) in busy.count.iter().enumerate() {
        out.extend(busy.held[w][..n as usize].iter().map(decode));
    }
    out
}

fn encode(id: &str) -> Option<Held> {
    let bytes = id.as_bytes();
    if bytes.is_empty() || bytes.len() > ID_BYTES {
        return None;
    }
    let mut h = EMPTY;
    h.len = bytes.len() as u8;
    h.id[..bytes.len()].copy_from_slice(bytes);
    Some(h)
}

fn decode(h: &Held) -> String {
    String::from_utf8_lossy(&h.id[..h.len as usize]).into_owned()
}

#[cfg(test)]
#[path = "busy_items_tests.rs"]
mod tests;
