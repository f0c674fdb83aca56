//! `plaid_sync.transaction_rows`: every statement that writes it. The apply of a run's pages
//! (src/store/pages.rs), in which the last thing the pages said about each transaction wins,
//! and what it could not apply (kept by `rejects.rs`); a run that only adds new transactions
//! loaded by COPY (below); an Item's or account's rows marked removed, or purged.

use pgrx::pg_sys;

use super::HeldPage;
use super::pages::{Last, pages};
use crate::codec::copy_text::{COLUMNS, Rows};
use crate::database::{copy_in, one, one_text, run, subtransaction};

pub use super::rejects::Reject;

/// Applies every staged page of a run, in order: for each transaction the last thing the
/// pages said about it wins (an upsert, or a removal). A transaction the apply cannot take
/// (a bug on our side, or an object no code could read) is found by bisection, left out,
/// and returned, so one bad row never stops the rest of an Item's data.
pub fn apply_pages(run_id: i64, item_id: &str, last: &Last) -> Vec<Reject> {
    let mut rejects = Vec::new();
    let everything = subtransaction(true, || apply(run_id, item_id, None, &[], last));
    if everything.is_err() {
        let mut groups = vec![staged_ids(run_id, last)];
        while let Some(group) = groups.pop() {
            let Err(error) =
                subtransaction(false, || apply(run_id, item_id, Some(&group), &[], last))
            else {
                continue;
            };
            if group.len() <= 1 {
                rejects.extend(group.into_iter().map(|id| Reject {
                    transaction_id: Some(id),
                    error: error.clone(),
                }));
                continue;
            }
            let half = group.len() / 2;
            groups.push(group[half..].to_vec());
            groups.push(group[..half].to_vec());
        }
        let skip: Vec<String> = rejects
            .iter()
            .filter_map(|r| r.transaction_id.clone())
            .collect();
        // Not a probe: if this still fails, the job fails with the error.
        apply(run_id, item_id, None, &skip, last);
    }
    rejects
}

/// The accounts with balances from the run's last page that has them (sync lists only
/// accounts with transactions); `sent`, the last page's own array, when the run has no raw
/// objects. A Reject when they could not be applied.
pub fn apply_accounts(
    run_id: i64,
    item_id: &str,
    last: &Last,
    sent: Option<&str>,
) -> Option<Reject> {
    let (text, raw) = match sent {
        Some(text) => (text.to_string(), None),
        None => {
            let accounts = one_text::<pgrx::JsonB>(
                &format!(
                    "SELECT body -> 'accounts' FROM {} p
                      WHERE jsonb_typeof(body -> 'accounts') = 'array' ORDER BY page DESC LIMIT 1",
                    pages!(2, 3, 4, 5)
                ),
                &last.with(vec![run_id.into()]),
            )?;
            let raw = one_text::<pgrx::JsonB>(
                &format!(
                    "SELECT raw_objects -> 'accounts' FROM {} p
                      WHERE raw_objects IS NOT NULL ORDER BY page DESC LIMIT 1",
                    pages!(2, 3, 4, 5)
                ),
                &last.with(vec![run_id.into()]),
            )
            .map(|r| r.0.to_string());
            (accounts.0.to_string(), raw)
        }
    };
    subtransaction(true, || {
        super::upsert_accounts(item_id, &text, false, raw.as_deref())
    })
    .err()
    .map(|error| Reject {
        transaction_id: None,
        error: format!("accounts: {error}"),
    })
}

/// The ids of every transaction the run's pages mention, sorted ('' for one without an id).
fn staged_ids(run_id: i64, last: &Last) -> Vec<String> {
    one_text::<Vec<String>>(
        &format!(
            "SELECT coalesce(array_agg(DISTINCT coalesce(a.e ->> 'transaction_id', '')), '{{}}')
           FROM {} p
          CROSS JOIN (VALUES ('added'), ('modified'), ('removed')) k(key)
          CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(p.body -> k.key) = 'array'
                                                        THEN p.body -> k.key ELSE '[]' END) a(e)
          ",
            pages!(2, 3, 4, 5)
        ),
        &last.with(vec![run_id.into()]),
    )
    .unwrap_or_default()
}

