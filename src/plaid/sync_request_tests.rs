use super::*;

fn opts(desc: bool, pfc: Option<&str>, days: i32) -> SyncOptions {
    SyncOptions {
        include_original_description: desc,
        personal_finance_category_version: pfc.map(String::from),
        days_requested: days,
    }
}

#[test]
fn every_call_says_whether_to_include_the_bank_text() {
    let b = sync_body("t", Some("c1"), 100, &opts(false, None, 730), false);
    assert_eq!(b["options"]["include_original_description"], false);
    assert_eq!(b["cursor"], "c1");
    let b = sync_body("t", None, 100, &opts(true, None, 730), false);
    assert_eq!(b["options"]["include_original_description"], true);
    assert!(b.get("cursor").is_none());
}

#[test]
fn the_taxonomy_is_sent_only_when_chosen() {
    let b = sync_body("t", None, 5, &opts(false, None, 730), false);
    assert!(
        b["options"]
            .get("personal_finance_category_version")
            .is_none()
    );
    let b = sync_body("t", None, 5, &opts(false, Some("v2"), 730), false);
    assert_eq!(b["options"]["personal_finance_category_version"], "v2");
}

#[test]
fn days_requested_only_on_the_call_that_initialises_transactions() {
    let o = opts(false, None, 120);
    assert_eq!(
        sync_body("t", None, 5, &o, true)["options"]["days_requested"],
        120
    );
    assert_eq!(
        sync_body("t", Some(""), 5, &o, true)["options"]["days_requested"],
        120
    );
    // A later page of that first sync, or an Item that already has Transactions: no effect.
    assert!(
        sync_body("t", Some("c"), 5, &o, true)["options"]
            .get("days_requested")
            .is_none()
    );
    assert!(
        sync_body("t", None, 5, &o, false)["options"]
            .get("days_requested")
            .is_none()
    );
}

#[test]
fn only_plaid_taxonomies_pass() {
    assert!(check_pfc_version("").is_ok());
    assert!(check_pfc_version("v1").is_ok());
    assert!(check_pfc_version("v2").is_ok());
    assert!(check_pfc_version("v3").unwrap_err().contains("v1 or v2"));
}
