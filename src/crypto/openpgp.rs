//! OpenPGP symmetric messages (RFC 4880) as pgcrypto writes and reads them, so a DBA opens a
//! stored token with `pgp_sym_decrypt(access_token_encrypted, '<encryption_key>')`.
//!
//! What we write: a symmetric-key session packet (tag 3: AES-256, an iterated and salted S2K
//! with SHA-256, no separate session key), then a symmetrically encrypted and integrity
//! protected data packet (tag 18: OpenPGP CFB, a random 16-byte prefix and its quick check,
//! and a modification detection code, SHA-1 over everything before it) holding one literal
//! data packet (tag 11, UTF-8 text) whose file name is the `item_id`. What we read: that, and
//! what pgcrypto writes (partial body lengths, an empty file name, AES-128 or -256, S2K modes
//! 0, 1 and 3 with SHA-1 or SHA-256). Compressed data and separate session keys are refused.

use aes::{Aes128, Aes256};
use cfb_mode::cipher::{AsyncStreamCipher, KeyIvInit};
use rand::RngCore;
use sha1::Sha1;
use sha2::{Digest, Sha256};

const TAG_SKESK: u8 = 3;
const TAG_COMPRESSED: u8 = 8;
const TAG_LITERAL: u8 = 11;
const TAG_SEIPD: u8 = 18;
const AES128: u8 = 7;
const AES256: u8 = 9;
const HASH_SHA1: u8 = 2;
const HASH_SHA256: u8 = 8;
/// The S2K's coded count: 1,024 octets hashed, the least OpenPGP allows. The passphrase is a
/// random 256-bit key, not a word a person chose, so stretching it would protect nothing and
/// cost every announce.
const S2K_COUNT: u8 = 0;
const MDC_HEADER: [u8; 2] = [0xD3, 0x14];

/// Why a message did not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fail {
    /// Not a message of the kind we read.
    Format(&'static str),
    /// The quick check says the passphrase is not this message's.
    WrongKey,
    /// The key fits but the integrity check fails: a byte was changed.
    Tampered,
}

/// The literal data packet's content.
#[derive(Debug, PartialEq, Eq)]
pub struct Literal {
    pub file_name: Vec<u8>,
    pub data: Vec<u8>,
}

/// True when `message` starts with a symmetric-key session packet (either header format).
pub fn looks_like(message: &[u8]) -> bool {
    matches!(message.first(), Some(&b) if b == 0xC0 | TAG_SKESK || (0x8C..=0x8F).contains(&b))
}

/// Writes messages under one passphrase. The S2K's key is derived once, with a salt drawn
/// when the sealer is made, and each message still gets its own random 16-byte prefix (which
/// is what makes OpenPGP's CFB safe under a reused key): the key is a random 256-bit value, so
/// a fresh salt per message would guard against nothing and cost every announce a derivation.
/// Every message carries its salt, so any reader (pgcrypto) derives the same key.
pub struct Sealer {
    salt: [u8; 8],
    key: Vec<u8>,
}

impl Sealer {
    pub fn new(passphrase: &[u8]) -> Sealer {
        let mut salt = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let key = s2k(HASH_SHA256, Some(&salt), count(S2K_COUNT), passphrase, 32);
        Sealer { salt, key }
    }

    pub fn encrypt(&self, file_name: &str, data: &[u8]) -> Vec<u8> {
        let mut prefix = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut prefix);
        let mut skesk = vec![4, AES256, 3, HASH_SHA256];
        skesk.extend_from_slice(&self.salt);
        skesk.push(S2K_COUNT);

        let name = &file_name.as_bytes()[..file_name.len().min(255)];
        let mut literal = vec![b'u', name.len() as u8];
        literal.extend_from_slice(name);
        literal.extend_from_slice(&[0, 0, 0, 0]); // no date
        literal.extend_from_slice(data);

