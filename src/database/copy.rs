//! COPY FROM inside the backend, from text the caller has written: Postgres's own bulk path
//! (heap inserts in batches, with the table's constraints, defaults, indexes and triggers), as
//! `COPY … FROM STDIN` would take it from a client. The data-source callback has no argument,
//! so the text is lent to it through a thread local for the length of one call.

use std::cell::Cell;
use std::ffi::{CString, c_int, c_void};

use pgrx::pg_sys;

thread_local! {
    /// The text being copied: its start, its length and how much the callback has handed out.
    static SOURCE: Cell<(*const u8, usize, usize)> = const { Cell::new((std::ptr::null(), 0, 0)) };
}

/// Empties the source when the copy ends, by return or by a raised error.
struct Lent;
impl Drop for Lent {
    fn drop(&mut self) {
        SOURCE.with(|s| s.set((std::ptr::null(), 0, 0)));
    }
}

/// Hands COPY the next bytes of the lent text; 0 is the end of the data.
unsafe extern "C-unwind" fn read(outbuf: *mut c_void, _minread: c_int, maxread: c_int) -> c_int {
    SOURCE.with(|s| {
        let (start, len, pos) = s.get();
        let n = (len - pos).min(maxread.max(0) as usize);
        if n > 0 {
            // SAFETY: `start..start+len` is the lent text, alive for the whole copy_in call.
            unsafe { std::ptr::copy_nonoverlapping(start.add(pos), outbuf.cast::<u8>(), n) };
        }
        s.set((start, len, pos + n));
        n as c_int
    })
}

/// Puts `SessionReplicationRole` back when the copy ends, by return or by a raised error.
struct Role(std::ffi::c_int);
impl Drop for Role {
    fn drop(&mut self) {
        // SAFETY: a backend global, read and written on this (the main) thread only.
        unsafe { pg_sys::SessionReplicationRole = self.0 };
    }
}

/// Copies `text` (COPY's text format, UTF-8) into `schema.table`'s `columns`; the other
/// columns take their defaults. Returns the rows copied. An error in the data raises, as the
/// COPY statement would: run it in a subtransaction to recover.
///
/// `checked`: a foreign key of the table whose check the caller has already made for every row
/// (the one row all of them reference, found and locked FOR KEY SHARE, as the check would). When
/// that key's triggers are the table's only triggers, the copy skips them: Postgres would run
/// the same one-row check once per row. Any other trigger, a user's included, keeps them all.
pub fn copy_in(
    schema: &str,
    table: &str,
    columns: &[&str],
    text: &str,
    checked: Option<pg_sys::Oid>,
) -> u64 {
    super::in_transaction("COPY");
    // Postgres's COPY machinery called directly writes a Citus table's coordinator shell, where
    // no query looks: refuse, and the caller's SQL apply goes through Citus instead.
    if super::citus::places(&format!("{schema}.{table}")) {
        pgrx::error!(
            "plaid_sync: {schema}.{table} is placed by Citus: its rows are written by SQL, not COPY"
        );
    }
    let c = |s: &str| CString::new(s).expect("a name without NUL");
    let (schema, table) = (c(schema), c(table));
    let names: Vec<CString> = columns.iter().map(|n| c(n)).collect();
    let _lent = Lent;
    SOURCE.with(|s| s.set((text.as_ptr(), text.len(), 0)));
    // SAFETY: as DoCopy does it for COPY FROM: the relation locked for writing and entered in
    // the parse state's range table (CopyFrom runs its executor over range table entry 1).
    // Every pointer handed over is palloc'd by Postgres or outlives the call.
    unsafe {
        let lock = pg_sys::RowExclusiveLock as pg_sys::LOCKMODE;
        let range = pg_sys::makeRangeVar(schema.as_ptr().cast_mut(), table.as_ptr().cast_mut(), -1);
        let relid = pg_sys::RangeVarGetRelidExtended(range, lock, 0, None, std::ptr::null_mut());
        let rel = pg_sys::table_open(relid, pg_sys::NoLock as pg_sys::LOCKMODE);
        let pstate = pg_sys::make_parsestate(std::ptr::null_mut());
        pg_sys::addRangeTableEntryForRelation(
            pstate,
            rel,
            lock,
            std::ptr::null_mut(),
            false,
            false,
        );
        let mut attnames: *mut pg_sys::List = std::ptr::null_mut();
        for n in &names {
            let name = pg_sys::makeString(pg_sys::pstrdup(n.as_ptr()));
            attnames = pg_sys::lappend(attnames, name.cast());
        }
        let encoding = pg_sys::makeDefElem(
            pg_sys::pstrdup(c"encoding".as_ptr()),
            pg_sys::makeString(pg_sys::pstrdup(c"UTF8".as_ptr())).cast(),
            -1,
        );
        let options = pg_sys::lappend(std::ptr::null_mut(), encoding.cast());
        let cstate = pg_sys::BeginCopyFrom(
            pstate,
            rel,
            std::ptr::null_mut(),
            std::ptr::null(),
            false,
            Some(read),
            attnames,
            options,
        );
        let rows = {
            let _role = match checked {
                Some(fk) if only_triggers_of(rel, fk) => {
                    let role = Role(pg_sys::SessionReplicationRole);
                    // Set directly, not as a setting: nothing is planned while COPY runs, so
                    // the plan cache need not be reset (the setting does that), and triggers
                    // are the only thing the role changes in COPY FROM.
                    pg_sys::SessionReplicationRole = pg_sys::SESSION_REPLICATION_ROLE_REPLICA as _;
                    Some(role)
                }
                _ => None,
            };
            pg_sys::CopyFrom(cstate)
        };
        pg_sys::EndCopyFrom(cstate);
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        pg_sys::free_parsestate(pstate);
        // The next statement of this transaction sees the rows.
        pg_sys::CommandCounterIncrement();
        rows
    }
}

/// Whether the relation has triggers and every one of them belongs to the constraint `fk`.
///
/// # Safety
/// `rel` is an open relation.
unsafe fn only_triggers_of(rel: pg_sys::Relation, fk: pg_sys::Oid) -> bool {
    let td = unsafe { (*rel).trigdesc };
    if td.is_null() {
        return false;
    }
    let n = unsafe { (*td).numtriggers } as usize;
    n > 0 && (0..n).all(|i| unsafe { (*(*td).triggers.add(i)).tgconstraint } == fk)
}
