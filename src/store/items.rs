//! Items and the institutions cache: what `/item/get` says about an Item.

use crate::database::{one, run};

/// Stores an `/item/get` (or `/accounts/get`) `item` object on the Item.
pub fn update_item(item_id: &str, item_json: &str) {
    run(
        "UPDATE plaid_sync.items i SET
                institution_id = coalesce(x.o ->> 'institution_id', i.institution_id),
                institution_name = coalesce(x.o ->> 'institution_name', i.institution_name),
                webhook = x.o ->> 'webhook',
                consent_expiration_time = (x.o ->> 'consent_expiration_time')::timestamptz,
                data = x.o, updated_at = now()
           FROM (SELECT $2::jsonb AS o) x
          WHERE i.item_id = $1",
        &[item_id.into(), item_json.into()],
    );
}

/// The cached institution name, if we have it.
pub fn institution_cached(institution_id: &str) -> bool {
    one::<bool>(
        "SELECT true FROM plaid_sync.institutions WHERE institution_id = $1",
        &[institution_id.into()],
    )
    .is_some()
}

pub fn store_institution(institution_json: &str) {
    run(
        "WITH x AS (SELECT $1::jsonb AS o)
         INSERT INTO plaid_sync.institutions (institution_id, name, data)
         SELECT o ->> 'institution_id', o ->> 'name', o FROM x
         ON CONFLICT (institution_id) DO UPDATE SET name = EXCLUDED.name, data = EXCLUDED.data,
                fetched_at = now()",
        &[institution_json.into()],
    );
}

pub fn name_institution(item_id: &str) {
    run(
        "UPDATE plaid_sync.items i SET institution_name = n.name
           FROM plaid_sync.institutions n
          WHERE i.item_id = $1 AND n.institution_id = i.institution_id
            AND i.institution_name IS DISTINCT FROM n.name",
        &[item_id.into()],
    );
}

/// The Item's status, locking its row (None when there is no such Item).
pub fn status_for_update(item_id: &str) -> Option<String> {
    one::<String>(
        "SELECT status FROM plaid_sync.items WHERE item_id = $1 FOR UPDATE",
        &[item_id.into()],
    )
}

/// True when the Item still holds an access token.
pub fn has_token(item_id: &str) -> bool {
    one::<bool>(
        "SELECT access_token_encrypted IS NOT NULL FROM plaid_sync.items WHERE item_id = $1",
        &[item_id.into()],
    )
    .unwrap_or(false)
}

/// The Item's sealed token, if it has one.
pub fn sealed_token(item_id: &str) -> Option<Vec<u8>> {
    one::<Vec<u8>>(
        "SELECT access_token_encrypted FROM plaid_sync.items WHERE item_id = $1",
        &[item_id.into()],
    )
}

/// Replaces the Item's sealed token (`token.rs` seals it).
pub fn store_sealed_token(item_id: &str, sealed: &[u8]) {
    run(
        "UPDATE plaid_sync.items SET access_token_encrypted = $2, updated_at = now() WHERE item_id = $1",
        &[item_id.into(), sealed.into()],
    );
}

/// Drops the Item's sealed token (`token::destroy`).
pub fn destroy_sealed_token(item_id: &str) {
    run(
        "UPDATE plaid_sync.items SET access_token_encrypted = NULL, updated_at = now() WHERE item_id = $1",
        &[item_id.into()],
    );
}

/// The Item's status and transactions cursor; None for an Item nobody announced.
pub fn status_and_cursor(item_id: &str) -> Option<(String, Option<String>)> {
    pgrx::spi::Spi::connect(|c| {
        let t = c
            .select(
                "SELECT status, transactions_cursor FROM plaid_sync.items WHERE item_id = $1",
                None,
                &[item_id.into()],
            )
            .ok()?;
        let r = t.first();
        Some((r.get::<String>(1).ok()??, r.get::<String>(2).ok()?))
    })
}

/// What announcing an Item found.
pub enum Announced {
    /// A new Item, inserted with its first sync queued: the inbox id.
    New(i64),
    /// A known Item, re-linked: its token replaced, an Item paused by an error (or removed)
    /// back to pending, a removed one's cursor cleared, its row locked (the caller queues the
    /// notice, in the lane given: fresh when it synced before).
    Relinked(i16),
    /// Neither: deleted by hand between the two statements.
    Vanished,
}