        let mut plain = Vec::with_capacity(18 + 2 + literal.len() + 22 + 3);
        plain.extend_from_slice(&prefix);
        plain.extend_from_slice(&prefix[14..16]);
        plain.extend(header(TAG_LITERAL, literal.len()));
        plain.extend_from_slice(&literal);
        plain.extend_from_slice(&MDC_HEADER);
        let mdc = Sha1::digest(&plain);
        plain.extend_from_slice(&mdc);
        cfb(AES256, &self.key, &mut plain, true);

        let mut out = header(TAG_SKESK, skesk.len());
        out.extend_from_slice(&skesk);
        out.extend(header(TAG_SEIPD, plain.len() + 1));
        out.push(1);
        out.extend_from_slice(&plain);
        out
    }
}

/// One message with a salt of its own.
pub fn encrypt(passphrase: &[u8], file_name: &str, data: &[u8]) -> Vec<u8> {
    Sealer::new(passphrase).encrypt(file_name, data)
}

pub fn decrypt(passphrase: &[u8], message: &[u8]) -> Result<Literal, Fail> {
    let (tag, skesk, rest) = packet(message)?;
    if tag != TAG_SKESK || skesk.len() < 4 || skesk[0] != 4 {
        return Err(Fail::Format(
            "it does not start with a v4 symmetric-key session packet",
        ));
    }
    let (algo, key_len) = match skesk[1] {
        AES128 => (AES128, 16),
        AES256 => (AES256, 32),
        _ => return Err(Fail::Format("its cipher is neither AES-128 nor AES-256")),
    };
    let (hash, mode) = (skesk[3], skesk[2]);
    let (salt, n, used) = match mode {
        0 => (None, 0, 4),
        1 if skesk.len() >= 12 => (Some(&skesk[4..12]), 0, 12),
        3 if skesk.len() >= 13 => (Some(&skesk[4..12]), count(skesk[12]), 13),
        _ => {
            return Err(Fail::Format(
                "its S2K is not simple, salted or iterated and salted",
            ));
        }
    };
    if skesk.len() != used {
        return Err(Fail::Format("it carries a separate session key"));
    }
    if hash != HASH_SHA1 && hash != HASH_SHA256 {
        return Err(Fail::Format("its S2K hash is neither SHA-1 nor SHA-256"));
    }
    let key = s2k(hash, salt, n, passphrase, key_len);
    let (tag, body, _) = packet(rest)?;
    if tag != TAG_SEIPD || body.first() != Some(&1) || body.len() < 1 + 18 + 22 {
        return Err(Fail::Format(
            "its data is not an integrity-protected packet",
        ));
    }
    let mut plain = body[1..].to_vec();
    cfb(algo, &key, &mut plain, false);
    if plain[14..16] != plain[16..18] {
        return Err(Fail::WrongKey);
    }
    let end = plain.len() - 20;
    if plain[end - 2..end] != MDC_HEADER || Sha1::digest(&plain[..end])[..] != plain[end..] {
        return Err(Fail::Tampered);
    }
    let (tag, lit, _) = packet(&plain[18..end - 2])?;
    match tag {
        TAG_LITERAL if lit.len() >= 6 && lit.len() >= 6 + lit[1] as usize => {
            let name_end = 2 + lit[1] as usize;
            Ok(Literal {
                file_name: lit[2..name_end].to_vec(),
                data: lit[name_end + 4..].to_vec(),
            })
        }
        TAG_COMPRESSED => Err(Fail::Format("its data is compressed")),
        _ => Err(Fail::Format("it holds no literal data packet")),
    }
}

