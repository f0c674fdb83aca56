//! The ITEM jobs: re-read an Item with its institution and accounts (backend CREATED and
//! UPDATED), apply Plaid's ITEM webhooks, update the webhook URL, remove an Item at Plaid.

use serde_json::Value;

use super::{from_plaid, load_item, pause_item, sync_transactions};
use crate::database::db;
use crate::job::{Job, Outcome};
use crate::plaid::{Class, Client, PlaidError};
use crate::store;

/// ITEM/CREATED and ITEM/UPDATED from the backend: re-read the Item, its institution and
/// accounts, then sync transactions when the Item has them (Plaid only sends
/// SYNC_UPDATES_AVAILABLE after one sync); an Item without them gets its other products'
/// first reads queued here instead.
pub fn reread_item(job: &Job, ctx: &crate::job::Ctx, item_id: &str) -> Outcome {
    let client = ctx.client.as_ref();
    let (_, cursor, token) = match load_item(item_id) {
        Ok(x) => x,
        Err(o) => return o,
    };
    let item = match client.item_get(&token).and_then(|r| r.json()) {
        Ok(v) => v,
        Err(e) => {
            pause_item(item_id, &e);
            return from_plaid("/item/get", e);
        }
    };
    let obj = item["item"].to_string();
    let status = item["status"].to_string();
    let updated = job.webhook_code == "UPDATED";
    db(|| {
        store::update_item(item_id, &obj);
        store::items::store_plaid_status(item_id, &status);
        crate::inbox::wake_waiting_webhooks(item_id);
        // Link update mode may have added consent or accounts: ruled-out products are retried.
        if updated {
            store::products::reset_ruled_out(item_id);
        }
        store::products::record(item_id, &obj);
    });
    if let Some(err) = item["item"]["error"].as_object() {
        let e = PlaidError::from_response(400, &Value::Object(err.clone()).to_string());
        if matches!(e.class(), Class::ItemState(_)) {
            pause_item(item_id, &e);
            return Outcome::ItemPaused(format!("Plaid /item/get reports {e}"));
        }
    }
    if let Some(inst) = item["item"]["institution_id"].as_str() {
        if !db(|| store::institution_cached(inst)) {
            match client.institutions_get_by_id(inst).and_then(|r| r.json()) {
                Ok(v) => {
                    let obj = v["institution"].to_string();
                    db(|| store::store_institution(&obj))
                }
                Err(e) => return from_plaid("/institutions/get_by_id", e),
            }
        }
        db(|| store::name_institution(item_id));
    }
    match client
        .accounts_get(&token)
        .and_then(|r| Ok((r.json()?, r.altered("accounts", "account_id"))))
    {
        Ok((v, altered)) => {
            let accounts = v["accounts"].to_string();
            let raw = (!altered.is_empty()).then(|| {
                serde_json::Value::Object(
                    altered.into_iter().map(|(id, t)| (id, t.into())).collect(),
                )
                .to_string()
            });
            db(|| store::upsert_accounts(item_id, &accounts, true, raw.as_deref()))
        }
        Err(e) => {
            pause_item(item_id, &e);
            return from_plaid("/accounts/get", e);
        }
    }
    let Some(adds_product) = super::gate(item_id, "transactions", &ctx.settings) else {
        db(|| {
            store::items::reachable(item_id);
            store::products::queue_first_reads(item_id);
        });
        return super::not_callable("transactions");
    };
    let ask = super::Ask {
        options: &ctx.settings.sync,
        adds_product,
    };
    sync_transactions(
        job,
        client,
        item_id,
        &token,
        cursor,
        "item_refresh",
        false,
        &ask,
    )
}

/// ITEM webhooks from Plaid: each moves the Item's state as docs/plaid.md, Webhooks, lists.
pub fn item_webhook(job: &Job, item_id: &str, settings: &crate::job::JobSettings) -> Outcome {
    let purge_on_revoke = settings.purge_on_revoke;
    db(|| item_webhook_in_db(job, item_id, purge_on_revoke))
}

