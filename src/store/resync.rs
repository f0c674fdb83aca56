//! The self-healing scan: an Item nobody has synced for `plaid_sync.resync_interval` gets a
//! sync queued (webhooks can be lost: Plaid gives up after a day). Worker 0's maintenance runs
//! it. Two statements, the stale Items read here and their syncs queued by the inbox: on a
//! distributed install items is spread over the Citus workers and the inbox is local, and
//! Citus joins neither way.

use pgrx::prelude::*;

use crate::gucs;

/// A few more are read than queued, for the Items a job already covers.
const READ: i64 = 400;

pub fn resync() {
    let interval = gucs::resync_interval_s();
    if interval == 0 {
        return;
    }
    let stale: Vec<String> = crate::database::rows(
        "SELECT item_id FROM plaid_sync.items
              WHERE status IN ('healthy', 'pending_expiration', 'pending_disconnect')
                AND synced_on <= ((now() - make_interval(secs => $1)) AT TIME ZONE 'UTC')::date
                AND last_synced_at < now() - make_interval(secs => $1)
              ORDER BY synced_on, last_synced_at LIMIT $2",
        &[interval.into(), READ.into()],
        |r| r.get::<String>(1).ok().flatten(),
    );
    let queued = crate::inbox::queue_resyncs(&stale);
    if queued > 0 {
        log!(
            "plaid_sync: queued a sync for {queued} Items not synced within plaid_sync.resync_interval"
        );
    }
}
