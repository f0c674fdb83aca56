//! SPI in the forms the rest of the crate needs: one value, one row, all rows, a statement run,
//! each through a plan kept per backend (the `_text` forms for SQL made at run time). Each
//! refuses to run outside a transaction.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use pgrx::PgOid;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::OwnedPreparedStatement;

thread_local! {
    /// Plans prepared once per backend (SPI_keepplan), keyed by the statement's address and
    /// its parameters' types; Postgres re-plans them itself when the tables change. Parsing
    /// and planning each worker statement anew was a tenth of a worker's time in a profile
    /// of a first sync. Keyed by address: hashing the text on every call showed there too.
    static PLANS: RefCell<HashMap<(usize, usize), Vec<Kept>>> = Default::default();
}

/// A kept plan and the parameter types it was prepared for.
type Kept = (Vec<pg_sys::Oid>, Rc<OwnedPreparedStatement>);

/// Runs `f` with the kept plan of `sql` for its arguments' types (prepared on first use in
/// this backend): the same text passed an `int8` must not run through a plan made for `int4`.
fn with_kept<R>(
    sql: &'static str,
    args: &[DatumWithOid],
    f: impl FnOnce(&mut pgrx::spi::SpiClient<'_>, &OwnedPreparedStatement) -> R,
) -> R {
    in_transaction(sql);
    // Compared in place: a statement that finds its plan allocates nothing.
    let types = || args.iter().map(DatumWithOid::oid);
    Spi::connect_mut(|c| {
        // Not borrowed while `f` runs: it may run kept statements of its own.
        let stmt = PLANS.with(|plans| {
            let mut plans = plans.borrow_mut();
            let kept = plans.entry((sql.as_ptr() as usize, sql.len())).or_default();
            if let Some((_, stmt)) = kept.iter().find(|(t, _)| t.iter().copied().eq(types())) {
                return stmt.clone();
            }
            let oids: Vec<PgOid> = types().map(PgOid::from).collect();
            let stmt = Rc::new(
                c.prepare_mut(sql, &oids)
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
                    .keep(),
            );
            kept.push((types().collect(), stmt.clone()));
            stmt
        });
        f(c, &stmt)
    })
}

/// The first column of the first row, or None when there is no row (or it is NULL), through
/// a kept plan.
pub fn one<T: FromDatum + IntoDatum>(sql: &'static str, args: &[DatumWithOid]) -> Option<T> {
    with_kept(sql, args, |c, stmt| match c.update(stmt, Some(1), args) {
        Ok(t) => t.first().get_one::<T>().ok().flatten(),
        Err(e) => panic!("{sql}: {e}"),
    })
}

/// Runs a statement for its effect, through a kept plan.
pub fn run(sql: &'static str, args: &[DatumWithOid]) {
    with_kept(sql, args, |c, stmt| {
        c.update(stmt, None, args)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    })
}

/// `f` of every row, through a kept plan.
pub fn rows<R>(
    sql: &'static str,
    args: &[DatumWithOid],
    mut f: impl FnMut(&pgrx::spi::SpiHeapTupleData) -> Option<R>,
) -> Vec<R> {
    with_kept(sql, args, |c, stmt| {
        c.update(stmt, None, args)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .filter_map(|r| f(&r))
            .collect()
    })
}

/// `f` of the first row, or None when there is none, through a kept plan: a statement that
/// returns one row (or its first) without collecting them.
pub fn row<R>(
    sql: &'static str,
    args: &[DatumWithOid],
    f: impl FnOnce(&pgrx::spi::SpiHeapTupleData) -> Option<R>,
) -> Option<R> {
    with_kept(sql, args, |c, stmt| {
        c.update(stmt, None, args)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .next()
            .and_then(|r| f(&r))
    })
}

/// `one` for statement text made at run time: parsed and planned on every call.
pub fn one_text<T: FromDatum + IntoDatum>(sql: &str, args: &[DatumWithOid]) -> Option<T> {
    in_transaction(sql);
    match Spi::get_one_with_args::<T>(sql, args) {
        Ok(v) => v,
        Err(pgrx::spi::SpiError::InvalidPosition) => None,
        Err(e) => panic!("{sql}: {e}"),
    }
}

/// `row` for statement text made at run time.
pub fn row_text<R>(
    sql: &str,
    args: &[DatumWithOid],
    f: impl FnOnce(&pgrx::spi::SpiHeapTupleData) -> Option<R>,
) -> Option<R> {
    in_transaction(sql);
    Spi::connect_mut(|c| {
        c.update(sql, None, args)
            .unwrap_or_else(|e| panic!("plaid_sync: {e}"))
            .next()
            .and_then(|r| f(&r))
    })
}

/// `run` for statement text made at run time.
pub fn run_text(sql: &str, args: &[DatumWithOid]) {
    in_transaction(sql);
    Spi::run_with_args(sql, args).unwrap_or_else(|e| panic!("plaid_sync: {e}"));
}

/// SPI outside a transaction crashes the process; say which statement tried, instead.
pub fn in_transaction(sql: &str) {
    if !unsafe { pg_sys::IsTransactionState() } {
        panic!(
            "plaid_sync bug: SQL run outside a transaction: {}",
            sql.split_whitespace().take(6).collect::<Vec<_>>().join(" ")
        );
    }
}

/// JSON text parsed into a jsonb value once, to pass to several statements (a text parameter
/// cast with `$n::jsonb` is parsed again by each). It lives until the transaction ends.
#[derive(Clone, Copy)]
pub struct ParsedJson(pg_sys::Datum);

impl ParsedJson {
    pub fn parse(text: &str) -> Self {
        // JSON text never holds a NUL byte (a NUL is an escape, and storable() replaced those).
        let c = std::ffi::CString::new(text)
            .unwrap_or_else(|_| panic!("plaid_sync: JSON text with a NUL byte"));
        // SAFETY: jsonb's input function takes a C string and raises a Postgres error on
        // bad input.
        Self(unsafe {
            pg_sys::OidInputFunctionCall(
                pg_sys::Oid::from(pg_sys::F_JSONB_IN),
                c.as_ptr().cast_mut(),
                pg_sys::JSONBOID,
                -1,
            )
        })
    }

    /// As a statement parameter; NULL for None.
    pub fn arg(this: Option<Self>) -> DatumWithOid<'static> {
        match this {
            // SAFETY: the datum is a jsonb value allocated in this transaction.
            Some(p) => unsafe { DatumWithOid::new(p.0, pg_sys::JSONBOID) },
            None => DatumWithOid::null_oid(pg_sys::JSONBOID),
        }
    }
}
