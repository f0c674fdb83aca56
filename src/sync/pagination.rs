//! The `/transactions/sync` loop Plaid requires (API_NOTES §4.3): page from the stored cursor
//! until `has_more` is false; on TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION throw the pages
//! away and restart from the cursor the loop started with. Pages are handed to a `Pages` sink
//! as they arrive (the caller stages them in a table), so memory holds one page at a time.

use crate::plaid::sync_page::SyncPage;
use crate::plaid::{Class, PlaidError, Response};

pub const PAGE_SIZE: u32 = 500;
/// Plaid's tutorial retries the whole loop 3 times; we allow a few more before giving up
/// (the job is then retried later with backoff).
pub const MAX_RESTARTS: u32 = 5;

/// Fetches one page.
pub trait FetchPage {
    fn fetch(&mut self, cursor: Option<&str>, count: u32) -> Result<Response, PlaidError>;
}

/// Receives pages in order, each with its fields read (`last`: the loop ends with this one,
/// unless Plaid's next answer is an error); `discard` drops all pages received so far.
pub trait Pages {
    fn keep(&mut self, page: u32, response: &Response, read: &SyncPage, last: bool);
    fn discard(&mut self);
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub pages: u32,
    pub restarts: u32,
    pub added: u64,
    pub modified: u64,
    pub removed: u64,
    /// `None` when Plaid has no data yet (`next_cursor: ""`): keep the old cursor.
    pub next_cursor: Option<String>,
    pub update_status: Option<String>,
    pub request_ids: Vec<String>,
}

/// Runs the loop. On error the sink may hold pages of the failed attempt; the caller discards
/// them with the run.
pub fn sync_pages(
    fetch: &mut dyn FetchPage,
    sink: &mut dyn Pages,
    start: Option<&str>,
) -> Result<Summary, (PlaidError, Summary)> {
    let mut restarts = 0;
    let mut request_ids = Vec::new();
    'restart: loop {
        let mut summary = Summary {
            restarts,
            ..Summary::default()
        };
        let mut cursor = start.map(str::to_string);
        loop {
            let page = match fetch.fetch(cursor.as_deref(), PAGE_SIZE) {
                Ok(p) => p,
                Err(e) => {
                    if let Some(r) = e.request_id() {
                        request_ids.push(r.to_string());
                    }
                    if e.class() == Class::MutationDuringPagination && restarts < MAX_RESTARTS {
                        restarts += 1;
                        sink.discard();
                        continue 'restart;
                    }
                    summary.request_ids = request_ids;
                    return Err((e, summary));
                }
            };
            request_ids.push(page.request_id.clone());
            let control = match SyncPage::parse(&page.body) {
                Ok(c) => c,
                Err(e) => {
                    summary.request_ids = request_ids;
                    return Err((
                        PlaidError::Decode(format!("/transactions/sync: {e}")),
                        summary,
                    ));
                }
            };
            summary.pages += 1;
            summary.added += control.added.len() as u64;
            summary.modified += control.modified.len() as u64;
            summary.removed += control.removed.len() as u64;
            summary.update_status = control.update_status.clone();
            let last = control.next_cursor.is_empty() || !control.has_more;
            sink.keep(summary.pages, &page, &control, last);
            if control.next_cursor.is_empty() {
                summary.next_cursor = None; // no data yet: nothing to page through
                break;
            }
            cursor = Some(control.next_cursor.clone());
            if !control.has_more {
                summary.next_cursor = cursor;
                break;
            }
        }
        summary.request_ids = request_ids;
        return Ok(summary);
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    /// Pages keyed by cursor; optional one-shot error on a given call number.
    struct Script {
        calls: Vec<Option<String>>,
        fail_on_call: Option<(usize, PlaidError)>,
    }

    impl Script {
        /// Pages c0 → c3; call `n` (counted from 1) fails once with a Plaid error body.
        fn failing_on(
            n: usize,
            status: u16,
            error_type: &str,
            code: &str,
            request_id: &str,
        ) -> Script {
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
}