/// A new-format packet header for a body of `len` bytes.
fn header(tag: u8, len: usize) -> Vec<u8> {
    let mut h = vec![0xC0 | tag];
    match len {
        0..=191 => h.push(len as u8),
        192..=8383 => {
            let l = len - 192;
            h.extend_from_slice(&[(l >> 8) as u8 + 192, l as u8]);
        }
        _ => {
            h.push(255);
            h.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }
    h
}

/// One packet: its tag, its body (partial body lengths joined) and what follows it.
fn packet(buf: &[u8]) -> Result<(u8, Vec<u8>, &[u8]), Fail> {
    const SHORT: Fail = Fail::Format("a packet is cut short");
    let first = *buf.first().ok_or(SHORT)?;
    if first & 0x80 == 0 {
        return Err(Fail::Format("a packet header is malformed"));
    }
    let take = |at: usize, n: usize| buf.get(at..at + n).ok_or(SHORT);
    if first & 0x40 == 0 {
        // Old format: the length's size is in the header byte.
        let tag = (first >> 2) & 0x0F;
        let (len, at) = match first & 3 {
            0 => (take(1, 1)?[0] as usize, 2),
            1 => (
                u16::from_be_bytes(take(1, 2)?.try_into().unwrap()) as usize,
                3,
            ),
            2 => (
                u32::from_be_bytes(take(1, 4)?.try_into().unwrap()) as usize,
                5,
            ),
            _ => (buf.len() - 1, 1),
        };
        return Ok((tag, take(at, len)?.to_vec(), &buf[at + len..]));
    }
    let tag = first & 0x3F;
    let (mut body, mut at) = (Vec::new(), 1);
    loop {
        let l0 = take(at, 1)?[0] as usize;
        let (len, partial, hdr) = match l0 {
            0..=191 => (l0, false, 1),
            192..=223 => (
                ((l0 - 192) << 8) + take(at + 1, 1)?[0] as usize + 192,
                false,
                2,
            ),
            255 => (
                u32::from_be_bytes(take(at + 1, 4)?.try_into().unwrap()) as usize,
                false,
                5,
            ),
            _ => (1usize << (l0 & 0x1F), true, 1),
        };
        body.extend_from_slice(take(at + hdr, len)?);
        at += hdr + len;
        if !partial {
            return Ok((tag, body, &buf[at..]));
        }
    }
}

/// The number of octets an iterated S2K hashes, from its coded count.
fn count(c: u8) -> usize {
    (16 + (c as usize & 15)) << ((c as usize >> 4) + 6)
}

/// RFC 4880 3.7.1: the key from the passphrase, `salt` and `count` octets hashed (at least
/// salt and passphrase once); longer keys than the digest use more contexts, each preloaded
/// with one more zero octet.
fn s2k(hash: u8, salt: Option<&[u8]>, count: usize, pass: &[u8], key_len: usize) -> Vec<u8> {
    let mut input = salt.unwrap_or_default().to_vec();
    input.extend_from_slice(pass);
    let total = count.max(input.len());
    let mut key = Vec::with_capacity(key_len);
    let mut zeros = 0;
    while key.len() < key_len {
        let feed = |update: &mut dyn FnMut(&[u8])| {
            for _ in 0..zeros {
                update(&[0]);
            }
            let mut left = total;
            while left > 0 {
                let n = left.min(input.len());
                update(&input[..n]);
                left -= n;
            }
        };
        if hash == HASH_SHA1 {
            let mut h = Sha1::new();
            feed(&mut |d| h.update(d));
            key.extend_from_slice(&h.finalize());
        } else {
            let mut h = Sha256::new();
            feed(&mut |d| h.update(d));
            key.extend_from_slice(&h.finalize());
        }
        zeros += 1;
    }
    key.truncate(key_len);
    key
}

/// OpenPGP CFB as the integrity-protected packet uses it: a zero IV, no resynchronisation.
fn cfb(algo: u8, key: &[u8], buf: &mut [u8], encrypt: bool) {
    let iv = [0u8; 16];
    macro_rules! run {
        ($c:ty) => {
            if encrypt {
                cfb_mode::Encryptor::<$c>::new_from_slices(key, &iv)
                    .expect("key and IV sizes")
                    .encrypt(buf)
            } else {
                cfb_mode::Decryptor::<$c>::new_from_slices(key, &iv)
                    .expect("key and IV sizes")
                    .decrypt(buf)
            }
        };
    }
    if algo == AES128 {
        run!(Aes128)
    } else {
        run!(Aes256)
    }
}

#[cfg(test)]
#[path = "openpgp_tests.rs"]
mod unit;
