//! The pages of a sync run: the last one held in memory until the apply, earlier ones held
//! too while they are few (src/sync/transactions.rs), and staged in `sync_pages` past that
//! (so memory stays bounded however large the run).

use std::cell::OnceCell;

use pgrx::datum::DatumWithOid;

use crate::database::{ParsedJson, run};

/// A page of a run held in memory instead of staged: a sync that fits in a few pages (most of
/// them) leaves no row, and so no dead space, in sync_pages.
pub struct HeldPage {
    pub page: i32,
    pub body: String,
    pub request_id: String,
    pub raw_objects: Option<String>,
    /// Its new transactions as COPY text, when the page only adds ones that fit.
    pub copy: Option<crate::codec::copy_text::Rows>,
    /// Its `accounts` array, as sent.
    pub accounts: Option<String>,
}

/// The last page, parsed once for every statement of the apply that reads it, and only if
/// one does (a copied run never parses it).
pub struct Last<'a> {
    page: Option<&'a HeldPage>,
    body: OnceCell<Option<ParsedJson>>,
    raw: OnceCell<Option<ParsedJson>>,
}

impl<'a> Last<'a> {
    pub fn parse(last: Option<&'a HeldPage>) -> Self {
        Last {
            page: last,
            body: OnceCell::new(),
            raw: OnceCell::new(),
        }
    }

    /// `args` followed by the four the `pages` relation reads.
    pub(super) fn with(&self, args: Vec<DatumWithOid<'a>>) -> Vec<DatumWithOid<'a>> {
        let body = *self
            .body
            .get_or_init(|| self.page.map(|l| ParsedJson::parse(&l.body)));
        let raw = *self.raw.get_or_init(|| {
            self.page
                .and_then(|l| l.raw_objects.as_deref())
                .map(ParsedJson::parse)
        });
        let mut all = args;
        all.push(self.page.map(|l| l.page).into());
        all.push(ParsedJson::arg(body));
        all.push(ParsedJson::arg(raw));
        all.push(self.page.map(|l| l.request_id.as_str()).into());
        all
    }
}

/// A run's pages as one relation, the staged ones and the last: `$1` is the run and the four
/// numbers are the parameters of the last page's number, body, raw_objects and request_id
/// (`Last::with` appends them, in that order).
macro_rules! pages_relation {
    ($a:literal, $b:literal, $c:literal, $d:literal) => {
        concat!(
            "(SELECT page, coalesce(body, body_text::jsonb) AS body, raw_objects, request_id
                FROM plaid_sync.sync_pages WHERE sync_run_id = $1
              UNION ALL
              SELECT $",
            $a,
            "::int, $",
            $b,
            "::jsonb, $",
            $c,
            "::jsonb, $",
            $d,
            "::text WHERE $",
            $b,
            "::jsonb IS NOT NULL)"
        )
    };
}

pub(super) use pages_relation as pages;

/// Stages one page of a sync in progress.
/// `raw_objects` holds the objects that had to change to become jsonb, as Plaid sent them;
/// `copy_rows` the page's new transactions as COPY text, when it can be copied.
pub fn stage_page(
    run_id: i64,
    page: i32,
    body: &str,
    request_id: &str,
    raw_objects: Option<&str>,
    copy_rows: Option<&str>,
) {
    // A page that can be copied is not parsed into jsonb unless the copy fails.
    let sql = if copy_rows.is_some() {
        "INSERT INTO plaid_sync.sync_pages (sync_run_id, page, body_text, request_id, raw_objects, copy_rows)
         VALUES ($1, $2, $3, $4, $5::jsonb, $6)"
    } else {
        "INSERT INTO plaid_sync.sync_pages (sync_run_id, page, body, request_id, raw_objects, copy_rows)
         VALUES ($1, $2, $3::jsonb, $4, $5::jsonb, $6)"
    };
    run(
        sql,
        &[
            run_id.into(),
            page.into(),
            body.into(),
            request_id.into(),
            raw_objects.into(),
            copy_rows.into(),
        ],
    );
}

/// Stages pages that were held in memory (past a run's allowance, or for the SQL apply).
pub fn stage_held<'a>(run_id: i64, pages: impl Iterator<Item = &'a HeldPage>) {
    for p in pages {
        stage_page(
            run_id,
            p.page,
            &p.body,
            &p.request_id,
            p.raw_objects.as_deref(),
            p.copy.as_ref().map(|c| c.text.as_str()),
        );
    }
}

pub fn discard_pages(run_id: i64) {
    run(
        "DELETE FROM plaid_sync.sync_pages WHERE sync_run_id = $1",
        &[run_id.into()],
    );
}

/// The staged pages of runs being deleted. Pages stay on the workers' node while runs go with
/// their Item (plaid_sync.distribute()): no foreign key cascades from one to the other.
pub fn discard_pages_of(run_ids: &[i64]) {
    if !run_ids.is_empty() {
        run(
            "DELETE FROM plaid_sync.sync_pages WHERE sync_run_id = ANY($1)",
            &[run_ids.to_vec().into()],
        );
    }
}
