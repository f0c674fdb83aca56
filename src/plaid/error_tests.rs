use super::*;

fn err(status: u16, body: &str) -> PlaidError {
    PlaidError::from_response(status, body)
}

#[test]
fn product_errors_name_a_product_state_and_item_errors_do_not() {
    // A real liabilities sample, and the product codes of docs/plaid.md, Errors.
    let unsupported = err(
        400,
        r#"{"error_type":"ITEM_ERROR","error_code":"PRODUCTS_NOT_SUPPORTED","error_message":"the following products are not supported by this institution: [\"liabilities\"]","display_message":null,"documentation_url":"https://plaid.com/docs/?ref=error#item-errors","request_id":"dTnnm60WgKGLnKL","suggested_action":null}"#,
    );
    assert_eq!(unsupported.product_state(), Some(ProductState::Unsupported));
    let cases = [
        ("PRODUCT_NOT_READY", Some(ProductState::NotReady)),
        ("NO_INVESTMENT_ACCOUNTS", Some(ProductState::NoAccounts)),
        ("NO_LIABILITY_ACCOUNTS", Some(ProductState::NoAccounts)),
        (
            "ADDITIONAL_CONSENT_REQUIRED",
            Some(ProductState::NeedsConsent),
        ),
        ("INVALID_PRODUCT", Some(ProductState::Unsupported)),
        ("ITEM_LOGIN_REQUIRED", None),
        ("INVALID_ACCESS_TOKEN", None),
        ("INTERNAL_SERVER_ERROR", None),
    ];
    for (code, state) in cases {
        let e = err(
            400,
            &format!(r#"{{"error_type":"ITEM_ERROR","error_code":"{code}"}}"#),
        );
        assert_eq!(e.product_state(), state, "{code}");
    }
    assert_eq!(PlaidError::Transport("x".into()).product_state(), None);
    assert_eq!(ProductState::NoAccounts.label(), "no_accounts");
}

#[test]
fn documented_samples_are_classified() {
    // Plaid's documented error samples (https://plaid.com/docs/errors/), verbatim.
    let mutation = err(
        400,
        r#"{"error_type":"TRANSACTIONS_ERROR","error_code":"TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION","error_message":"Underlying transaction data changed since last page was fetched. Please restart pagination from last update.","display_message":null,"request_id":"HNTDNrA8F1shFEW"}"#,
    );
    assert_eq!(mutation.class(), Class::MutationDuringPagination);
    assert_eq!(mutation.request_id(), Some("HNTDNrA8F1shFEW"));
    let login = err(
        400,
        r#"{"error_type":"ITEM_ERROR","error_code":"ITEM_LOGIN_REQUIRED","error_message":"the login details of this item have changed","display_message":null,"request_id":"HNTDNrA8F1shFEW"}"#,
    );
    assert_eq!(login.class(), Class::ItemState("login_required"));
    let token = err(
        400,
        r#"{"error_type":"INVALID_INPUT","error_code":"INVALID_ACCESS_TOKEN","error_message":"could not find matching access token","display_message":null,"request_id":"HNTDNrA8F1shFEW"}"#,
    );
    assert_eq!(token.class(), Class::ItemState("invalid_token"));
    let rate = err(
        429,
        r#"{"error_type":"RATE_LIMIT_EXCEEDED","error_code":"TRANSACTIONS_SYNC_LIMIT","error_message":"rate limit exceeded","display_message":null,"request_id":"HNTDNrA8F1shFEW"}"#,
    );
    assert_eq!(rate.class(), Class::Transient);
    let internal = err(
        500,
        r#"{"error_type":"API_ERROR","error_code":"INTERNAL_SERVER_ERROR","error_message":"an unexpected error occurred","display_message":null,"request_id":"HNTDNrA8F1shFEW"}"#,
    );
    assert_eq!(internal.class(), Class::Transient);
    let down = err(
        400,
        r#"{"error_type":"INSTITUTION_ERROR","error_code":"INSTITUTION_DOWN","error_message":"this institution is not currently responding","display_message":"x","request_id":"HNTDNrA8F1shFEW"}"#,
    );
    assert_eq!(down.class(), Class::Transient);
    let keys = err(
        400,
        r#"{"error_type":"INVALID_INPUT","error_code":"INVALID_API_KEYS","error_message":"invalid client_id or secret provided","display_message":null,"request_id":"x"}"#,
    );
    assert_eq!(keys.class(), Class::Fatal);
    // Unknown codes of a known retryable type, and bodies that are not envelopes.
    assert_eq!(
        err(
            429,
            r#"{"error_type":"RATE_LIMIT_EXCEEDED","error_code":"SOMETHING_NEW"}"#
        )
        .class(),
        Class::Transient
    );
    assert_eq!(
        err(502, "<html>bad gateway</html>").class(),
        Class::Transient
    );
    assert_eq!(err(404, "not json").class(), Class::Fatal);
    assert_eq!(
        PlaidError::Transport("timed out".into()).class(),
        Class::Transient
    );
    assert!(
        mutation
            .to_string()
            .contains("TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION")
    );
}
