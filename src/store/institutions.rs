//! `plaid_sync.institutions`, the cache of `/institutions/get_by_id`: one call per institution,
//! not one per Item.

use crate::database::{one, run};

/// The cached institution name, if we have it.
pub fn institution_cached(institution_id: &str) -> bool {
    one::<bool>(
        "SELECT true FROM plaid_sync.institutions WHERE institution_id = $1",
        &[institution_id.into()],
    )
    .is_some()
}

pub fn store_institution(institution_json: &str) {
    run(
        "WITH x AS (SELECT $1::jsonb AS o)
         INSERT INTO plaid_sync.institutions (institution_id, name, data)
         SELECT o ->> 'institution_id', o ->> 'name', o FROM x
         ON CONFLICT (institution_id) DO UPDATE SET name = EXCLUDED.name, data = EXCLUDED.data,
                fetched_at = EXCLUDED.fetched_at",
        &[institution_json.into()],
    );
}
