//! The access-token envelope. New tokens are OpenPGP symmetric messages (`openpgp.rs`), which
//! pgcrypto's `pgp_sym_decrypt(access_token_encrypted, '<encryption_key>')` opens; the literal
//! data's file name is the `item_id`, checked here, so an envelope copied onto another Item
//! does not decrypt in plaid_sync. The passphrase is the key as configured (its text).
//!
//! 0.2.0's envelopes (still read, rewritten by `plaid_rotate_encryption_key`): AES-256-GCM, one
//! fresh nonce per value, the Item id bound in as associated data, and a key fingerprint:
//!
//! ```text
//! offset  size  field
//!      0     1  version, 0x01
//!      1     8  key fingerprint: the first 8 bytes of SHA-256(key)
//!      9    12  nonce (random)
//!     21     n  AES-256-GCM ciphertext of the UTF-8 token, followed by the 16-byte tag
//! AAD = bytes 0..9 of the envelope || UTF-8 bytes of the item_id
//! ```

pub mod openpgp;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

pub const VERSION: u8 = 1;
const FINGERPRINT_LEN: usize = 8;
const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = 1 + FINGERPRINT_LEN;
const TAG_LEN: usize = 16;

/// A 256-bit key, its fingerprint, and its text as configured (the OpenPGP passphrase).
/// Debug output never shows the key.
#[derive(Clone)]
pub struct Key {
    bytes: [u8; 32],
    fingerprint: [u8; FINGERPRINT_LEN],
    passphrase: String,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key(fingerprint {})", self.fingerprint_hex())
    }
}

impl Key {
    fn new(bytes: [u8; 32], passphrase: &str) -> Key {
        let digest = Sha256::digest(bytes);
        let mut fingerprint = [0u8; FINGERPRINT_LEN];
        fingerprint.copy_from_slice(&digest[..FINGERPRINT_LEN]);
        Key {
            bytes,
            fingerprint,
            passphrase: passphrase.to_string(),
        }
    }

    /// Parses 64 hex characters or standard base64 of exactly 32 bytes. The error names the
    /// setting, never the value.
    pub fn parse(text: &str, setting: &str) -> Result<Key> {
        let text = text.trim();
        let decoded = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).ok()
        } else {
            base64::engine::general_purpose::STANDARD.decode(text).ok()
        };
        match decoded {
            Some(v) if v.len() == 32 => {
                let mut bytes = [0u8; 32];
                bytes.copy_from_slice(&v);
                Ok(Key::new(bytes, text))
            }
            _ => Err(Error::invalid(format!(
                "{setting} is malformed: expected 64 hexadecimal characters or the base64 encoding of 32 bytes"
            ))),
        }
    }

    pub fn fingerprint_hex(&self) -> String {
        hex::encode(self.fingerprint)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(&self.bytes).expect("32-byte key")
    }
}

