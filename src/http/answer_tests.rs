use super::*;

fn req<'a>(method: &'a str, secret: Option<&'a [u8]>, body: &'a [u8]) -> Request<'a> {
    Request {
        method,
        secret,
        verification: Some("eyJ.header.sig"),
        body,
    }
}

#[test]
fn a_request_with_the_secret_is_the_backends_notice() {
    let r = route(&req("POST", Some(b"s3cret"), b"{}"), Some("s3cret"));
    assert_eq!(r, Ok(Call::Notify("{}".into())));
}

#[test]
fn a_request_without_a_secret_header_is_plaids_webhook() {
    let r = route(&req("POST", None, b"{\"a\":1}"), Some("s3cret"));
    assert_eq!(
        r,
        Ok(Call::Webhook(
            "{\"a\":1}".into(),
            Some("eyJ.header.sig".into())
        ))
    );
}

#[test]
fn a_wrong_empty_or_unset_secret_is_401() {
    for (given, set) in [
        (&b"s3cre"[..], Some("s3cret")),
        (b"s3cret!", Some("s3cret")),
        (b"", Some("s3cret")),
        (b"", Some("")),
        (b"s3cret", None),
        (b"", None),
    ] {
        let r = route(&req("POST", Some(given), b"{}"), set);
        assert_eq!(r.unwrap_err().status, 401, "{given:?} against {set:?}");
    }
}

#[test]
fn only_post_and_utf8_bodies_are_taken() {
    assert_eq!(route(&req("GET", None, b""), None).unwrap_err().status, 405);
    assert_eq!(
        route(&req("PUT", Some(b"x"), b"{}"), Some("x"))
            .unwrap_err()
            .status,
        405
    );
    assert_eq!(
        route(&req("POST", None, b"\xff\xfe"), None)
            .unwrap_err()
            .status,
        400
    );
}

#[test]
fn refusals_map_by_sqlstate() {
    assert_eq!(refused("22023", "bad").status, 400);
    assert_eq!(refused("22P02", "bad").status, 400);
    assert_eq!(refused("55000", "no key").status, 503);
    assert_eq!(refused("40001", "again").status, 503);
    let a = refused("22023", "item_id is missing");
    assert_eq!(a.body, r#"{"error":"item_id is missing"}"#);
}

#[test]
fn answers_are_json() {
    assert_eq!(Answer::stored(42).body, r#"{"inbox_id":42}"#);
    assert_eq!(Answer::too_large().status, 413);
    assert_eq!(Answer::too_slow().status, 408);
    assert_eq!(Answer::unavailable("standby").status, 503);
}
