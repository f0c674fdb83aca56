"""A sync run that only adds new transactions is loaded by COPY (src/store/transactions.rs),
and any run the COPY refuses is applied by SQL. These tests hold the COPY to what the SQL apply
stores, row for row, and check that each refusal falls back without losing or changing data."""

import json

import pytest

from conftest import USED_SECRETS
from test_correctness import Gen, page_text
from test_storage import assert_exact
from test_sync import announce, drain, webhook

# Every column the apply writes, as text (timestamps only as set or not: their values differ
# between two applies by design).
ROW = """SELECT transaction_id, account_id, amount::text, iso_currency_code, unofficial_currency_code,
                date::text, authorized_date::text, datetime::text, name, merchant_name, payment_channel,
                pending, pending_transaction_id, category::text, personal_finance_category::text,
                rest::text, absent::text, codec, raw_data, removed_at IS NULL, created_at IS NOT NULL
           FROM plaid_sync.transaction_rows WHERE item_id = %s ORDER BY transaction_id"""


def runs(su, item_id):
    return [r[0] for r in su.execute(
        "SELECT applied_by FROM plaid_sync.sync_runs WHERE item_id = %s AND product = 'transactions' ORDER BY id",
        (item_id,))]


def empty_item(emulator, su):
    item = emulator("items", count=1, days=1, per_day=0)["items"][0]
    USED_SECRETS.add(item["access_token"])
    su.execute("SELECT plaid_sync.plaid_notify_item_created(%s, %s)", (item["item_id"], item["access_token"]))
    drain(su)
    accounts = emulator("state", item_id=item["item_id"])["accounts"]
    return item["item_id"], accounts


def fitting(seed, accounts, n):
    """A generator and its first n transactions without a refused character (such an object
    keeps its raw text, which only the SQL apply stores)."""
    gen = Gen(seed, [a["account_id"] for a in accounts])
    texts = []
    while len(texts) < n:
        text, v = gen.txn(gen.ident())
        if not v["raw"]:
            texts.append(text)
    return gen, texts


def sync(emulator, su, item_id, pages):
    emulator("script_pages", item_id=item_id, pages=pages)
    webhook(emulator, su, item_id)
    drain(su)


def test_a_first_sync_is_copied_and_reads_back_exactly(emulator, su):
    item_id = announce(emulator, su, days=30, per_day=4)
    drain(su)
    assert runs(su, item_id) == ["copy"]
    assert assert_exact(emulator, su, item_id) == 120


def test_copied_rows_are_the_rows_the_sql_apply_stores(emulator, su):
    """Odd values (escapes, tabs and newlines, 10 kB names, numbers in every JSON form, missing
    keys, shuffled keys) over two pages by COPY; then the same objects again as `modified`,
    which only the SQL apply takes: it must find nothing to change."""
    item_id, accounts = empty_item(emulator, su)
    acct = json.dumps(accounts)
    gen, objects = fitting(17, accounts, 80)
    # A pending transaction on page 1 that a posted one on page 2 names.
    pending = objects[3].replace('"pending": false', '"pending": true')
    pid = json.loads(pending)["transaction_id"]
    posted_text, _ = gen.txn(gen.ident(), pending_id=pid)
    first = [pending] + objects[:3] + objects[4:40]
    second = objects[40:] + [posted_text]
    sync(emulator, su, item_id, [page_text(first, [], [], acct, "c1", True),
                                 page_text(second, [], [], acct, "c2", False)])
    assert runs(su, item_id)[-1] == "copy"
    copied = su.execute(ROW, (item_id,)).fetchall()
    assert len(copied) == 81
    by_id = {r[0]: r for r in copied}
    assert by_id[pid][19] is False, "the pending row a posted one names is removed"
    assert by_id[json.loads(posted_text)["transaction_id"]][19] is True
    sync(emulator, su, item_id, [page_text([], first + second, [], acct, "c3", False)])
    assert runs(su, item_id)[-1] == "upsert"
    assert su.execute(ROW, (item_id,)).fetchall() == copied


def test_a_run_that_adds_a_stored_transaction_again_is_applied_by_sql(emulator, su):
    item_id = announce(emulator, su, days=5, per_day=4)
    drain(su)
    old = su.execute("SELECT data FROM plaid_sync.transactions WHERE item_id = %s ORDER BY transaction_id LIMIT 1",
                     (item_id,)).fetchone()[0]
    again = dict(old, amount=4321.5, name="sent again")
    fresh = dict(old, transaction_id="fresh-1", amount=1.25)
    acct = json.dumps(emulator("state", item_id=item_id)["accounts"])
    sync(emulator, su, item_id, [page_text([json.dumps(fresh), json.dumps(again)], [], [], acct, "c9", False)])
    assert runs(su, item_id) == ["copy", "upsert"]
    got = dict(su.execute("SELECT transaction_id, data FROM plaid_sync.transactions WHERE transaction_id IN (%s, %s)",
                          (old["transaction_id"], "fresh-1")).fetchall())
    assert got == {old["transaction_id"]: again, "fresh-1": fresh}
    # The same id twice in one run: the last word wins, as in the SQL apply.
    twice = dict(fresh, transaction_id="twice", amount=2)
    sync(emulator, su, item_id, [page_text([json.dumps(twice)], [], [], acct, "d1", True),
                                 page_text([json.dumps(dict(twice, amount=3))], [], [], acct, "d2", False)])
    assert runs(su, item_id)[-1] == "upsert"
    assert su.execute("SELECT amount FROM plaid_sync.transactions WHERE transaction_id = 'twice'").fetchone()[0] == 3


