use super::*;

#[test]
fn defaults_are_the_production_table() {
    let l = parse("").unwrap();
    assert_eq!(
        l[index("/transactions/sync").unwrap()],
        (Some(2_500), Some(50))
    );
    assert_eq!(
        l[index("/institutions/get_by_id").unwrap()],
        (Some(400), None)
    );
    assert_eq!(l[index("/item/webhook/update").unwrap()], (None, None));
}

#[test]
fn an_entry_overrides_only_its_endpoint() {
    let l = parse(" /transactions/sync=100/10 , /item/get=-/5").unwrap();
    assert_eq!(
        l[index("/transactions/sync").unwrap()],
        (Some(100), Some(10))
    );
    assert_eq!(l[index("/item/get").unwrap()], (None, Some(5)));
    assert_eq!(l[index("/accounts/get").unwrap()], (Some(15_000), Some(15)));
}

#[test]
fn bad_settings_say_what_is_wrong() {
    assert!(
        parse("/transactions/sync")
            .unwrap_err()
            .contains("not <endpoint>=")
    );
    assert!(parse("/nope=1/1").unwrap_err().contains("unknown endpoint"));
    assert!(
        parse("/item/get=5")
            .unwrap_err()
            .contains("<per client>/<per Item>")
    );
    assert!(
        parse("/item/get=0/1")
            .unwrap_err()
            .contains("calls per minute")
    );
    assert!(
        parse("/item/get=x/1")
            .unwrap_err()
            .contains("calls per minute")
    );
}
