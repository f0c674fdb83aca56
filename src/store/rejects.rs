//! `plaid_sync.sync_rejects`: what an apply could not take, kept with the page it came from
//! until a later sync applies it; deleted with the Item's data by a purge.

use super::pages::{Last, pages};
use crate::database::{one, run, run_text};

/// A transaction (or a page's accounts, `transaction_id` None) our code could not apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub transaction_id: Option<String>,
    pub error: String,
}

/// Keeps what the apply left out, with the page it came from and that page's request_id,
/// and marks older rejects of transactions this run applied as resolved.
pub fn record_rejects(run_id: i64, item_id: &str, rejects: &[Reject], last: &Last) {
    let open = one::<bool>(
        "SELECT EXISTS (SELECT FROM plaid_sync.sync_rejects WHERE item_id = $1 AND resolved_at IS NULL)",
        &[item_id.into()],
    );
    if rejects.is_empty() && open != Some(true) {
        return; // nothing to keep and nothing to resolve
    }
    for r in rejects {
        run_text(
            &format!("INSERT INTO plaid_sync.sync_rejects (sync_run_id, item_id, transaction_id, page, request_id, error, data)
             SELECT $1, $2, $3, p.page, p.request_id, $4,
                    -- A marked object (src/codec/lean.rs) as Plaid sent it.
                    CASE WHEN x.e ? 'plaid_sync:lean'
                         THEN ($5::jsonb - coalesce((x.e -> 'plaid_sync:lean' ->> 'absent')::text[], '{{}}'))
                              || (x.e - 'plaid_sync:lean') || (x.e -> 'plaid_sync:lean' -> 'rest')
                         ELSE x.e END::text
               FROM {} p
               LEFT JOIN LATERAL (
                    SELECT e FROM jsonb_array_elements(
                              CASE WHEN jsonb_typeof(p.body -> 'added') = 'array' THEN p.body -> 'added' ELSE '[]' END
                           || CASE WHEN jsonb_typeof(p.body -> 'modified') = 'array' THEN p.body -> 'modified' ELSE '[]' END
                           || CASE WHEN jsonb_typeof(p.body -> 'removed') = 'array' THEN p.body -> 'removed' ELSE '[]' END)
                           WITH ORDINALITY y(e, ord)
                     WHERE $3 IS NOT NULL AND coalesce(e ->> 'transaction_id', '') = $3
                     ORDER BY ord DESC LIMIT 1) x ON true
              WHERE ($3 IS NULL OR x.e IS NOT NULL)
              ORDER BY p.page DESC LIMIT 1", pages!(6, 7, 8, 9)),
            &last.with(vec![
                run_id.into(),
                item_id.into(),
                r.transaction_id.as_deref().into(),
                r.error.as_str().into(),
                crate::codec::split::TEMPLATE.into(),
            ]),
        );
    }
    let kept: Vec<String> = rejects
        .iter()
        .filter_map(|r| r.transaction_id.clone())
        .collect();
    run_text(
        &format!("UPDATE plaid_sync.sync_rejects s SET resolved_at = now()
          WHERE s.item_id = $2 AND s.resolved_at IS NULL AND s.sync_run_id <> $1
            AND (s.transaction_id IS NULL AND NOT EXISTS (
                     SELECT FROM plaid_sync.sync_rejects n
                      WHERE n.item_id = $2 AND n.sync_run_id = $1 AND n.transaction_id IS NULL)
                 OR s.transaction_id <> ALL($3) AND s.transaction_id IN (
                     SELECT coalesce(a.e ->> 'transaction_id', '')
                       FROM {} p
                      CROSS JOIN (VALUES ('added'), ('modified'), ('removed')) k(key)
                      CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(p.body -> k.key) = 'array'
                                                                    THEN p.body -> k.key ELSE '[]' END) a(e)
                      ))", pages!(4, 5, 6, 7)),
        &last.with(vec![run_id.into(), item_id.into(), kept.into()]),
    );
}

/// The Item's rejects deleted (`account_id`: only those of that account's transactions).
pub fn purge(item_id: &str, account_id: Option<&str>) {
    run(
        "DELETE FROM plaid_sync.sync_rejects
          WHERE item_id = $1 AND ($2::text IS NULL OR strpos(coalesce(data, ''), '\"' || $2 || '\"') > 0)",
        &[item_id.into(), account_id.into()],
    );
}

/// Deletes rejects resolved more than `retention_s` ago, at most `batch`; how many. Open
/// rejects stay whatever their age: they are what a person still has to look at. A resolved
/// reject is written by no one, so this is a read and a delete (as `runs::prune`).
pub fn prune_resolved(retention_s: i32, batch: i32) -> i64 {
    let (ids, items) = super::old_rows(
        "SELECT id, item_id FROM plaid_sync.sync_rejects
          WHERE resolved_at < now() - make_interval(secs => $1)
          ORDER BY id LIMIT $2",
        &[retention_s.into(), batch.into()],
    );
    if ids.is_empty() {
        return 0;
    }
    crate::database::one::<i64>(
        "WITH gone AS (DELETE FROM plaid_sync.sync_rejects
                        WHERE id = ANY($1) AND item_id = ANY($2) RETURNING 1)
         SELECT count(*) FROM gone",
        &[ids.into(), items.into()],
    )
    .unwrap_or(0)
}
