"""Transactions are stored lean (src/codec/lean.rs) and read back exactly. The view
plaid_sync.transactions rebuilds Plaid's object in `data` from the typed columns, the codec's
template and the stored rest; these tests hold every rebuilt object to the bytes Plaid sent."""

import json
import urllib.request

from conftest import SECRET
from test_sync import TOKENS, announce, drain, webhook


def plaid_objects(emulator, item_id):
    """Every transaction Plaid has for the Item, as the text a first sync receives (pages
    parsed by Postgres, as the workers' are: no float rounding on the way)."""
    texts, cursor = [], None
    while True:
        body = {"client_id": "e2e-client", "secret": SECRET, "access_token": TOKENS[item_id], "count": 500}
        if cursor:
            body["cursor"] = cursor
        req = urllib.request.Request(f"{emulator.url}/transactions/sync", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            text = r.read().decode()
        texts.append(text)
        page = json.loads(text)
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return texts


def assert_exact(emulator, su, item_id):
    pages = plaid_objects(emulator, item_id)
    rows = su.execute(
        """WITH plaid AS (
               SELECT e ->> 'transaction_id' AS id, e
                 FROM unnest(%s::jsonb[]) p, jsonb_array_elements(p -> 'added') e)
           SELECT count(*), count(t.transaction_id),
                  count(*) FILTER (WHERE t.data::text IS DISTINCT FROM plaid.e::text),
                  (array_agg(plaid.id) FILTER (WHERE t.data::text IS DISTINCT FROM plaid.e::text))[1]
             FROM plaid LEFT JOIN plaid_sync.live_transactions t ON t.transaction_id = plaid.id""",
        (pages,)).fetchone()
    assert rows[0] > 0 and rows[0] == rows[1], rows
    if rows[2]:
        got = su.execute("SELECT data::text FROM plaid_sync.transactions WHERE transaction_id = %s", (rows[3],)).fetchone()
        raise AssertionError(f"{rows[2]} objects differ, e.g. {rows[3]}: {got}")
    return rows[0]


def test_every_object_reads_back_exactly_and_the_row_keeps_only_the_rest(emulator, su):
    item_id = announce(emulator, su, days=60, per_day=4)
    drain(su)
    assert assert_exact(emulator, su, item_id) == 240
    # What the typed columns and the template hold is not stored again.
    rest = su.execute("""SELECT avg(pg_column_size(rest)), bool_or(rest ?| ARRAY['transaction_id', 'amount', 'location',
                                'payment_meta', 'website', 'account_id', 'date']), max(codec), min(codec)
                           FROM plaid_sync.transaction_rows WHERE item_id = %s""", (item_id,)).fetchone()
    assert rest[0] < 300 and rest[1] is False and rest[2] == rest[3] == 1, rest


def test_values_no_column_gives_back_exactly_are_kept_as_sent(emulator, su):
    item_id = announce(emulator, su, days=10, per_day=4)
    drain(su)
    ids = sorted(r[0] for r in su.execute("SELECT transaction_id FROM plaid_sync.transactions WHERE item_id = %s", (item_id,)))
    odd = [
        {"datetime": "2026-05-21T12:00:00+02:00", "authorized_date": None, "amount": "12.30"},
        {"datetime": "2026-05-21T12:00:00.250Z", "name": "Caf\u00e9 \"Zo\u00eb\" \\ \U0001F600", "merchant_name": None},
        {"location": {"address": None, "city": "Oslo", "region": None, "postal_code": None, "country": "NO",
                      "lat": 59.91, "lon": 10.75, "store_number": None}, "website": "", "logo_url": None},
        {"counterparties": [{"name": "Amazon", "type": "merchant", "website": None, "logo_url": None,
                             "entity_id": None, "confidence_level": "HIGH"}], "category": ["Shops", "Online"],
         "category_id": "19013000"},
        {"payment_meta": {"by_order_of": None, "payee": None, "payer": None, "payment_method": None,
                          "payment_processor": None, "ppd_id": None, "reason": None},  # a key short
         "personal_finance_category": None, "check_number": "0042", "amount": "-0.00"},
        {"pending": None, "category": [], "transaction_code": "purchase", "original_description": "AMZN MKTP"},
        {"amount": "1234567890.1234567890", "date": "2026-05-01", "authorized_datetime": "2026-04-30T23:59:59Z"},
    ]
    for tid, changes in zip(ids, odd):
        emulator("modify_transaction", item_id=item_id, transaction_id=tid, changes=changes)
    # Keys Plaid left out, typed and template ones.
    emulator("modify_transaction", item_id=item_id, transaction_id=ids[len(odd)], changes={},
             drop=["merchant_name", "location", "counterparties", "datetime", "personal_finance_category_icon_url"])
    webhook(emulator, su, item_id)
    drain(su)
    assert assert_exact(emulator, su, item_id) == 40
    absent = su.execute("SELECT absent FROM plaid_sync.transaction_rows WHERE transaction_id = %s", (ids[len(odd)],)).fetchone()[0]
    assert {"merchant_name", "location", "counterparties", "datetime"} <= set(absent)
    # The reconstructed object is queryable as jsonb, nested keys included.
    assert su.execute("SELECT data -> 'location' ->> 'city', data ->> 'datetime', jsonb_typeof(data -> 'amount') "
                      "FROM plaid_sync.transactions WHERE transaction_id = %s", (ids[2],)).fetchone()[0] == "Oslo"
    assert su.execute("SELECT data ->> 'datetime', data -> 'amount' FROM plaid_sync.transactions "
                      "WHERE transaction_id = %s", (ids[0],)).fetchone() == ("2026-05-21T12:00:00+02:00", 12.30)


def test_writes_through_the_view_read_back_as_written(emulator, su):
    item_id = announce(emulator, su, days=3)
    drain(su)
    obj = {"transaction_id": "by-hand", "amount": 5.5, "nested": {"a": [1, None, "x"]}, "website": None}
    su.execute("""INSERT INTO plaid_sync.transactions (transaction_id, item_id, account_id, amount, date, data)
                  VALUES ('by-hand', %s, 'acc', 5.5, '2026-01-02', %s)""", (item_id, json.dumps(obj)))
    assert su.execute("SELECT data, pending, created_at IS NOT NULL FROM plaid_sync.transactions "
                      "WHERE transaction_id = 'by-hand'").fetchone() == (obj, False, True)
    su.execute("UPDATE plaid_sync.transactions SET data = data || '{\"note\": 1}', removed_at = now() "
               "WHERE transaction_id = 'by-hand'")
    assert su.execute("SELECT data, removed_at IS NOT NULL, date::text FROM plaid_sync.transactions "
                      "WHERE transaction_id = 'by-hand'").fetchone() == (dict(obj, note=1), True, "2026-01-02")
    su.execute("DELETE FROM plaid_sync.transactions WHERE transaction_id = 'by-hand'")
    assert su.execute("SELECT count(*) FROM plaid_sync.transaction_rows WHERE transaction_id = 'by-hand'").fetchone()[0] == 0
