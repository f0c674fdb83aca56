use super::*;

#[test]
fn coded_counts_are_rfc_4880s() {
    assert_eq!(count(0), 1024);
    assert_eq!(count(0x60), 65536);
    assert_eq!(count(0xFF), 65_011_712);
}

#[test]
fn round_trip_binds_the_file_name() {
    let m = encrypt(b"pass", "item-1", b"access-sandbox-x");
    let lit = decrypt(b"pass", &m).unwrap();
    assert_eq!(lit.file_name, b"item-1");
    assert_eq!(lit.data, b"access-sandbox-x");
    assert!(looks_like(&m));
}

#[test]
fn a_wrong_key_and_a_changed_byte_are_told_apart() {
    let m = encrypt(b"pass", "item-1", b"access-sandbox-x");
    let wrong = (0..20)
        .map(|i| decrypt(format!("nope{i}").as_bytes(), &m))
        .filter(|r| *r == Err(Fail::WrongKey))
        .count();
    assert!(wrong >= 19, "the quick check catches a wrong key");
    for at in 30..m.len() {
        let mut bad = m.clone();
        bad[at] ^= 0x40;
        assert!(decrypt(b"pass", &bad).is_err(), "byte {at} changed");
    }
}

#[test]
fn long_bodies_use_two_and_five_octet_lengths() {
    for len in [100, 300, 9000] {
        let data = vec![b'a'; len];
        let m = encrypt(b"k", "i", &data);
        assert_eq!(decrypt(b"k", &m).unwrap().data, data);
    }
}

#[test]
fn partial_body_lengths_are_joined() {
    // A 600-byte body sent as 512 + 88, as a streaming writer does.
    let body: Vec<u8> = (0..600u32).map(|i| i as u8).collect();
    let mut m = vec![0xC0 | TAG_LITERAL, 0xE0 | 9];
    m.extend_from_slice(&body[..512]);
    m.push(88);
    m.extend_from_slice(&body[512..]);
    m.push(0x42);
    let (tag, got, rest) = packet(&m).unwrap();
    assert_eq!((tag, got, rest), (TAG_LITERAL, body, &[0x42][..]));
}

#[test]
fn cut_or_foreign_messages_are_refused() {
    let m = encrypt(b"k", "i", b"t");
    for n in [0, 1, 5, 20, m.len() - 1] {
        assert!(decrypt(b"k", &m[..n]).is_err(), "cut at {n}");
    }
    assert!(!looks_like(b"\x01abc"));
}

/// Written by pgcrypto (PostgreSQL 15): `pgp_sym_encrypt('access-sandbox-0123abcd-pgcrypto',
/// 'the-passphrase', 'cipher-algo=aes256, s2k-digest-algo=sha256')`.
const PGCRYPTO_AES256: &str = "c30d0409030854fe7f38d197a7a16fd25101363ec4bcad21381b14acd0222e9f472473a6e59cad023e47d1ae30670c1e1d0d791f8122986ea2e041bbd166d57444d7ac6b8463104935e8d0c3d4e593fb789b265fcad3adde9ce332e0fea8742fff26";
/// `pgp_sym_encrypt(repeat('long-token-', 60), 'the-passphrase')`: pgcrypto's defaults,
/// AES-128 and an S2K with SHA-1.
const PGCRYPTO_DEFAULTS: &str = "c30d04070302e69219fa1dda577b6bd2c2060189f6440bbb7b47c73e85e9df0441625ef19ca69a178ef8858f02d38a4e66ea818ab92402fbeaf4903c8bac4b4b443a0a0733655725fc0db974d62eae8147cf648b5dbb62a7f75ca4d372fde2ab611b00f1a0fafde6787862020d5c05b85a361e823bdddad52501b31d60e39313b9b058a670996e51b0e78147e6192cfcad84732c8c875f91499507366e5619084ffc72cf4a7b37f9f2fa9e23a90fff7d7023998a69dc249005316772f2ce3b925aa966793a329baee7570ebdd72a801a25642c1027e581e49029022cfa9163695f950acae32f0c10b3778e8632f78906512251f6241a85db896ec98c5a97658da974e414f019c7c47d6526366503f15eb34c31003288cc22d59a649b34853fc4de855516aa17a080fcfb9a84e458fc6833f3db5d4745a4778c0f9a59eeff2ef987d716ce8884292dfe02288bf4713e089437b97d370537461169742f1477856c094890081930fa5c3fb593df1c07112e6a02e057f06ec612d7728b270c532987ebde30c921c1cb2ac1dc56a49631f40c7f2d565aa87196b25b7dd796bda82954a836b12f700e09fa899d33648a98041b0940d5514e2872839c071240956f650db372699b2500977fff9013b4ae285b98ddd2fa9de0f93005fc474353a96ba89be283de19b3e2b489ff186692db2c0c116ad50988c8b190647d3c95142087d7d43ef324dfb5fc9d75e1b6ff20712cfd373d56df4c22452194f7bf807042b0d570d08d6c6a66fcd8f9961f45b9b3a1824b4f00658998920a0b64cfb761dcab22c8748fd7aa57093b7b339c2ffdbf99d8fddd257863b0365b5484fc62409883d2aebe0ee140f887a7bbedd3fd257754e9ad283d4e929b1737ca5be65935fd9d871ef046a2cd9c11aa7e15644c8e1aaed0b3cef5f257855f6ff8d03602b5eb52c5f5539922b30c1f4453de80cf161ed3bcab295a0cde48b8b8d0ec4b0448e74ac4bc54b45a527c761b130499a288fce6f09186ef69db8d1a5e53";

#[test]
fn pgcrypto_messages_open() {
    let lit = decrypt(b"the-passphrase", &hex::decode(PGCRYPTO_AES256).unwrap()).unwrap();
    assert_eq!(lit.data, b"access-sandbox-0123abcd-pgcrypto");
    assert!(lit.file_name.is_empty());
    let lit = decrypt(b"the-passphrase", &hex::decode(PGCRYPTO_DEFAULTS).unwrap()).unwrap();
    assert_eq!(lit.data, "long-token-".repeat(60).as_bytes());
    assert_eq!(
        decrypt(b"not-it", &hex::decode(PGCRYPTO_AES256).unwrap()),
        Err(Fail::WrongKey)
    );
}

#[test]
fn one_sealer_writes_distinct_messages_that_each_open() {
    let sealer = Sealer::new(b"pass");
    let a = sealer.encrypt("item-1", b"access-sandbox-1");
    let b = sealer.encrypt("item-1", b"access-sandbox-1");
    assert_ne!(a, b, "each message has its own random prefix");
    assert_eq!(
        a[..16],
        b[..16],
        "the session packet (its salt) is the sealer's"
    );
    for m in [a, b] {
        let lit = decrypt(b"pass", &m).unwrap();
        assert_eq!(lit.data, b"access-sandbox-1");
        assert_eq!(lit.file_name, b"item-1");
    }
}
