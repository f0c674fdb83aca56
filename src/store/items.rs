//! `plaid_sync.items`: every statement that writes an Item's row (announce, what `/item/get`
//! and Plaid's ITEM webhooks say, a sync's cursor, pauses, removal, the sealed token, whose
//! life `token.rs` runs).

use super::item_events::{evented, run_evented};
use crate::database::{one, run};

/// Stores an `/item/get` (or `/accounts/get`) `item` object on the Item.
pub fn update_item(item_id: &str, item_json: &str) {
    run_evented(
        item_id,
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

/// `/item/get`'s `status` (Plaid's last update per product, its last webhook), kept as sent.
pub fn store_plaid_status(item_id: &str, status_json: &str) {
    run(
        "UPDATE plaid_sync.items SET plaid_status = nullif($2::jsonb, 'null') WHERE item_id = $1",
        &[item_id.into(), status_json.into()],
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

/// A webhook for the Item arrived (and was verified).
pub fn webhook_received(item_id: &str) {
    run(
        "UPDATE plaid_sync.items SET last_webhook_at = now() WHERE item_id = $1",
        &[item_id.into()],
    );
}

/// The status an Item-level Plaid error implies, with the error (`error_json`, Plaid's
/// envelope); a removed Item stays removed.
pub fn pause(item_id: &str, status: &str, error_json: &str) {
    run_evented(
        item_id,
        "UPDATE plaid_sync.items SET status = $2, error = $3::jsonb, updated_at = now()
          WHERE item_id = $1 AND status <> 'removed'",
        &[item_id.into(), status.into(), error_json.into()],
    );
}

/// SYNC_UPDATES_AVAILABLE's two flags, which only ever turn true.
pub fn store_update_flags(item_id: &str, body: &str) {
    run(
        "UPDATE plaid_sync.items SET
                initial_update_complete = initial_update_complete OR coalesce(($2::jsonb ->> 'initial_update_complete')::boolean, false),
                historical_update_complete = historical_update_complete OR coalesce(($2::jsonb ->> 'historical_update_complete')::boolean, false)
          WHERE item_id = $1",
        &[item_id.into(), body.into()],
    );
}

/// A transactions sync applied: its cursor (None: keep the stored one), Plaid's update
/// status, and the Item healthy again unless the user must act.
pub fn synced(item_id: &str, next_cursor: Option<&str>, update_status: Option<&str>) {
    run_evented(
        item_id,
        "UPDATE plaid_sync.items SET
                transactions_cursor = coalesce($2, transactions_cursor),
                status = CASE WHEN status IN ('pending', 'error', 'login_required', 'invalid_token')
                              THEN 'healthy' ELSE status END,
                error = CASE WHEN status IN ('pending_expiration', 'pending_disconnect') THEN error END,
                initial_update_complete = initial_update_complete
                    OR $3 IN ('INITIAL_UPDATE_COMPLETE', 'HISTORICAL_UPDATE_COMPLETE'),
                historical_update_complete = historical_update_complete
                    OR $3 = 'HISTORICAL_UPDATE_COMPLETE',
                last_synced_at = now(), synced_on = (now() AT TIME ZONE 'UTC')::date,
                updated_at = now()
          WHERE item_id = $1",
        &[item_id.into(), next_cursor.into(), update_status.into()],
    );
}

/// ITEM/ERROR: the status the error implies (`status`), the body's `error` kept.
pub fn error_webhook(item_id: &str, status: &str, body: &str) {
    run_evented(
        item_id,
        "UPDATE plaid_sync.items SET status = $2, error = $3::jsonb -> 'error', updated_at = now()
          WHERE item_id = $1 AND status <> 'removed'",
        &[item_id.into(), status.into(), body.into()],
    );
}

/// ITEM/ERROR with a code the user need not act on: the error kept, the status left as it
/// is, so the scheduled resync goes on (a successful sync clears it).
pub fn record_error(item_id: &str, body: &str) {
    run(
        "UPDATE plaid_sync.items SET error = $2::jsonb -> 'error', updated_at = now()
          WHERE item_id = $1 AND status <> 'removed'",
        &[item_id.into(), body.into()],
    );
}

/// `/item/get` and `/accounts/get` answered for an Item without Transactions: that read is
/// its sync (the scheduled resync reads it again), and it is healthy unless the user must act.
pub fn reachable(item_id: &str) {
    run_evented(
        item_id,
        "UPDATE plaid_sync.items SET
                status = CASE WHEN status IN ('pending', 'error', 'login_required', 'invalid_token')
                              THEN 'healthy' ELSE status END,
                error = CASE WHEN status IN ('pending', 'error', 'login_required', 'invalid_token')
                             THEN NULL ELSE error END,
                last_synced_at = now(), synced_on = (now() AT TIME ZONE 'UTC')::date, updated_at = now()
          WHERE item_id = $1 AND status NOT IN ('removed', 'revoked')",
        &[item_id.into()],
    );
}

/// The backend says a revoked Item was updated (the user granted access again in update
/// mode): it syncs again from the start, which brings back live what Plaid still has.
pub fn regranted(item_id: &str) {
    run_evented(
        item_id,
        "UPDATE plaid_sync.items SET status = 'pending', error = NULL, transactions_cursor = NULL,
                updated_at = now()
          WHERE item_id = $1 AND status = 'revoked'",
        &[item_id.into()],
    );
}

/// ITEM/LOGIN_REPAIRED: healthy again, from any state the user's login explains.
pub fn login_repaired(item_id: &str) {
    run_evented(
        item_id,
        "UPDATE plaid_sync.items SET status = 'healthy', error = NULL, updated_at = now()
          WHERE item_id = $1 AND status IN ('login_required', 'pending_expiration', 'pending_disconnect', 'error')",
        &[item_id.into()],
    );
}

/// The other ITEM webhooks that change the Item's row (docs/plaid.md, Webhooks), applied;
/// false for a code that does not.
pub fn item_webhook(item_id: &str, code: &str, body: &str) -> bool {
    let sql = match code {
        "PENDING_EXPIRATION" => "UPDATE plaid_sync.items SET status = 'pending_expiration',
                consent_expiration_time = ($2::jsonb ->> 'consent_expiration_time')::timestamptz,
                updated_at = now() WHERE item_id = $1 AND status NOT IN ('removed', 'revoked')",
        "PENDING_DISCONNECT" => "UPDATE plaid_sync.items SET status = 'pending_disconnect',
                error = jsonb_build_object('reason', $2::jsonb -> 'reason', 'disconnect_time', $2::jsonb -> 'disconnect_time'),
                updated_at = now() WHERE item_id = $1 AND status NOT IN ('removed', 'revoked')",
        "USER_PERMISSION_REVOKED" => "UPDATE plaid_sync.items SET status = 'revoked',
                error = $2::jsonb -> 'error', updated_at = now() WHERE item_id = $1 AND status <> 'removed'",
        "WEBHOOK_UPDATE_ACKNOWLEDGED" => "UPDATE plaid_sync.items SET webhook = $2::jsonb ->> 'new_webhook_url',
                updated_at = now() WHERE item_id = $1",
        "NEW_ACCOUNTS_AVAILABLE" => "UPDATE plaid_sync.items SET
                data = coalesce(data, '{}') || jsonb_build_object('new_accounts_available', true),
                updated_at = now() WHERE item_id = $1",
        _ => return false,
    };
    run_evented(item_id, sql, &[item_id.into(), body.into()]);
    true
}

/// The Item's status, locking its row (None when there is no such Item).
pub fn status_for_update(item_id: &str) -> Option<String> {
    one::<String>(
        "SELECT status FROM plaid_sync.items WHERE item_id = $1 FOR UPDATE",
        &[item_id.into()],
    )
}

/// Who the Item belongs to and whether Link may still open it (Link's update mode checks
/// both); None when there is no such Item.
pub struct Owner {
    pub status: String,
    pub client_user_id: Option<String>,
    pub purged: bool,
}

pub fn owner(item_id: &str) -> Option<Owner> {
    let row = one::<pgrx::JsonB>(
        "SELECT jsonb_build_array(status, client_user_id, purged_at IS NOT NULL)
           FROM plaid_sync.items WHERE item_id = $1",
        &[item_id.into()],
    )?;
    Some(Owner {
        status: row.0[0].as_str().unwrap_or_default().to_string(),
        client_user_id: row.0[1].as_str().map(str::to_string),
        purged: row.0[2].as_bool().unwrap_or(false),
    })
}

/// Locks the Item's row for an apply; false when it was removed, revoked or purged while the
/// job called Plaid (then nothing the job read may be applied).
pub fn lock_live(item_id: &str) -> bool {
    one::<bool>(
        "SELECT true FROM plaid_sync.items
          WHERE item_id = $1 AND status NOT IN ('removed', 'revoked') FOR UPDATE",
        &[item_id.into()],
    )
    .unwrap_or(false)
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

/// What a job reads of the Item in one statement: its status, transactions cursor and
/// sealed token; None for an Item nobody announced.
pub fn for_job(item_id: &str) -> Option<(String, Option<String>, Option<Vec<u8>>)> {
    crate::database::row(
        "SELECT status, transactions_cursor, access_token_encrypted
           FROM plaid_sync.items WHERE item_id = $1",
        &[item_id.into()],
        |r| {
            Some((
                r.get::<String>(1).ok()??,
                r.get::<String>(2).ok()?,
                r.get::<Vec<u8>>(3).ok()?,
            ))
        },
    )
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
pub fn announce(
    item_id: &str,
    client_user_id: Option<&str>,
    sealed: &[u8],
    environment: &str,
) -> Announced {
    use pgrx::datum::DatumWithOid;
    let args = || -> [DatumWithOid; 4] {
        [
            item_id.into(),
            client_user_id.into(),
            sealed.into(),
            environment.into(),
        ]
    };
    let queued = crate::database::one::<i64>(
        concat!(
        "WITH item AS (
             INSERT INTO plaid_sync.items (item_id, client_user_id, access_token_encrypted, environment)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (item_id) DO NOTHING
             RETURNING item_id)
         ",
        crate::queue_first_sync_from!("item")
        ),
        &args(),
    );
    if let Some(id) = queued {
        crate::wake::wake_on_commit();
        return Announced::New(id);
    }
    // The row lock taken here orders the notice's fold (src/inbox.rs, `enqueue_notice`).
    let relinked = evented(item_id, || {
        crate::database::one::<i16>(
        "UPDATE plaid_sync.items SET
             client_user_id = coalesce($2, client_user_id),
             access_token_encrypted = $3,
             environment = $4,
             status = CASE WHEN status IN ('healthy', 'pending_expiration', 'pending_disconnect')
                           THEN status ELSE 'pending' END,
             error = CASE WHEN status IN ('healthy', 'pending_expiration', 'pending_disconnect')
                          THEN error END,
             -- A removed or revoked Item's rows are all marked removed: it syncs again from
             -- the start, which brings back what Plaid still reports.
             transactions_cursor = CASE WHEN status IN ('removed', 'revoked') THEN NULL ELSE transactions_cursor END,
             purged_at = NULL,
             updated_at = now()
          WHERE item_id = $1
          RETURNING CASE WHEN last_synced_at IS NULL OR transactions_cursor IS NULL THEN 1::int2 ELSE 0::int2 END",
        &args(),
    )
    });
    match relinked {
        Some(lane) => Announced::Relinked(lane),
        None => Announced::Vanished,
    }
}

/// Marks the Item removed (its row is kept; `api::remove_item` cancels its jobs and marks its
/// rows). The token is `token.rs`'s to destroy.
pub fn mark_removed(item_id: &str) {
    run_evented(
        item_id,
        "UPDATE plaid_sync.items SET status = 'removed', updated_at = now() WHERE item_id = $1",
        &[item_id.into()],
    );
}

/// Every stored token, its row locked: (item_id, envelope). Citus refuses a multi-shard
/// FOR UPDATE: there an UPDATE that changes nothing takes the locks (one server writes none).
pub fn sealed_tokens_for_update() -> Vec<(String, Vec<u8>)> {
    let sql = if crate::database::citus_places("plaid_sync.items") {
        "UPDATE plaid_sync.items SET access_token_encrypted = access_token_encrypted
          WHERE access_token_encrypted IS NOT NULL RETURNING item_id, access_token_encrypted"
    } else {
        "SELECT item_id, access_token_encrypted FROM plaid_sync.items
          WHERE access_token_encrypted IS NOT NULL ORDER BY item_id FOR UPDATE"
    };
    crate::database::rows(sql, &[], |r| {
        Some((
            r.get::<String>(1).expect("item_id").expect("not null"),
            r.get::<Vec<u8>>(2).expect("token").expect("not null"),
        ))
    })
}

/// A purge: the Item keeps only its id, that it was purged and when, and (until the job that
/// removes it at Plaid has run) its sealed token; every other column is cleared.
pub fn mark_purged(item_id: &str) {
    run_evented(
        item_id,
        "UPDATE plaid_sync.items SET status = 'removed', purged_at = now(), client_user_id = NULL,
                institution_id = NULL, institution_name = NULL, transactions_cursor = NULL,
                error = NULL, consent_expiration_time = NULL, webhook = NULL, last_synced_at = NULL,
                synced_on = NULL, last_webhook_at = NULL, initial_update_complete = false,
                historical_update_complete = false, data = NULL, plaid_status = NULL, updated_at = now()
          WHERE item_id = $1",
        &[item_id.into()],
    );
}

/// True when the Item was purged (a late webhook for it is ignored).
pub fn purged(item_id: &str) -> bool {
    one::<bool>(
        "SELECT purged_at IS NOT NULL FROM plaid_sync.items WHERE item_id = $1",
        &[item_id.into()],
    )
    .unwrap_or(false)
}
