//! The apply of a run that only adds new transactions: each page's rows, written as COPY text
//! in the job thread (src/codec/copy_text.rs), go into `transaction_rows` by COPY, Postgres's
//! bulk path. What it stores is what the SQL apply would; anything that path would treat
//! differently (an id already stored, or seen twice, a value a column refuses) makes the COPY
//! fail, and the caller applies the run by SQL instead. Every row references the run's Item,
//! so the foreign key is checked once, by locking that Item as each row's check would.

use pgrx::pg_sys;

use super::LastPage;
use crate::codec::copy_text::{COLUMNS, Rows};
use crate::database::{copy_in, one, run};

/// Copies the run's staged pages in order, then the last one, and removes the pending rows the
/// new ones post over (`posted_over`, of every page). Raises on any conflict: run it in a
/// subtransaction.
pub fn copy_run(run_id: i64, item_id: &str, last: &LastPage, posted_over: &[String]) {
    let rows = last
        .copy
        .as_ref()
        .expect("plaid_sync bug: a run copied without its rows");
    // Every row references this Item (copy_text writes the run's item_id): its row is found
    // and locked once here, as the foreign key's check would for each row.
    let fk = one::<pg_sys::Oid>(
        "SELECT (SELECT c.oid FROM pg_catalog.pg_constraint c
                  WHERE c.conrelid = 'plaid_sync.transaction_rows'::regclass AND c.contype = 'f'
                    AND c.conname = 'transactions_item_id_fkey'
                    AND c.confrelid = 'plaid_sync.items'::regclass
                    AND c.conkey = ARRAY[(SELECT attnum FROM pg_catalog.pg_attribute
                                           WHERE attrelid = c.conrelid AND attname = 'item_id')])
           FROM plaid_sync.items WHERE item_id = $1 FOR KEY SHARE",
        &[item_id.into()],
    );
    for page in 1..last.page {
        let text = one::<String>(
            "SELECT copy_rows FROM plaid_sync.sync_pages WHERE sync_run_id = $1 AND page = $2",
            &[run_id.into(), page.into()],
        )
        .unwrap_or_else(|| panic!("plaid_sync bug: page {page} staged without its rows"));
        copy_in("plaid_sync", "transaction_rows", &COLUMNS, &text, fk);
    }
    copy_in("plaid_sync", "transaction_rows", &COLUMNS, &rows.text, fk);
    if !posted_over.is_empty() {
        // As the SQL apply's `removed`: a pending row a posted one names is gone.
        run(
            "UPDATE plaid_sync.transaction_rows SET removed_at = now(), updated_at = now()
              WHERE transaction_id = ANY($1) AND item_id = $2 AND removed_at IS NULL",
            &[posted_over.to_vec().into(), item_id.into()],
        );
    }
}

/// What the run's earlier pages contributed, kept by the job thread between pages: whether
/// every page so far can be copied, and the pending ids their rows post over.
#[derive(Debug, Default)]
pub struct Copyable {
    pub broken: bool,
    pub posted_over: Vec<String>,
}

impl Copyable {
    /// Takes in one page's rows (None: the page cannot be copied, nor then the run).
    pub fn page(&mut self, rows: Option<&Rows>) {
        match rows {
            Some(r) if !self.broken => self.posted_over.extend(r.posted_over.iter().cloned()),
            _ => {
                self.broken = true;
                self.posted_over.clear();
            }
        }
    }
}
