//! Background workers: the loop only. The work itself is in `jobs.rs`.

pub fn init() {}

/// Wakes an idle worker when the current transaction commits.
pub fn wake_on_commit() {}