/// Inserts a new Item and queues its first sync in one statement (the common case), or
/// re-links a known one.
/// Verified webhooks that came before their Item was announced sleep until it is: the Item's
/// first job wakes them (the notice itself stays the two rows it must write).
pub fn wake_waiting_webhooks(item_id: &str) {
    crate::database::run(
        "UPDATE plaid_sync.inbox SET run_after = now()
          WHERE item_id = $1 AND status = 'pending' AND source = 'plaid' AND run_after > now()",
        &[item_id.into()],
    );
}

pub fn announce(
    item_id: &str,
    client_user_id: Option<&str>,
    sealed: &[u8],
    environment: &str,
) -> Announced {
    use pgrx::datum::DatumWithOid;
    use pgrx::pg_sys;
    let args = || -> [DatumWithOid; 4] {
        [
            item_id.into(),
            client_user_id.into(),
            sealed.into(),
            environment.into(),
        ]
    };
    let types = [
        pg_sys::TEXTOID,
        pg_sys::TEXTOID,
        pg_sys::BYTEAOID,
        pg_sys::TEXTOID,
    ];
    let queued = crate::database::one_prepared::<i64>(
        "WITH item AS (
             INSERT INTO plaid_sync.items (item_id, client_user_id, access_token_encrypted, environment)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (item_id) DO NOTHING
             RETURNING item_id)
         INSERT INTO plaid_sync.inbox (source, webhook_type, webhook_code, item_id, lane)
         SELECT 'backend', 'ITEM', 'CREATED', item_id, 1 FROM item
         RETURNING id",
        &types,
        &args(),
    );
    if let Some(id) = queued {
        crate::wake::wake_on_commit();
        return Announced::New(id);
    }
    // The row lock taken here orders the notice's fold (src/inbox/mod.rs).
    let relinked = crate::database::one_prepared::<i16>(
        "UPDATE plaid_sync.items SET
             client_user_id = coalesce($2, client_user_id),
             access_token_encrypted = $3,
             environment = $4,
             status = CASE WHEN status IN ('healthy', 'pending_expiration', 'pending_disconnect')
                           THEN status ELSE 'pending' END,
             error = CASE WHEN status IN ('healthy', 'pending_expiration', 'pending_disconnect')
                          THEN error END,
             -- A removed Item's rows are all marked removed: it syncs again from the start,
             -- which brings back what Plaid still reports.
             transactions_cursor = CASE WHEN status = 'removed' THEN NULL ELSE transactions_cursor END,
             updated_at = now()
          WHERE item_id = $1
          RETURNING CASE WHEN last_synced_at IS NULL OR transactions_cursor IS NULL THEN 1::int2 ELSE 0::int2 END",
        &types,
        &args(),
    );
    match relinked {
        Some(lane) => Announced::Relinked(lane),
        None => Announced::Vanished,
    }
}

/// Stops everything queued for the Item, then marks it and its rows removed (rows are kept).
/// The token is `token.rs`'s to destroy.
pub fn mark_removed(item_id: &str) {
    run(
        "WITH cancelled AS (
             UPDATE plaid_sync.inbox SET status = 'done', finished_at = now(),
                    last_error = 'cancelled: Item removed'
              WHERE item_id = $1 AND status IN ('pending', 'running') RETURNING 1),
         acc AS (
             UPDATE plaid_sync.accounts SET removed_at = now(), updated_at = now()
              WHERE item_id = $1 AND removed_at IS NULL RETURNING 1),
         txn AS (
             UPDATE plaid_sync.transaction_rows SET removed_at = now(), updated_at = now()
              WHERE item_id = $1 AND removed_at IS NULL RETURNING 1)
         UPDATE plaid_sync.items SET status = 'removed', updated_at = now()
          WHERE item_id = $1",
        &[item_id.into()],
    );
}

/// Every stored token, its row locked: (item_id, envelope).
pub fn sealed_tokens_for_update() -> Vec<(String, Vec<u8>)> {
    pgrx::spi::Spi::connect_mut(|c| {
        c.update(
            "SELECT item_id, access_token_encrypted FROM plaid_sync.items
              WHERE access_token_encrypted IS NOT NULL ORDER BY item_id FOR UPDATE",
            None,
            &[],
        )
        .expect("read tokens")
        .map(|r| {
            (
                r.get::<String>(1).expect("item_id").expect("not null"),
                r.get::<Vec<u8>>(2).expect("token").expect("not null"),
            )
        })
        .collect()
    })
}
