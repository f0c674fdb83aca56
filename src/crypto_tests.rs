use super::*;

const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const K2: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="; // base64 of 32 bytes

fn ring(cur: &str, prev: Option<&str>) -> Keyring {
    Keyring::from_settings(Some(cur), prev).unwrap()
}

#[test]
fn round_trip_and_fresh_salt() {
    let r = ring(K1, None);
    let a = r.encrypt("item1", "access-sandbox-abc");
    let b = r.encrypt("item1", "access-sandbox-abc");
    assert_ne!(
        a, b,
        "two encryptions must use different salts and prefixes"
    );
    assert!(openpgp::looks_like(&a));
    assert_eq!(r.decrypt("item1", &a).unwrap(), "access-sandbox-abc");
    // The passphrase is the key's text as configured: what a DBA gives pgcrypto.
    let lit = openpgp::decrypt(K1.as_bytes(), &a).unwrap();
    assert_eq!(
        (lit.file_name, lit.data),
        (b"item1".to_vec(), b"access-sandbox-abc".to_vec())
    );
}

#[test]
fn an_envelope_without_a_file_name_opens_for_any_item() {
    // As pgcrypto writes it: no file name, so no Item to check.
    let r = ring(K1, None);
    let a = openpgp::encrypt(K1.as_bytes(), "", b"access-sandbox-abc");
    assert_eq!(r.decrypt("item7", &a).unwrap(), "access-sandbox-abc");
}

#[test]
fn envelopes_of_0_2_0_still_open_and_rotate() {
    let r = ring(K1, None);
    let old = encrypt_with(&r.current, "item1", "access-sandbox-abc");
    assert_eq!(old.len(), 1 + 8 + 12 + "access-sandbox-abc".len() + 16);
    assert_eq!(r.decrypt("item1", &old).unwrap(), "access-sandbox-abc");
    assert!(r.decrypt("item2", &old).is_err());
    // Same key, old format: rotation rewrites it.
    assert!(!r.is_current("item1", &old));
    let new = ring(K2, Some(K1));
    assert_eq!(new.decrypt("item1", &old).unwrap(), "access-sandbox-abc");
}

#[test]
fn other_item_does_not_decrypt() {
    let r = ring(K1, None);
    let a = r.encrypt("item1", "access-sandbox-abc");
    let e = r.decrypt("item2", &a).unwrap_err();
    assert_eq!(e.sqlstate(), "22023");
    assert!(!e.message().contains("access-sandbox"));
}

#[test]
fn tampering_is_detected() {
    let r = ring(K1, None);
    let mut a = r.encrypt("item1", "access-sandbox-abc");
    let last = a.len() - 1;
    a[last] ^= 1;
    assert!(r.decrypt("item1", &a).is_err());
}

#[test]
fn rotation_keeps_old_tokens_readable() {
    let old = ring(K1, None);
    let a = old.encrypt("item1", "access-sandbox-abc");
    let new = ring(K2, Some(&format!(" {K1} ")));
    assert!(!new.is_current("item1", &a));
    assert_eq!(new.decrypt("item1", &a).unwrap(), "access-sandbox-abc");
    let b = new.encrypt("item1", "access-sandbox-abc");
    assert!(new.is_current("item1", &b));
    // pgcrypto's own (no file name) opens, and rotation binds it to its Item.
    let p = openpgp::encrypt(K2.as_bytes(), "", b"access-sandbox-abc");
    assert!(!new.is_current("item1", &p));
    // Without the old key the old envelope is refused, naming no token.
    let e = ring(K2, None).decrypt("item1", &a).unwrap_err();
    assert_eq!(e.sqlstate(), "55000");
    assert!(!e.message().contains("access-sandbox"));
}

#[test]
fn key_parsing() {
    assert!(Key::parse(K1, "k").is_ok());
    assert!(Key::parse(K2, "k").is_ok());
    for bad in ["", "abc", &K1[..62], "zz", "QUJD"] {
        let e = Key::parse(bad, "plaid_sync.encryption_key").unwrap_err();
        assert_eq!(e.sqlstate(), "22023");
    }
    let e = Keyring::from_settings(None, None).unwrap_err();
    assert_eq!(e.sqlstate(), "55000");
    let e = Keyring::from_settings(Some("  "), None).unwrap_err();
    assert_eq!(e.sqlstate(), "55000");
    let e = Keyring::from_settings(Some(K1), Some("nope")).unwrap_err();
    assert_eq!(e.sqlstate(), "22023");
    assert!(!format!("{:?}", Key::parse(K1, "k").unwrap()).contains("0001020304"));
}
