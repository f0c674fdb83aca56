use super::*;

#[test]
fn the_signature_is_hmac_sha256_of_t_dot_body() {
    // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
    let s = signature("Jefe", 0, "what do ya want for nothing?");
    let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
    mac.update(b"0.what do ya want for nothing?");
    assert_eq!(
        s,
        format!("t=0,v1={}", hex::encode(mac.finalize().into_bytes()))
    );
    // The primitive itself, against the RFC's vector.
    let mut rfc = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
    rfc.update(b"what do ya want for nothing?");
    assert_eq!(
        hex::encode(rfc.finalize().into_bytes()),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    // A fixed vector of our own header (computed with Python's hmac module).
    assert_eq!(
        signature("whsec", 1700000000, "{}"),
        "t=1700000000,v1=7d44587dddbaf4c7f70fef20f48cd594834ffea1641e3ac227b84408298738af"
    );
}

#[test]
fn backoff_doubles_with_jitter_up_to_an_hour() {
    assert_eq!(backoff_s(1, 0.5), 1.0);
    assert_eq!(backoff_s(2, 0.5), 2.0);
    assert_eq!(backoff_s(4, 0.5), 8.0);
    assert_eq!(backoff_s(40, 0.5), 3600.0);
    assert!((backoff_s(3, 0.0) - 3.2).abs() < 1e-9);
    assert!((backoff_s(3, 0.999_999) - 4.8).abs() < 1e-3);
}
