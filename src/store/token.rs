//! An access token's whole life, in one place: sealed when the backend announces it (or
//! re-links), opened for a call to Plaid, sealed again under the current key at rotation,
//! destroyed at removal, and revealed to a superuser who migrates data out. The envelope is
//! `crypto.rs`'s; the column is `items.access_token_encrypted`, whose SQL `items.rs` keeps.
//! A token in plain text lives only in the function that needs it, never in a row or a log.

use std::rc::Rc;

use crate::crypto::Keyring;
use crate::error::{Error, Result};
use crate::gucs;
use crate::store::items;
use crate::tally::{self, Counter};

/// The keyring from the current settings (55000 when no key is set, 22023 when malformed).
/// The keys, parsed once per backend for the settings in force (a notice is a few dozen
/// microseconds; decoding and hashing the key on each one showed).
fn keyring() -> Result<Rc<Keyring>> {
    type Cached = (Option<String>, Option<String>, Rc<Keyring>);
    thread_local! {
        static RING: std::cell::RefCell<Option<Cached>> = const { std::cell::RefCell::new(None) };
    }
    let (current, previous) = (gucs::encryption_key(), gucs::previous_encryption_keys());
    RING.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some((c, p, ring)) = cache.as_ref()
            && *c == current
            && *p == previous
        {
            return Ok(ring.clone());
        }
        let ring = Rc::new(Keyring::from_settings(
            current.as_deref(),
            previous.as_deref(),
        )?);
        *cache = Some((current, previous, ring.clone()));
        Ok(ring)
    })
}

/// 55000 (or 22023) unless a token could be sealed now: checked before Plaid hands one out.
pub fn ready() -> Result<()> {
    keyring().map(|_| ())
}

/// The token sealed for the Item, to be stored with it (`items::announce`).
pub fn seal(item_id: &str, token: &str) -> Result<Vec<u8>> {
    Ok(keyring()?.encrypt(item_id, token))
}

/// Replaces the Item's token (a re-link's new one).
pub fn replace(item_id: &str, token: &str) -> Result<()> {
    items::store_sealed_token(item_id, &seal(item_id, token)?);
    Ok(())
}

/// The Item's token, opened for a call; None when it has none (it was removed). 55000 when no
/// key can open it.
pub fn open(item_id: &str) -> Result<Option<String>> {
    open_envelope(item_id, items::sealed_token(item_id).as_deref())
}

/// The same, for an envelope the caller read with the rest of the Item's row.
pub fn open_envelope(item_id: &str, envelope: Option<&[u8]>) -> Result<Option<String>> {
    match envelope {
        None => Ok(None),
        Some(envelope) => {
            tally::add(Counter::TokensDecrypted);
            keyring()?.decrypt(item_id, envelope).map(Some)
        }
    }
}

/// Re-seals every token not under the current key; how many. Everything is opened first: one
/// token no key opens stops the rotation with nothing changed.
pub fn rotate() -> Result<i32> {
    let ring = keyring()?;
    let mut resealed = Vec::new();
    for (item_id, envelope) in items::sealed_tokens_for_update() {
        if !ring.is_current(&item_id, &envelope) {
            tally::add(Counter::TokensDecrypted);
            let token = ring.decrypt(&item_id, &envelope)?;
            resealed.push((item_id.clone(), ring.encrypt(&item_id, &token)));
        }
    }
    for (item_id, sealed) in &resealed {
        items::store_sealed_token(item_id, sealed);
    }
    Ok(resealed.len() as i32)
}

/// Destroys the Item's token: nothing can call Plaid for it any more.
pub fn destroy(item_id: &str) {
    items::destroy_sealed_token(item_id);
}

/// 42501 unless the role that called (not the SECURITY DEFINER owner) is a superuser.
pub fn require_superuser() -> Result<()> {
    if unsafe { pgrx::pg_sys::superuser_arg(pgrx::pg_sys::GetOuterUserId()) } {
        Ok(())
    } else {
        Err(Error::Privilege(
            "only a superuser may decrypt access tokens".into(),
        ))
    }
}

/// The token in plain text, for a superuser who migrates data out.
pub fn reveal(item_id: &str) -> Result<String> {
    require_superuser()?;
    open(item_id)?.ok_or_else(|| {
        Error::invalid(format!(
            "Item {item_id} has no access token (it was removed)"
        ))
    })
}