fn item_webhook_in_db(job: &Job, item_id: &str, purge_on_revoke: bool) -> Outcome {
    let body = job.body.to_string();
    match job.webhook_code.as_str() {
        "ERROR" => {
            let e = PlaidError::from_response(400, &job.body["error"].to_string());
            match e.class() {
                // The user must act (update mode): paused until then.
                Class::ItemState(status) => store::items::error_webhook(item_id, status, &body),
                // Plaid's side or the bank's: recorded, and the scheduled resync goes on.
                _ => store::items::record_error(item_id, &body),
            }
        }
        "USER_ACCOUNT_REVOKED" => {
            let Some(account_id) = job.body["account_id"].as_str() else {
                return Outcome::Done(Some(
                    "ignored: USER_ACCOUNT_REVOKED names no account_id".into(),
                ));
            };
            if purge_on_revoke {
                store::consent::purge(item_id, Some(account_id));
            } else {
                store::consent::mark_removed(item_id, Some(account_id));
            }
        }
        "USER_PERMISSION_REVOKED" => {
            store::items::item_webhook(item_id, "USER_PERMISSION_REVOKED", &body);
            if purge_on_revoke {
                // Plaid asks for a revoked Item to be removed: the purge's job does it.
                store::consent::purge_item(item_id, true);
            } else {
                store::consent::mark_removed(item_id, None);
            }
        }
        "LOGIN_REPAIRED" => {
            store::items::login_repaired(item_id);
            let reason = r#"{"reason": "LOGIN_REPAIRED"}"#;
            crate::inbox::enqueue_notice(
                "TRANSACTIONS",
                "SYNC_UPDATES_AVAILABLE",
                item_id,
                reason,
                0,
            );
        }
        code if store::items::item_webhook(item_id, code, &body) => {}
        other => {
            return Outcome::Done(Some(format!(
                "ignored: ITEM/{other} is not a code plaid_sync acts on"
            )));
        }
    }
    Outcome::Done(None)
}

pub fn update_webhook(job: &Job, client: &Client, item_id: &str) -> Outcome {
    let (_, _, token) = match load_item(item_id) {
        Ok(x) => x,
        Err(o) => return o,
    };
    let url = job.body["webhook"].as_str().unwrap_or_default();
    match client
        .item_webhook_update(&token, url)
        .and_then(|r| r.json())
    {
        Ok(v) => {
            let obj = v["item"].to_string();
            db(|| store::update_item(item_id, &obj));
            Outcome::Done(None)
        }
        Err(e) => {
            pause_item(item_id, &e);
            from_plaid("/item/webhook/update", e)
        }
    }
}

/// `/item/remove`, then the token is destroyed (the Item was already marked removed, or
/// purged: then its inbox rows, this job's too, are deleted once Plaid has removed it).
pub fn remove_at_plaid(job: &Job, client: &Client, item_id: &str) -> Outcome {
    let (status, _, token) = match load_item(item_id) {
        Ok(x) => x,
        Err(o) => return o,
    };
    if status != "removed" {
        // Announced again before this job ran: the token is the new link's, keep it.
        return Outcome::Done(Some("skipped: the Item was announced again".into()));
    }
    let outcome = match client.item_remove(&token) {
        Ok(_) => Outcome::Done(None),
        // Already gone at Plaid: nothing left to remove.
        Err(e) if matches!(e.code(), Some("ITEM_NOT_FOUND" | "INVALID_ACCESS_TOKEN")) => {
            Outcome::Done(Some(format!("Plaid /item/remove: {e}")))
        }
        Err(e) => return from_plaid("/item/remove", e),
    };
    let purge = job.body["purge"].as_bool() == Some(true);
    db(|| {
        crate::store::token::destroy(item_id);
        if purge && store::items::purged(item_id) {
            crate::inbox::forget_item(item_id);
        }
    });
    outcome
}