/// The apply itself (a kept plan): $1 run, $2 Item, $3 only these ids (all when NULL), $4 not
/// these, $5–$8 the last page. `{upsert}` is the upsert of the last word on each transaction,
/// made from the typed columns' list (`apply`).
const APPLY_FRAME: &str = concat!(
    "WITH ev AS (
             SELECT p.page, 0 AS phase, k.kind, a.ord, a.e AS obj, a.e ->> 'transaction_id' AS id,
                    p.raw_objects -> 'transactions' ->> (a.e ->> 'transaction_id') AS raw
               FROM ",
    pages!(5, 6, 7, 8),
    " p
              CROSS JOIN (VALUES (0, 'added'), (1, 'modified')) k(kind, key)
              CROSS JOIN LATERAL jsonb_array_elements(p.body -> k.key) WITH ORDINALITY a(e, ord)
              WHERE true
                AND ($3::text[] IS NULL OR coalesce(a.e ->> 'transaction_id', '') = ANY($3))
                AND coalesce(a.e ->> 'transaction_id', '') <> ALL($4)
             UNION ALL
             SELECT p.page, 1, 2, a.ord, NULL, a.e ->> 'transaction_id', NULL
               FROM ",
    pages!(5, 6, 7, 8),
    " p
              CROSS JOIN LATERAL jsonb_array_elements(p.body -> 'removed') WITH ORDINALITY a(e, ord)
              WHERE true
                AND ($3::text[] IS NULL OR coalesce(a.e ->> 'transaction_id', '') = ANY($3))
                AND coalesce(a.e ->> 'transaction_id', '') <> ALL($4)),
         last_upsert AS (
             SELECT DISTINCT ON (id) id, obj, raw FROM ev WHERE phase = 0
              ORDER BY id, page DESC, kind DESC, ord DESC),
         last_event AS (
             SELECT DISTINCT ON (id) id, phase FROM ev
              ORDER BY id, page DESC, phase DESC, kind DESC, ord DESC),
         -- A pending transaction that a posted one names is gone, whichever version of the
         -- posted one is the last word.
         posted_over AS (
             SELECT DISTINCT obj ->> 'pending_transaction_id' AS id FROM ev
              WHERE phase = 0 AND obj ->> 'pending_transaction_id' IS NOT NULL),
         upserted AS (",
    "{upsert}",
    "
             RETURNING 1),
         removed AS (
             -- Removals, and pending rows a posted row replaced (Plaid also lists them as
             -- removed, but not always on the same page). Rows this statement upserts got
             -- their removed_at above.
             SELECT id FROM last_event WHERE phase = 1
             UNION SELECT id FROM posted_over)
         UPDATE plaid_sync.transaction_rows t SET removed_at = now(), updated_at = now()
           FROM removed r
          WHERE t.transaction_id = r.id AND t.item_id = $2 AND t.removed_at IS NULL"
);

/// The apply's SQL, made once: the frame with the upsert of every typed column
/// (`codec::columns`, the list the COPY layout and the split come from too).
fn apply_sql() -> &'static str {
    static SQL: std::sync::LazyLock<&'static str> = std::sync::LazyLock::new(|| {
        let typed: Vec<_> = crate::codec::columns::applied().collect();
        let names: Vec<&str> = typed.iter().map(|(k, _)| *k).collect();
        let reads: Vec<String> = typed.iter().map(|(k, t)| t.sql_read(k)).collect();
        let sets: Vec<String> = names
            .iter()
            .map(|k| format!("{k} = EXCLUDED.{k}"))
            .collect();
        let upsert = format!(
            "INSERT INTO plaid_sync.transaction_rows AS transactions (transaction_id, item_id, {names},
                    rest, absent, raw_data, removed_at)
             SELECT u.id, $2, {reads},
                    -- Lean (src/codec/lean.rs): what no column or template holds, and what
                    -- the object lacked; an object the job thread did not mark is kept whole.
                    coalesce(o -> 'plaid_sync:lean' -> 'rest', o),
                    nullif(CASE WHEN o ? 'plaid_sync:lean'
                                THEN (o -> 'plaid_sync:lean' ->> 'absent')::text[]
                                ELSE plaid_sync.transaction_absent(o) END, '{{}}'),
                    u.raw,
                    CASE WHEN le.phase = 1 OR u.id IN (SELECT id FROM posted_over) THEN now() END
               FROM last_upsert u
               JOIN last_event le USING (id)
              CROSS JOIN LATERAL (SELECT u.obj AS o) x
             ON CONFLICT (transaction_id, item_id) DO UPDATE SET {sets},
                    rest = EXCLUDED.rest, absent = EXCLUDED.absent, codec = EXCLUDED.codec,
                    raw_data = EXCLUDED.raw_data,
                    removed_at = EXCLUDED.removed_at, updated_at = EXCLUDED.updated_at
              WHERE transactions.item_id = EXCLUDED.item_id",
            names = names.join(", "),
            reads = reads.join(",\n                    "),
            sets = sets.join(", "),
        );
        Box::leak(APPLY_FRAME.replace("{upsert}", &upsert).into_boxed_str())
    });
    &SQL
}