def test_a_value_a_column_refuses_falls_back_and_only_that_row_is_left_out(emulator, su):
    item_id, accounts = empty_item(emulator, su)
    acct = json.dumps(accounts)
    _, good = fitting(1717, accounts, 10)
    bad = dict(json.loads(good[0]), transaction_id="bad-date", date="2026-02-30")
    sync(emulator, su, item_id, [page_text(good + [json.dumps(bad)], [], [], acct, "e1", False)])
    assert runs(su, item_id)[-1] == "upsert"
    assert su.execute("SELECT count(*) FROM plaid_sync.transaction_rows WHERE item_id = %s", (item_id,)).fetchone()[0] == 10
    assert su.execute("SELECT transaction_id FROM plaid_sync.sync_rejects WHERE item_id = %s AND resolved_at IS NULL",
                      (item_id,)).fetchall() == [("bad-date",)]


def test_a_trigger_on_transaction_rows_sees_every_copied_row(emulator, su):
    """The COPY skips the foreign key's per-row check (it locks the Item once instead) only
    while that key's triggers are the table's only ones: a user's trigger keeps every check
    and sees every row."""
    su.execute("""CREATE TABLE public.seen_rows (id text);
                  CREATE FUNCTION public.see_row() RETURNS trigger LANGUAGE plpgsql AS
                      $$BEGIN INSERT INTO public.seen_rows VALUES (NEW.transaction_id); RETURN NULL; END$$;
                  CREATE TRIGGER see_row AFTER INSERT ON plaid_sync.transaction_rows
                      FOR EACH ROW EXECUTE FUNCTION public.see_row()""")
    try:
        item_id = announce(emulator, su, days=5, per_day=4)
        drain(su)
        assert runs(su, item_id) == ["copy"]
        assert su.execute("""SELECT count(*) FROM public.seen_rows s JOIN plaid_sync.transaction_rows t
                               ON t.transaction_id = s.id WHERE t.item_id = %s""", (item_id,)).fetchone()[0] == 20
    finally:
        su.execute("DROP TRIGGER see_row ON plaid_sync.transaction_rows; DROP FUNCTION public.see_row(); "
                   "DROP TABLE public.seen_rows")


@pytest.mark.both_ways
def test_earlier_pages_are_held_up_to_two_mebibytes_then_staged(emulator, su):
    """A run's earlier pages stay in memory while they can be copied and come to 2 MiB at most
    (src/sync/transactions.rs): a first sync of 1,200 transactions (three pages of about
    570 kB) stages none, one of 8,000 (16 pages) stages those held each time the next would
    pass 2 MiB, and both are copied and read back exactly."""
    su.execute("""CREATE TABLE public.staged_pages (run bigint, page int);
                  CREATE FUNCTION public.see_page() RETURNS trigger LANGUAGE plpgsql AS
                      $$BEGIN INSERT INTO public.staged_pages VALUES (NEW.sync_run_id, NEW.page); RETURN NULL; END$$;
                  CREATE TRIGGER see_page AFTER INSERT ON plaid_sync.sync_pages
                      FOR EACH ROW EXECUTE FUNCTION public.see_page()""")
    try:
        small = announce(emulator, su, days=300, per_day=4)
        large = announce(emulator, su, days=2000, per_day=4)
        drain(su)
        got = {}
        for item_id, n in ((small, 1200), (large, 8000)):
            got[item_id] = su.execute(
                """SELECT r.pages, r.applied_by, (SELECT count(*) FROM public.staged_pages s WHERE s.run = r.id)
                     FROM plaid_sync.sync_runs r WHERE r.item_id = %s AND r.product = 'transactions'""",
                (item_id,)).fetchone()
            assert assert_exact(emulator, su, item_id) == n
        assert got[small] == (3, "copy", 0)
        # Three pages held, the fourth would pass 2 MiB: the four staged; and so on.
        assert got[large] == (16, "copy", 12)
        assert su.execute("SELECT count(*) FROM plaid_sync.sync_pages").fetchone()[0] == 0, "applied pages are discarded"
    finally:
        su.execute("DROP TRIGGER see_page ON plaid_sync.sync_pages; DROP FUNCTION public.see_page(); "
                   "DROP TABLE public.staged_pages")
