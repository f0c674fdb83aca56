//! The `/transactions/sync` loop Plaid requires (docs/plaid.md, Pagination): page from the stored cursor
//! until `has_more` is false; on TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION throw the pages
//! away and restart from the cursor the loop started with. Pages are handed to a `Pages` sink
//! as they arrive (the caller stages them in a table), so memory holds one page at a time.

use crate::codec::sync_page::SyncPage;
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
#[path = "pagination_tests.rs"]
mod unit;