/// The apply itself, for the transactions in `only` (all when None) but not in `skip`.
fn apply(run_id: i64, item_id: &str, only: Option<&[String]>, skip: &[String], last: &Last) {
    let only: Option<Vec<String>> = only.map(<[String]>::to_vec);
    run(
        apply_sql(),
        &last.with(vec![
            run_id.into(),
            item_id.into(),
            only.into(),
            skip.to_vec().into(),
        ]),
    );
}

/// A backfill saw the whole history: live rows of the Item that no page mentioned are gone.
pub fn remove_unseen(run_id: i64, item_id: &str, last: &Last) -> i64 {
    one_text::<i64>(
        &format!(
            "WITH seen AS (
             SELECT a.e ->> 'transaction_id' AS id
               FROM {} p
              CROSS JOIN (VALUES ('added'), ('modified')) k(key)
              CROSS JOIN LATERAL jsonb_array_elements(p.body -> k.key) a(e)
              ),
         gone AS (
             UPDATE plaid_sync.transaction_rows t SET removed_at = now(), updated_at = now()
              WHERE t.item_id = $2 AND t.removed_at IS NULL
                AND NOT EXISTS (SELECT 1 FROM seen WHERE seen.id = t.transaction_id)
             RETURNING 1)
         SELECT count(*) FROM gone",
            pages!(3, 4, 5, 6)
        ),
        &last.with(vec![run_id.into(), item_id.into()]),
    )
    .unwrap_or(0)
}

/// Consent ended for the Item (`account_id` None) or one account: its live rows are marked
/// removed (and kept).
pub fn mark_removed(item_id: &str, account_id: Option<&str>) {
    run(
        "UPDATE plaid_sync.transaction_rows SET removed_at = now(), updated_at = now()
          WHERE item_id = $1 AND ($2::text IS NULL OR account_id = $2) AND removed_at IS NULL",
        &[item_id.into(), account_id.into()],
    );
}

/// The Item's (or one account's) rows deleted: a purge.
pub fn purge(item_id: &str, account_id: Option<&str>) {
    run(
        "DELETE FROM plaid_sync.transaction_rows WHERE item_id = $1 AND ($2::text IS NULL OR account_id = $2)",
        &[item_id.into(), account_id.into()],
    );
}

// The apply of a run that only adds new transactions: each page's rows, written as COPY text
// in the job thread (src/codec/copy_text.rs), go into `transaction_rows` by COPY, Postgres's
// bulk path. What it stores is what the SQL apply would; anything that path would treat
// differently (an id already stored, or seen twice, a value a column refuses) makes the COPY
// fail, and the caller applies the run by SQL instead. Every row references the run's Item,
// so the foreign key is checked once, by locking that Item as each row's check would.

/// Copies the run's staged pages in order, then the last one, and removes the pending rows the
/// new ones post over (`posted_over`, of every page). Raises on any conflict: run it in a
/// subtransaction.
pub fn copy_run(
    run_id: i64,
    item_id: &str,
    early: &[HeldPage],
    last: &HeldPage,
    posted_over: &[String],
) {
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
        // An earlier page is held in memory (a small run) or staged.
        if let Some(rows) = early
            .iter()
            .find(|p| p.page == page)
            .and_then(|p| p.copy.as_ref())
        {
            copy_in("plaid_sync", "transaction_rows", &COLUMNS, &rows.text, fk);
            continue;
        }
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
