//! Which Plaid products each Item has, and where each stands (`item_products`). Filled from
//! `/item/get`: a product plaid_sync mirrors is the Item's when it is in `products` or
//! `billed_products`; one only in `consented_products` is called only when
//! `plaid_sync.add_consented_products` is on, because that first call adds the product to the
//! Item and Plaid starts billing it.

use crate::database::{one, run};

/// The products plaid_sync mirrors, by Plaid's names. Transactions too goes through the gate:
/// a `/transactions/sync` on an Item without it would add it, and its billing.
pub const MIRRORED: [&str; 4] = [
    "transactions",
    "recurring_transactions",
    "investments",
    "liabilities",
];

/// Records the products `/item/get`'s Item object lists. A product it no longer lists is
/// `absent` (its rows stay); one listed again starts over as `pending`.
pub fn record(item_id: &str, item_json: &str) {
    let mirrored: Vec<&str> = MIRRORED.to_vec();
    run(
        "WITH i AS (SELECT $2::jsonb AS j),
         listed AS (
             SELECT p, bool_or(src <> 'consented') AS owned
               FROM i, LATERAL (
                    SELECT jsonb_array_elements_text(coalesce(j -> 'products', '[]')), 'products'
                    UNION ALL
                    SELECT jsonb_array_elements_text(coalesce(j -> 'billed_products', '[]')), 'billed'
                    UNION ALL
                    SELECT jsonb_array_elements_text(coalesce(j -> 'consented_products', '[]')), 'consented'
               ) x(p, src)
              WHERE p = ANY($3)
              GROUP BY p),
         gone AS (
             UPDATE plaid_sync.item_products ip SET state = 'absent', updated_at = now()
              WHERE ip.item_id = $1 AND ip.state <> 'absent'
                AND NOT EXISTS (SELECT FROM listed WHERE listed.p = ip.product))
         INSERT INTO plaid_sync.item_products AS ip (item_id, product, consented_only)
         SELECT $1, p, NOT owned FROM listed
         ON CONFLICT (item_id, product) DO UPDATE
            SET consented_only = EXCLUDED.consented_only,
                state = CASE WHEN ip.state = 'absent' THEN 'pending' ELSE ip.state END,
                updated_at = EXCLUDED.updated_at
          WHERE ip.consented_only IS DISTINCT FROM EXCLUDED.consented_only OR ip.state = 'absent'",
        &[item_id.into(), item_json.into(), mirrored.into()],
    );
    // An Item linked without Transactions still gets its row, saying why it is not synced.
    run(
        "INSERT INTO plaid_sync.item_products (item_id, product, state)
         VALUES ($1, 'transactions', 'absent') ON CONFLICT DO NOTHING",
        &[item_id.into()],
    );
}

/// Whether plaid_sync may call `product`'s endpoints for the Item now: the Item has it, and
/// neither Plaid nor the user ruled it out (a product `unsupported` or `needs_consent` waits
/// for the Item to be updated, which reads `/item/get` again and resets it). `Some(true)`:
/// callable, and the call adds the product (listed only in `consented_products`).
pub fn callable(item_id: &str, product: &str, add_consented: bool) -> Option<bool> {
    one::<bool>(
        "SELECT consented_only FROM plaid_sync.item_products
          WHERE item_id = $1 AND product = $2
            AND state NOT IN ('absent', 'unsupported', 'needs_consent')
            AND (NOT consented_only OR $3)",
        &[item_id.into(), product.into(), add_consented.into()],
    )
}

/// A product's endpoint answered and its rows are applied.
pub fn synced(item_id: &str, product: &str) {
    run(
        "UPDATE plaid_sync.item_products SET state = 'ok', last_synced_at = now(),
                last_attempt_at = now(), last_error = NULL, consented_only = false, updated_at = now()
          WHERE item_id = $1 AND product = $2",
        &[item_id.into(), product.into()],
    );
}

/// A call of the product's endpoint failed: the state it leaves the product in (or, for an
/// error that is not the product's, the state it had) and Plaid's error object.
pub fn failed(item_id: &str, product: &str, state: Option<&str>, error: &str) {
    run(
        "UPDATE plaid_sync.item_products SET state = coalesce($3, state), last_attempt_at = now(),
                last_error = $4::jsonb, updated_at = now()
          WHERE item_id = $1 AND product = $2",
        &[item_id.into(), product.into(), state.into(), error.into()],
    );
}

/// An Item updated (Link update mode, new accounts): products Plaid or the user ruled out are
/// tried again.
pub fn reset_ruled_out(item_id: &str) {
    run(
        "UPDATE plaid_sync.item_products SET state = 'pending', updated_at = now()
          WHERE item_id = $1 AND state IN ('unsupported', 'no_accounts', 'needs_consent')",
        &[item_id.into()],
    );
}

/// Access granted again after a revocation marked every row removed: each product is read
/// again from scratch after the next transactions sync (`queue_first_reads`).
pub fn read_again(item_id: &str) {
    run(
        "UPDATE plaid_sync.item_products SET state = 'pending', last_synced_at = NULL, updated_at = now()
          WHERE item_id = $1 AND product <> 'transactions' AND state <> 'absent'",
        &[item_id.into()],
    );
}

/// The products read by notices, and the notices that read them: Plaid's webhooks for them.
const FIRST_READS: [(&str, &str, &str); 4] = [
    (
        "recurring_transactions",
        "TRANSACTIONS",
        "RECURRING_TRANSACTIONS_UPDATE",
    ),
    ("liabilities", "LIABILITIES", "DEFAULT_UPDATE"),
    ("investments", "HOLDINGS", "DEFAULT_UPDATE"),
    (
        "investments",
        "INVESTMENTS_TRANSACTIONS",
        "HISTORICAL_UPDATE",
    ),
];

/// After a transactions sync: a product the Item has but that was never read gets its first
/// read queued, unless one is queued or running; recurring streams only once the history is
/// complete (Plaid computes them from it).
pub fn queue_first_reads(item_id: &str) {
    let due: Vec<String> = crate::database::rows(
        "SELECT ip.product FROM plaid_sync.item_products ip JOIN plaid_sync.items i USING (item_id)
          WHERE ip.item_id = $1 AND ip.product <> 'transactions'
            AND ip.state = 'pending' AND ip.last_synced_at IS NULL
            AND (NOT ip.consented_only OR $2)
            AND (ip.product <> 'recurring_transactions' OR i.historical_update_complete)",
        &[item_id.into(), crate::gucs::add_consented_products().into()],
        |r| r.get::<String>(1).ok().flatten(),
    );
    for (product, webhook_type, webhook_code) in FIRST_READS {
        if !due.iter().any(|d| d == product) {
            continue;
        }
        let queued = one::<bool>(
            "SELECT true FROM plaid_sync.inbox
              WHERE item_id = $1 AND status IN ('pending', 'running')
                AND webhook_type = $2 AND webhook_code = $3 LIMIT 1",
            &[item_id.into(), webhook_type.into(), webhook_code.into()],
        )
        .is_some();
        if !queued {
            crate::inbox::enqueue_notice(
                webhook_type,
                webhook_code,
                item_id,
                r#"{"reason": "first read"}"#,
                0,
            );
        }
    }
}

/// The Item's products deleted: a purge.
pub fn purge(item_id: &str) {
    run(
        "DELETE FROM plaid_sync.item_products WHERE item_id = $1",
        &[item_id.into()],
    );
}
