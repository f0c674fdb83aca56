//! One home per table: every statement that writes a table of ours stands in the one file
//! that owns it. Read from the sources, so a write added
//! anywhere else fails here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Each table and the file, or folder, whose code alone writes it.
const HOMES: &[(&str, &str)] = &[
    ("items", "src/store/items.rs"),
    ("inbox", "src/inbox.rs"),
    ("sync_runs", "src/store/runs.rs"),
    ("accounts", "src/store/accounts.rs"),
    ("balance_snapshots", "src/store/accounts.rs"),
    ("transaction_rows", "src/store/transactions.rs"),
    ("sync_rejects", "src/store/rejects.rs"),
    ("sync_pages", "src/store/pages.rs"),
    ("institutions", "src/store/institutions.rs"),
    ("paid_calls", "src/store/paid_calls.rs"),
    ("item_products", "src/store/products.rs"),
    ("recurring_streams", "src/store/recurring.rs"),
    ("liabilities", "src/store/liabilities.rs"),
    ("securities", "src/store/investments.rs"),
    ("holdings", "src/store/investments.rs"),
    ("investment_transactions", "src/store/investments.rs"),
    ("webhook_keys", "src/store/webhook_keys.rs"),
    ("deliveries", "src/store/deliveries.rs"),
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// (table, file) for every write in the code: INSERT, UPDATE, DELETE and COPY (`copy_in`).
fn writes() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    let mut found = Vec::new();
    for path in files {
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if rel.ends_with("_tests.rs") || rel == "src/pg_tests.rs" {
            continue; // tests set rows up by hand
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for verb in [
            "INSERT INTO plaid_sync.",
            "UPDATE plaid_sync.",
            "DELETE FROM plaid_sync.",
            "copy_in(\"plaid_sync\", \"",
        ] {
            for (at, _) in text.match_indices(verb) {
                let table: String = text[at + verb.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                found.push((table, rel.clone()));
            }
        }
    }
    found
}

/// The writes outside their table's home.
fn strays(found: &[(String, String)]) -> Vec<String> {
    let homes: BTreeMap<&str, &str> = HOMES.iter().copied().collect();
    found
        .iter()
        .filter(|(table, file)| match homes.get(table.as_str()) {
            Some(home) => file != home,
            None => true, // a table with no home yet: give it one
        })
        .map(|(table, file)| format!("{table} written in {file}"))
        .collect()
}

#[test]
fn every_table_is_written_only_in_its_home() {
    let found = writes();
    assert!(
        found.len() > 40,
        "the scan finds the writes ({})",
        found.len()
    );
    let strays = strays(&found);
    assert!(strays.is_empty(), "{strays:#?}");
}

#[test]
fn a_write_outside_its_home_or_to_a_homeless_table_is_a_stray() {
    let w = |t: &str, f: &str| (t.to_string(), f.to_string());
    assert!(strays(&[w("items", "src/store/items.rs"), w("inbox", "src/inbox.rs")]).is_empty());
    assert_eq!(
        strays(&[w("items", "src/sync/item.rs")]),
        ["items written in src/sync/item.rs"]
    );
    assert_eq!(strays(&[w("inbox", "src/webhook.rs")]).len(), 1);
    assert_eq!(strays(&[w("new_table", "src/store/items.rs")]).len(), 1);
}
