use super::*;

/// `sql/schema.sql`'s `transaction_rows` columns: (name, type) as written there.
fn schema_columns() -> Vec<(String, String)> {
    let sql =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/sql/schema.sql")).unwrap();
    let start = sql
        .find("CREATE TABLE plaid_sync.transaction_rows (")
        .expect("the table");
    let body = &sql[start..start + sql[start..].find("\n);").unwrap()];
    body.lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("--") && !l.starts_with("CONSTRAINT"))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((
                words.next()?.to_string(),
                words.next()?.trim_end_matches(',').to_string(),
            ))
        })
        .collect()
}

#[test]
fn the_schema_has_each_typed_column_with_its_type() {
    let columns = schema_columns();
    assert!(columns.len() > TYPED.len(), "{columns:?}");
    for (key, kind) in TYPED {
        let found = columns.iter().find(|(c, _)| c == key);
        assert_eq!(
            found.map(|(_, t)| t.as_str()),
            Some(kind.sql_type()),
            "{key} in sql/schema.sql"
        );
    }
}

#[test]
fn the_apply_reads_every_typed_column_but_the_key() {
    let applied: Vec<&str> = applied().map(|(k, _)| k).collect();
    assert_eq!(applied.len(), TYPED.len() - 1);
    assert!(!applied.contains(&"transaction_id"));
    assert_eq!(
        Typed::Number.sql_read("amount"),
        "(o ->> 'amount')::numeric"
    );
    assert!(
        Typed::TextArray
            .sql_read("category")
            .contains("jsonb_array_elements_text(o -> 'category')")
    );
}
