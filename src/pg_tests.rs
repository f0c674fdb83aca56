//! `#[pg_test]`s: the SQL contract inside one server, each test in a rolled-back transaction.
//! The end-to-end suite (tests/e2e) covers what needs commits, reloads, roles or the log.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    const TOKEN: &str = "access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6";

    fn count(sql: &str) -> i64 {
        Spi::get_one::<i64>(sql).unwrap().unwrap()
    }

    #[pg_test]
    fn schema_has_the_contract_tables_and_views() {
        for t in [
            "items",
            "accounts",
            "balance_snapshots",
            "transaction_rows",
            "inbox",
            "sync_runs",
        ] {
            let n = count(&format!(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'plaid_sync' AND tablename = '{t}'"
            ));
            assert_eq!(n, 1, "table {t}");
        }
        for v in ["item_health", "transactions", "live_transactions"] {
            let n = count(&format!(
                "SELECT count(*) FROM pg_views WHERE schemaname = 'plaid_sync' AND viewname = '{v}'"
            ));
            assert_eq!(n, 1, "view {v}");
        }
        // Every data table is dumped by pg_dump.
        let dumped =
            count("SELECT cardinality(extconfig) FROM pg_extension WHERE extname = 'plaid_sync'");
        assert!(dumped >= 6);
    }

    #[pg_test]
    fn an_items_transactions_are_found_by_index_removed_ones_included() {
        // Without the index the only plan is a scan of every row, which enable_seqscan = off
        // cannot remove (a partial index on live rows does not serve this query).
        Spi::run("SET LOCAL enable_seqscan = off").unwrap();
        let plan = Spi::get_one::<pgrx::Json>(
            "EXPLAIN (FORMAT JSON) SELECT * FROM plaid_sync.transactions WHERE item_id = 'x'",
        )
        .unwrap()
        .unwrap();
        let text = plan.0.to_string();
        assert!(text.contains("transactions_item_idx"), "{text}");
        assert!(!text.contains("Seq Scan"), "{text}");
    }

    #[pg_test]
    fn every_function_is_security_definer_with_pinned_search_path_and_no_public_execute() {
        let bad = count(
            "SELECT count(*) FROM pg_proc p
              WHERE p.pronamespace = 'plaid_sync'::regnamespace
                AND (NOT p.prosecdef
                     OR NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%')
                     OR has_function_privilege('public', p.oid, 'EXECUTE'))",
        );
        assert_eq!(bad, 0);
        assert!(
            count("SELECT count(*) FROM pg_proc WHERE pronamespace = 'plaid_sync'::regnamespace")
                >= 11
        );
    }

    #[pg_test]
    fn notify_item_created_encrypts_upserts_and_enqueues_once() {
        let id1 = Spi::get_one::<i64>(&format!(
            "SELECT plaid_sync.plaid_notify_item_created('item1', '{TOKEN}', 'user-1')"
        ))
        .unwrap()
        .unwrap();
        let id2 = Spi::get_one::<i64>(&format!(
            "SELECT plaid_sync.plaid_notify_item_created('item1', '{TOKEN}')"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(id1, id2, "a repeated notice reuses the queued job");
        assert_eq!(count("SELECT count(*) FROM plaid_sync.items"), 1);
        assert_eq!(count("SELECT count(*) FROM plaid_sync.inbox"), 1);
        let status = Spi::get_one::<String>("SELECT status FROM plaid_sync.items").unwrap();
        assert_eq!(status.as_deref(), Some("pending"));
        let cuid = Spi::get_one::<String>("SELECT client_user_id FROM plaid_sync.items").unwrap();
        assert_eq!(
            cuid.as_deref(),
            Some("user-1"),
            "a later NULL keeps the client_user_id"
        );
        // The token is stored sealed, and nowhere in plain text.
        let plain = count(&format!(
            "SELECT count(*) FROM plaid_sync.items i, plaid_sync.inbox q
              WHERE position('{TOKEN}' IN i::text) > 0 OR position('{TOKEN}' IN q::text) > 0"
        ));
        assert_eq!(plain, 0);
        let back = Spi::get_one::<String>("SELECT plaid_sync.plaid_decrypt_access_token('item1')")
            .unwrap();
        assert_eq!(back.as_deref(), Some(TOKEN));
    }

    #[pg_test]
    fn a_new_token_replaces_the_old_one() {
        Spi::run(&format!(
            "SELECT plaid_sync.plaid_notify_item_created('item1', '{TOKEN}')"
        ))
        .unwrap();
        Spi::run(
            "SELECT plaid_sync.plaid_notify_item_created('item1', 'access-sandbox-5e1f0c2a-0000-4000-8000-000000000e11')",
        )
        .unwrap();
        let back = Spi::get_one::<String>("SELECT plaid_sync.plaid_decrypt_access_token('item1')")
            .unwrap();
        assert_eq!(
            back.as_deref(),
            Some("access-sandbox-5e1f0c2a-0000-4000-8000-000000000e11")
        );
        assert_eq!(count("SELECT count(*) FROM plaid_sync.items"), 1);
    }

    #[pg_test]
    fn a_ciphertext_copied_to_another_item_does_not_decrypt() {
        Spi::run(&format!(
            "SELECT plaid_sync.plaid_notify_item_created('item1', '{TOKEN}')"
        ))
        .unwrap();
        Spi::run(&format!(
            "SELECT plaid_sync.plaid_notify_item_created('item2', '{TOKEN}')"
        ))
        .unwrap();
        Spi::run(
            "UPDATE plaid_sync.items SET access_token_encrypted =
                 (SELECT access_token_encrypted FROM plaid_sync.items WHERE item_id = 'item1')
              WHERE item_id = 'item2'",
        )
        .unwrap();
        let r = std::panic::catch_unwind(|| {
            Spi::get_one::<String>("SELECT plaid_sync.plaid_decrypt_access_token('item2')")
        });
        assert!(r.is_err(), "decrypting a copied envelope must fail");
    }

    #[pg_test(
        error = "access_token belongs to production environment, but plaid_sync.environment is sandbox"
    )]
    fn a_token_for_the_wrong_environment_is_refused() {
        Spi::run("SELECT plaid_sync.plaid_notify_item_created('item1', 'access-production-1234')")
            .unwrap();
    }

    #[pg_test(error = "plaid_sync.distribute() needs Citus in this database")]
    fn distribute_without_citus_is_refused() {
        Spi::run("SELECT plaid_sync.distribute()").unwrap();
    }

    #[pg_test(
        error = "ITEM/CREATED without an access token is a backend notice, not a Plaid webhook: call plaid_sync.plaid_notify_item_created(item_id, access_token) instead"
    )]
    fn receive_webhook_refuses_backend_notices() {
        Spi::run(
            r#"SELECT plaid_sync.plaid_receive_webhook('{"webhook_type":"ITEM","webhook_code":"CREATED","item_id":"x"}')"#,
        )
        .unwrap();
    }

    #[pg_test]
    fn receive_webhook_keeps_the_exact_body() {
        let body = "{\n  \"item_id\": \"abc\",\n  \"webhook_code\": \"SYNC_UPDATES_AVAILABLE\",\n  \"webhook_type\": \"TRANSACTIONS\"\n}";
        let id = Spi::get_one_with_args::<i64>(
            "SELECT plaid_sync.plaid_receive_webhook($1, 'h.p.s')",
            &[body.into()],
        )
        .unwrap()
        .unwrap();
        let raw = Spi::get_one_with_args::<String>(
            "SELECT raw_body FROM plaid_sync.inbox WHERE id = $1 AND source = 'plaid' AND status = 'pending'
                AND body IS NULL",
            &[id.into()],
        )
        .unwrap();
        assert_eq!(
            raw.as_deref(),
            Some(body),
            "kept as text, its body parsed only once verified"
        );
    }

    #[pg_test]
    fn receive_webhook_refuses_what_jsonb_cannot_store() {
        let head = r#""webhook_type":"TRANSACTIONS","webhook_code":"SYNC_UPDATES_AVAILABLE""#;
        let jsonb = "body cannot be stored as jsonb: ";
        for (extra, (starts, has)) in [
            (
                r#""note":"a\u0000b""#,
                (jsonb, "unsupported Unicode escape sequence"),
            ),
            (r#""n":1e-100000"#, (jsonb, "numeric")),
            // The claim parses the stored text with serde: what it would refuse is refused here.
            (r#""n":1e400"#, ("body is not valid JSON: ", "out of range")),
            // serde, which reads the body first, refuses this one itself.
            (
                r#""note":"\udc00""#,
                ("body is not valid JSON: ", "surrogate"),
            ),
        ] {
            // Each refusal is an ERROR: caught in a subtransaction, so the test goes on.
            let m = crate::database::subtransaction(false, || {
                Spi::get_one_with_args::<i64>(
                    "SELECT plaid_sync.plaid_receive_webhook($1, 'h.p.s')",
                    &[format!("{{{head},{extra}}}").into()],
                )
            })
            .unwrap_err();
            assert!(m.starts_with(starts) && m.contains(has), "{m}");
        }
        let fine = format!(r#"{{{head},"note":"caf\u00e9","n":2E3}}"#);
        Spi::get_one_with_args::<i64>(
            "SELECT plaid_sync.plaid_receive_webhook($1, 'h.p.s')",
            &[fine.into()],
        )
        .unwrap();
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM plaid_sync.inbox").unwrap(),
            Some(1),
            "only the storable body is queued"
        );
    }

    #[pg_test]
    fn plaid_notify_dispatches_backend_notices() {
        Spi::run(&format!(
            r#"SELECT plaid_sync.plaid_notify('{{"webhook_type":"ITEM","webhook_code":"CREATED","item_id":"i1","access_token":"{TOKEN}"}}')"#
        ))
        .unwrap();
        Spi::run(r#"SELECT plaid_sync.plaid_notify('{"webhook_type":"ITEM","webhook_code":"UPDATED","item_id":"i1"}')"#).unwrap();
        Spi::run(r#"SELECT plaid_sync.plaid_notify('{"webhook_type":"TRANSACTIONS","webhook_code":"HISTORICAL_UPDATE","item_id":"i1"}')"#).unwrap();
        let codes = Spi::get_one::<String>(
            "SELECT string_agg(webhook_code, ',' ORDER BY id) FROM plaid_sync.inbox",
        )
        .unwrap();
        assert_eq!(codes.as_deref(), Some("CREATED,UPDATED,HISTORICAL_UPDATE"));
    }

    #[pg_test]
    fn remove_item_keeps_rows_and_destroys_the_token() {
        Spi::run(&format!(
            "SELECT plaid_sync.plaid_notify_item_created('item1', '{TOKEN}')"
        ))
        .unwrap();
        Spi::run("SELECT plaid_sync.plaid_remove_item('item1')").unwrap();
        assert_eq!(
            count(
                "SELECT count(*) FROM plaid_sync.items WHERE status = 'removed' AND access_token_encrypted IS NULL"
            ),
            1
        );
        assert_eq!(
            count("SELECT count(*) FROM plaid_sync.inbox WHERE status = 'pending'"),
            0
        );
    }

    #[pg_test]
    fn process_inbox_with_nothing_due_runs_nothing() {
        assert_eq!(count("SELECT plaid_sync.plaid_process_inbox()::bigint"), 0);
    }

    /// A parent and a child table with a foreign key, for `database::copy_in`.
    fn parent_child() -> pg_sys::Oid {
        Spi::run(
            "CREATE TABLE public.parent (id text PRIMARY KEY);
             CREATE TABLE public.child (id text PRIMARY KEY, parent text NOT NULL REFERENCES public.parent,
                                        n numeric NOT NULL, at timestamptz NOT NULL DEFAULT now(), note text);
             INSERT INTO public.parent VALUES ('p1')",
        )
        .unwrap();
        Spi::get_one::<pg_sys::Oid>(
            "SELECT oid FROM pg_constraint WHERE conname = 'child_parent_fkey'",
        )
        .unwrap()
        .unwrap()
    }

    fn copy(text: &str, checked: Option<pg_sys::Oid>) -> Result<u64, String> {
        crate::database::subtransaction(true, || {
            crate::database::copy_in(
                "public",
                "child",
                &["id", "parent", "n", "note"],
                text,
                checked,
            )
        })
    }

    #[pg_test]
    fn copy_in_loads_copy_text_with_its_escapes_and_the_defaults() {
        parent_child();
        assert_eq!(
            copy("a\tp1\t1.50\ttab\\there\\\\\nb\tp1\t-0\t\\N\n", None),
            Ok(2)
        );
        let rows = Spi::get_one::<String>(
            "SELECT string_agg(id || '|' || n || '|' || coalesce(note, 'NULL') || '|' || (at IS NOT NULL), ';' ORDER BY id)
               FROM public.child",
        )
        .unwrap();
        assert_eq!(
            rows.as_deref(),
            Some("a|1.50|tab\there\\|true;b|0|NULL|true")
        );
    }

    #[pg_test]
    fn copy_in_raises_on_a_bad_value_or_a_missing_parent_and_keeps_nothing() {
        parent_child();
        assert!(
            copy("a\tp1\tnot a number\t\\N\n", None)
                .unwrap_err()
                .contains("numeric")
        );
        assert!(
            copy("a\tp1\t1\t\\N\nb\tnope\t1\t\\N\n", None)
                .unwrap_err()
                .contains("foreign key")
        );
        assert_eq!(count("SELECT count(*) FROM public.child"), 0);
    }

    #[pg_test]
    fn a_checked_key_skips_only_its_own_triggers_and_the_role_comes_back() {
        let fk = parent_child();
        // The caller vouches for the key (here falsely, to see that its check was skipped).
        assert_eq!(copy("a\tnope\t1\t\\N\n", Some(fk)), Ok(1));
        assert_eq!(
            Spi::get_one::<String>("SELECT current_setting('session_replication_role')")
                .unwrap()
                .as_deref(),
            Some("origin")
        );
        // Any other trigger keeps every check and fires itself.
        Spi::run(
            "CREATE TABLE public.seen (id text);
             CREATE FUNCTION public.note_child() RETURNS trigger LANGUAGE plpgsql AS
                 $$BEGIN INSERT INTO public.seen VALUES (NEW.id); RETURN NULL; END$$;
             CREATE TRIGGER note AFTER INSERT ON public.child FOR EACH ROW EXECUTE FUNCTION public.note_child()",
        )
        .unwrap();
        assert!(
            copy("b\tnope\t1\t\\N\n", Some(fk))
                .unwrap_err()
                .contains("foreign key")
        );
        assert_eq!(copy("c\tp1\t1\t\\N\n", Some(fk)), Ok(1));
        assert_eq!(count("SELECT count(*) FROM public.seen WHERE id = 'c'"), 1);
        assert_eq!(
            Spi::get_one::<String>("SELECT current_setting('session_replication_role')")
                .unwrap()
                .as_deref(),
            Some("origin")
        );
    }
    /// One statement, kept per backend: a plan per set of parameter types (reading an int8
    /// as the int4 plan's would be wrong), a statement run from inside another's rows, and a
    /// plan Postgres re-makes when its table changes.
    #[pg_test]
    fn kept_plans_are_per_parameter_types_nest_and_follow_the_table() {
        use crate::database::{one, rows, run};
        const PLUS: &str = "SELECT ($1 + 1)::text";
        assert_eq!(one::<String>(PLUS, &[41i32.into()]).as_deref(), Some("42"));
        assert_eq!(
            one::<String>(PLUS, &[(1i64 << 40).into()]).as_deref(),
            Some("1099511627777")
        );
        assert_eq!(
            one::<String>(PLUS, &[1.5f64.into()]).as_deref(),
            Some("2.5")
        );
        run("CREATE TEMP TABLE kept (a int)", &[]);
        run("INSERT INTO kept VALUES (1), (2)", &[]);
        const READ: &str = "SELECT * FROM kept ORDER BY 1";
        let nested = rows(READ, &[], |r| {
            let a = r.get::<i32>(1).ok()??;
            one::<i32>("SELECT $1 * 10", &[a.into()])
        });
        assert_eq!(nested, vec![10, 20]);
        run("ALTER TABLE kept ADD COLUMN b text DEFAULT 'x'", &[]);
        assert_eq!(
            rows(READ, &[], |r| r.get::<String>(2).ok()?),
            vec!["x", "x"]
        );
    }
}