/// The current key (encrypts and decrypts) and older ones (decrypt only).
pub struct Keyring {
    pub current: Key,
    pub previous: Vec<Key>,
    /// The current key's OpenPGP writer, its S2K key derived once per keyring.
    sealer: openpgp::Sealer,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current)
            .field("previous", &self.previous)
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// Builds the keyring from the two settings' text. A missing current key is 55000; a
    /// malformed one (current or previous) is 22023.
    pub fn from_settings(current: Option<&str>, previous: Option<&str>) -> Result<Keyring> {
        let current = match current.map(str::trim) {
            Some(c) if !c.is_empty() => Key::parse(c, "plaid_sync.encryption_key")?,
            _ => {
                return Err(Error::not_configured(
                    "plaid_sync.encryption_key is not set: access tokens cannot be encrypted",
                ));
            }
        };
        let mut keys = Vec::new();
        for part in previous.unwrap_or("").split(',') {
            let part = part.trim();
            if !part.is_empty() {
                keys.push(Key::parse(part, "plaid_sync.previous_encryption_keys")?);
            }
        }
        Ok(Keyring {
            sealer: openpgp::Sealer::new(current.passphrase.as_bytes()),
            current,
            previous: keys,
        })
    }

    fn find(&self, fingerprint: &[u8]) -> Option<&Key> {
        std::iter::once(&self.current)
            .chain(self.previous.iter())
            .find(|k| k.fingerprint[..] == *fingerprint)
    }

    /// A new envelope: an OpenPGP message under the current key, its file name the Item's id.
    pub fn encrypt(&self, item_id: &str, token: &str) -> Vec<u8> {
        self.sealer.encrypt(item_id, token.as_bytes())
    }

    pub fn decrypt(&self, item_id: &str, envelope: &[u8]) -> Result<String> {
        let plain = if envelope.first() == Some(&VERSION) {
            self.decrypt_gcm(item_id, envelope)?
        } else if openpgp::looks_like(envelope) {
            self.decrypt_pgp(item_id, envelope)?
        } else {
            return Err(Error::invalid(
                "stored access token is not a plaid_sync envelope of a known version",
            ));
        };
        String::from_utf8(plain).map_err(|_| Error::invalid("decrypted access token is not UTF-8"))
    }

    /// Each key in turn, the current one first: the message's quick check tells a wrong key.
    fn decrypt_pgp(&self, item_id: &str, envelope: &[u8]) -> Result<Vec<u8>> {
        let tampered = || {
            Error::invalid(format!(
                "the stored access token does not decrypt for Item {item_id} (tampered, or copied from another Item)"
            ))
        };
        for key in std::iter::once(&self.current).chain(self.previous.iter()) {
            match openpgp::decrypt(key.passphrase.as_bytes(), envelope) {
                // pgcrypto writes no file name; ours is the Item's id.
                Ok(lit) if lit.file_name.is_empty() || lit.file_name == item_id.as_bytes() => {
                    return Ok(lit.data);
                }
                Ok(_) | Err(openpgp::Fail::Tampered) => return Err(tampered()),
                Err(openpgp::Fail::WrongKey) => continue,
                Err(openpgp::Fail::Format(why)) => {
                    return Err(Error::invalid(format!(
                        "the stored access token of Item {item_id} is not an envelope plaid_sync reads: {why}"
                    )));
                }
            }
        }
        Err(Error::not_configured(format!(
            "the stored access token of Item {item_id} was encrypted with a key that is neither plaid_sync.encryption_key nor in plaid_sync.previous_encryption_keys"
        )))
    }

    fn decrypt_gcm(&self, item_id: &str, envelope: &[u8]) -> Result<Vec<u8>> {
        if envelope.len() < HEADER_LEN + NONCE_LEN + TAG_LEN {
            return Err(Error::invalid(
                "stored access token is not a plaid_sync envelope of a known version",
            ));
        }
        let key = self.find(&envelope[1..HEADER_LEN]).ok_or_else(|| {
            Error::not_configured(format!(
                "the stored access token of Item {item_id} was encrypted with a key (fingerprint {}) that is neither plaid_sync.encryption_key nor in plaid_sync.previous_encryption_keys",
                hex::encode(&envelope[1..HEADER_LEN])
            ))
        })?;
        let nonce = Nonce::from_slice(&envelope[HEADER_LEN..HEADER_LEN + NONCE_LEN]);
        let aad = aad(&envelope[..HEADER_LEN], item_id);
        key.cipher()
            .decrypt(nonce, Payload { msg: &envelope[HEADER_LEN + NONCE_LEN..], aad: &aad })
            .map_err(|_| {
                Error::invalid(format!(
                    "the stored access token does not decrypt for Item {item_id} (tampered, or copied from another Item)"
                ))
            })
    }

    /// True when this envelope is already what `encrypt` writes now: an OpenPGP message under
    /// the current key, bound to its Item (rotation skips it; pgcrypto's, unbound, it rewrites).
    pub fn is_current(&self, item_id: &str, envelope: &[u8]) -> bool {
        openpgp::looks_like(envelope)
            && openpgp::decrypt(self.current.passphrase.as_bytes(), envelope)
                .is_ok_and(|lit| lit.file_name == item_id.as_bytes())
    }
}

fn aad(header: &[u8], item_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + item_id.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(item_id.as_bytes());
    aad
}

/// 0.2.0's envelope, written only by the tests that check it still opens.
#[cfg(test)]
fn encrypt_with(key: &Key, item_id: &str, token: &str) -> Vec<u8> {
    use rand::RngCore;
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + token.len() + TAG_LEN);
    out.push(VERSION);
    out.extend_from_slice(&key.fingerprint);
    let aad = aad(&out, item_id);
    let sealed = key
        .cipher()
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: token.as_bytes(),
                aad: &aad,
            },
        )
        .expect("AES-GCM encryption of a short token cannot fail");
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

#[cfg(test)]
#[path = "crypto_tests.rs"]
mod unit;
