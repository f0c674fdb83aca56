//! Whether Citus places a table's rows (plaid_sync.distribute()): its shards are elsewhere, and
//! the coordinator's table is an empty shell that only Citus's own paths (SQL, COPY statements)
//! write through.

use super::one;

/// True when `table` (schema-qualified) is a Citus table: distributed, reference or Citus-local.
/// Two reads of the catalog: the first alone on a server without Citus.
pub fn places(table: &str) -> bool {
    one::<bool>(
        "SELECT pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL",
        &[],
    )
    .unwrap_or(false)
        && one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition
                             WHERE logicalrelid = pg_catalog.to_regclass($1))",
            &[table.into()],
        )
        .unwrap_or(false)
}
