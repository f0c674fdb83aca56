"""One database per server: while the workers run, the extension can be created only in the
database they serve (plaid_sync.database), with a hint that says how to change it."""

import psycopg
import pytest

from conftest import make_cluster


def test_create_extension_elsewhere_fails_with_a_hint(emulator):
    c = make_cluster("onedb", emulator, **{"plaid_sync.database": "'served'", "plaid_sync.workers": 1})
    c.start()
    try:
        c.create_database("served")
        with c.connect("served") as conn:
            assert conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'plaid_sync'").fetchone()
        c.create_database("other", extension=False)
        with c.connect("other") as conn:
            with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as e:
                conn.execute("CREATE EXTENSION plaid_sync")
            assert 'serve database "served"' in str(e.value)
            assert "plaid_sync.database = 'other'" in e.value.diag.message_hint
            # Nothing was created.
            assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'plaid_sync'").fetchone()[0] == 0
    finally:
        c.stop()
