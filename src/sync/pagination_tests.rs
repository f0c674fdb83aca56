use super::*;

/// Pages keyed by cursor; optional one-shot error on a given call number.
struct Script {
    calls: Vec<Option<String>>,
    fail_on_call: Option<(usize, PlaidError)>,
}

impl Script {
    /// Pages c0 → c3; call `n` (counted from 1) fails once with a Plaid error body.
    fn failing_on(n: usize, status: u16, error_type: &str, code: &str, request_id: &str) -> Script {
        let body = format!(
            r#"{{"error_type":"{error_type}","error_code":"{code}","error_message":"x","request_id":"{request_id}"}}"#
        );
        Script {
            calls: vec![],
            fail_on_call: Some((n, PlaidError::from_response(status, &body))),
        }
    }
}

impl FetchPage for Script {
    fn fetch(&mut self, cursor: Option<&str>, count: u32) -> Result<Response, PlaidError> {
        assert_eq!(count, 500);
        self.calls.push(cursor.map(str::to_string));
        if let Some((n, e)) = &self.fail_on_call {
            if *n == self.calls.len() {
                let e = e.clone();
                self.fail_on_call = None;
                return Err(e);
            }
        }
        let (next, more) = match cursor {
            None | Some("c0") => ("c1", true),
            Some("c1") => ("c2", true),
            Some("c2") => ("c3", false),
            other => panic!("unexpected cursor {other:?}"),
        };
        let body = format!(
            r#"{{"accounts":[],"added":[{{"transaction_id":"t{next}","amount":0.1}}],"modified":[],"removed":[],"next_cursor":"{next}","has_more":{more},"request_id":"r{}","transactions_update_status":"HISTORICAL_UPDATE_COMPLETE"}}"#,
            self.calls.len()
        );
        Ok(Response {
            body,
            request_id: format!("r{}", self.calls.len()),
            raw: None,
        })
    }
}

#[derive(Default)]
struct Sink {
    pages: Vec<(u32, String)>,
    discards: u32,
}
impl Pages for Sink {
    fn keep(&mut self, page: u32, response: &Response, _read: &SyncPage, _last: bool) {
        self.pages.push((page, response.body.to_string()));
    }
    fn discard(&mut self) {
        self.pages.clear();
        self.discards += 1;
    }
}

#[test]
fn pages_until_has_more_is_false() {
    let mut s = Script {
        calls: vec![],
        fail_on_call: None,
    };
    let mut sink = Sink::default();
    let sum = sync_pages(&mut s, &mut sink, Some("c0")).unwrap();
    assert_eq!(sum.pages, 3);
    assert_eq!(sum.added, 3);
    assert_eq!(sum.next_cursor.as_deref(), Some("c3"));
    assert_eq!(sink.pages.len(), 3);
    assert_eq!(
        s.calls,
        vec![Some("c0".into()), Some("c1".into()), Some("c2".into())]
    );
}

#[test]
fn mutation_on_page_three_restarts_from_the_first_cursor() {
    let mut s = Script::failing_on(
        3,
        400,
        "TRANSACTIONS_ERROR",
        "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION",
        "m1",
    );
    let mut sink = Sink::default();
    let sum = sync_pages(&mut s, &mut sink, Some("c0")).unwrap();
    assert_eq!(sum.restarts, 1);
    assert_eq!(sink.discards, 1);
    assert_eq!(sink.pages.len(), 3, "only the clean attempt's pages remain");
    // The fourth call starts again from c0, not from the failing page's cursor.
    assert_eq!(s.calls[3], Some("c0".into()));
    assert!(sum.request_ids.contains(&"m1".to_string()));
}

#[test]
fn other_errors_stop_the_loop() {
    let mut s = Script::failing_on(2, 500, "API_ERROR", "INTERNAL_SERVER_ERROR", "e1");
    let mut sink = Sink::default();
    let (err, sum) = sync_pages(&mut s, &mut sink, None).unwrap_err();
    assert_eq!(err.class(), Class::Transient);
    assert_eq!(sum.pages, 1);
}

#[test]
fn truncated_json_is_a_transient_decode_error() {
    struct Trunc;
    impl FetchPage for Trunc {
        fn fetch(&mut self, _: Option<&str>, _: u32) -> Result<Response, PlaidError> {
            Ok(Response {
                body: r#"{"added":[{"transaction_id":"#.into(),
                request_id: "x".into(),
                raw: None,
            })
        }
    }
    let (err, _) = sync_pages(&mut Trunc, &mut Sink::default(), None).unwrap_err();
    assert_eq!(err.class(), Class::Transient);
}

#[test]
fn the_spec_example_page_is_read() {
    struct Spec;
    impl FetchPage for Spec {
        fn fetch(&mut self, _: Option<&str>, _: u32) -> Result<Response, PlaidError> {
            let body = include_str!("../../tests/fixtures/plaid/transactions_sync.json");
            Ok(Response {
                body: body.into(),
                request_id: "Wvhy9PZHQLV8njG".into(),
                raw: None,
            })
        }
    }
    let mut sink = Sink::default();
    let sum = sync_pages(&mut Spec, &mut sink, Some("old")).unwrap();
    assert_eq!(
        (sum.pages, sum.added, sum.modified, sum.removed),
        (1, 1, 1, 1)
    );
    assert!(
        sum.next_cursor
            .unwrap()
            .starts_with("tVUUL15lYQN5rBnfDIc1I8xudpGdIlw9nsgeXWvhOfkECvUeR663i3Dt1uf/94S8")
    );
    assert_eq!(
        sum.update_status.as_deref(),
        Some("HISTORICAL_UPDATE_COMPLETE")
    );
    // The page is kept as Plaid sent it: amounts are still the original digits.
    assert!(sink.pages[0].1.contains(r#""amount":72.1"#));
}

#[test]
fn not_ready_keeps_no_cursor() {
    struct NotReady;
    impl FetchPage for NotReady {
        fn fetch(&mut self, _: Option<&str>, _: u32) -> Result<Response, PlaidError> {
            Ok(Response { body: r#"{"accounts":[],"added":[],"modified":[],"removed":[],"next_cursor":"","has_more":false,"transactions_update_status":"NOT_READY","request_id":"n"}"#.into(), request_id: "n".into(), raw: None })
        }
    }
    let sum = sync_pages(&mut NotReady, &mut Sink::default(), None).unwrap();
    assert_eq!(sum.next_cursor, None);
    assert_eq!(sum.update_status.as_deref(), Some("NOT_READY"));
}
