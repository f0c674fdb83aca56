//! Worker 0's housekeeping of the inbox: drop old done and rejected rows, and queue a sync for Items nobody
//! has synced for `plaid_sync.resync_interval` (webhooks can be lost: Plaid gives up after a day).

use pgrx::prelude::*;

use crate::database::one;
use crate::gucs;

pub fn maintenance() {
    let retention = gucs::done_retention_s();
    if retention > 0 {
        Spi::run_with_args(
            "DELETE FROM plaid_sync.inbox WHERE id IN (
                 SELECT id FROM plaid_sync.inbox
                  WHERE status IN ('done', 'rejected') AND finished_at < now() - make_interval(secs => $1)
                  ORDER BY finished_at LIMIT 1000)",
            &[retention.into()],
        )
        .expect("inbox retention");
    }
    let resync = gucs::resync_interval_s();
    if resync > 0 {
        let queued = one::<i64>(
            "WITH stale AS (
                 SELECT i.item_id FROM plaid_sync.items i
                  WHERE i.status IN ('healthy', 'pending_expiration', 'pending_disconnect')
                    AND i.last_synced_at < now() - make_interval(secs => $1)
                    AND NOT EXISTS (SELECT 1 FROM plaid_sync.inbox q
                                     WHERE q.item_id = i.item_id AND q.status IN ('pending', 'running'))
                  ORDER BY i.last_synced_at LIMIT 100),
             queued AS (
                 INSERT INTO plaid_sync.inbox (source, webhook_type, webhook_code, item_id, body, lane)
                 SELECT 'backend', 'TRANSACTIONS', 'SYNC_UPDATES_AVAILABLE', item_id,
                        '{\"reason\": \"resync_interval\"}', 1
                   FROM stale RETURNING 1)
             SELECT count(*) FROM queued",
            &[resync.into()],
        )
        .unwrap_or(0);
        if queued > 0 {
            log!(
                "plaid_sync: queued a sync for {queued} Items not synced within plaid_sync.resync_interval"
            );
        }
    }
}
