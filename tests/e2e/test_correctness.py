"""Nothing Plaid sends, and nothing a backend does in the documented order, leaves an
Item wrong or stuck: a removed Item announced again, text jsonb refuses, a transaction our
code cannot apply, and a property test of the apply path over generated pages."""

import hashlib
import json
import random
from decimal import Decimal

import pytest

from conftest import USED_SECRETS
from test_sync import TOKENS, announce, assert_matches_emulator, drain, webhook


def live_ids(su, item_id):
    return {r[0] for r in su.execute(
        "SELECT transaction_id FROM plaid_sync.live_transactions WHERE item_id = %s", (item_id,))}


@pytest.mark.both_ways
@pytest.mark.parametrize("at_plaid", [False, True])
def test_a_removed_item_announced_again_syncs_from_the_start(emulator, su, at_plaid):
    item_id = announce(emulator, su, days=30)
    drain(su)
    assert_matches_emulator(emulator, su, item_id)
    su.execute("SELECT plaid_sync.plaid_remove_item(%s, %s)", (item_id, at_plaid))
    drain(su)  # with at_plaid, the job calls /item/remove and destroys the token
    assert live_ids(su, item_id) == set()
    # Meanwhile one transaction goes away at Plaid: it must stay removed here.
    gone = sorted(emulator("state", item_id=item_id)["transactions"])[0]
    emulator("remove_transaction", item_id=item_id, transaction_id=gone)
    if at_plaid:
        assert su.execute("SELECT access_token_encrypted IS NULL FROM plaid_sync.items WHERE item_id = %s",
                          (item_id,)).fetchone()[0]
        TOKENS[item_id] = emulator("new_token", item_id=item_id)["access_token"]
        USED_SECRETS.add(TOKENS[item_id])

    su.execute("SELECT plaid_sync.plaid_notify_item_created(%s, %s)", (item_id, TOKENS[item_id]))
    drain(su)
    assert su.execute("SELECT status FROM plaid_sync.items WHERE item_id = %s", (item_id,)).fetchone()[0] == "healthy"
    assert_matches_emulator(emulator, su, item_id)
    assert len(live_ids(su, item_id)) > 50
    assert su.execute("SELECT removed_at IS NOT NULL FROM plaid_sync.transactions WHERE transaction_id = %s",
                      (gone,)).fetchone()[0]
    assert su.execute("SELECT count(*) FILTER (WHERE removed_at IS NULL), count(*) FROM plaid_sync.accounts "
                      "WHERE item_id = %s", (item_id,)).fetchone() == (3, 3)
    # The first sync of the new announcement started from an empty cursor.
    first = [r for r in emulator("requests")["requests"] if r["path"] == "/transactions/sync"][-1]
    assert first["cursor"] is None


@pytest.mark.both_ways
def test_remove_at_plaid_queued_then_announced_again_keeps_the_new_token(emulator, su):
    item_id = announce(emulator, su, days=5)
    drain(su)
    with su.transaction():  # both queued before either runs, whoever runs the jobs
        su.execute("SELECT plaid_sync.plaid_remove_item(%s, true)", (item_id,))
        su.execute("SELECT plaid_sync.plaid_notify_item_created(%s, %s)", (item_id, TOKENS[item_id]))
    drain(su)
    row = su.execute("SELECT status, access_token_encrypted IS NOT NULL FROM plaid_sync.items WHERE item_id = %s",
                     (item_id,)).fetchone()
    assert row == ("healthy", True)
    note = su.execute("SELECT last_error FROM plaid_sync.inbox WHERE item_id = %s AND webhook_code = 'REMOVE'",
                      (item_id,)).fetchone()[0]
    assert note == "skipped: the Item was announced again"
    h = hashlib.sha256(TOKENS[item_id].encode()).hexdigest()[:12]
    assert not [r for r in emulator("requests")["requests"] if r["path"] == "/item/remove" and r["access_token_hash"] == h]


def test_text_jsonb_refuses_is_stored_losslessly(emulator, su):
    item_id = announce(emulator, su, days=10)
    drain(su)
    acct = emulator("state", item_id=item_id)["accounts"][0]["account_id"]
    emulator("modify_account", item_id=item_id, account_id=acct, changes={"official_name": "Gold\x00Card"})
    nul, lone, fine = emulator("add_transactions", item_id=item_id, transactions=[
        {"amount": "12.34", "name": "Caf\x00e"},
        {"amount": "-5.00", "name": "bad \ud800 half"},
        {"amount": "7.77", "name": "fine \U0001F600 \u200f"},
    ])["transaction_ids"]
    webhook(emulator, su, item_id)
    su.execute("SELECT plaid_sync.plaid_notify_item_updated(%s)", (item_id,))  # re-reads the accounts
    drain(su)
    assert su.execute("SELECT status FROM plaid_sync.items WHERE item_id = %s", (item_id,)).fetchone()[0] == "healthy"
    assert su.execute("SELECT count(*) FROM plaid_sync.inbox WHERE item_id = %s AND status <> 'done'",
                      (item_id,)).fetchone()[0] == 0
    rows = {r[0]: r[1:] for r in su.execute(
        "SELECT transaction_id, name, data ->> 'name', raw_data, amount::text FROM plaid_sync.transactions "
        "WHERE transaction_id = ANY(%s)", ([nul, lone, fine],))}
    assert rows[nul][:2] == ("Caf\ufffde", "Caf\ufffde")
    assert rows[lone][:2] == ("bad \ufffd half", "bad \ufffd half")
    assert rows[fine][:3] == ("fine \U0001F600 \u200f", "fine \U0001F600 \u200f", None)
    # raw_data is Plaid's object exactly as sent.
    state = emulator("state", item_id=item_id)["transactions"]
    for tid, name in [(nul, "Caf\x00e"), (lone, "bad \ud800 half")]:
        raw = json.loads(rows[tid][2])
        assert raw["name"] == name and raw["transaction_id"] == tid
        assert {k: v for k, v in raw.items() if k != "amount"} == {k: v for k, v in state[tid].items() if k != "amount"}
    assert Decimal(rows[nul][3]) == Decimal("12.34")
    a = su.execute("SELECT official_name, raw_data FROM plaid_sync.accounts WHERE account_id = %s", (acct,)).fetchone()
    assert a[0] == "Gold\ufffdCard" and json.loads(a[1])["official_name"] == "Gold\x00Card"
    assert_matches_emulator(emulator, su, item_id)


def test_a_transaction_that_cannot_be_applied_is_left_out_and_reported(emulator, su):
    item_id = announce(emulator, su, days=10)
    drain(su)
    victim = sorted(live_ids(su, item_id))[0]
    before = su.execute("SELECT date, data FROM plaid_sync.transactions WHERE transaction_id = %s", (victim,)).fetchone()
    emulator("modify_transaction", item_id=item_id, transaction_id=victim, changes={"date": "2024-02-30"})
    (fresh,) = emulator("add_transactions", item_id=item_id, transactions=[{"amount": "1.00"}])["transaction_ids"]
    webhook(emulator, su, item_id)
    drain(su)
    job = su.execute("SELECT status, last_error FROM plaid_sync.inbox WHERE item_id = %s ORDER BY id DESC LIMIT 1",
                     (item_id,)).fetchone()
    assert job[0] == "done" and "sync_rejects" in job[1]
    assert fresh in live_ids(su, item_id)  # the rest of the sync was applied
    assert su.execute("SELECT date, data FROM plaid_sync.transactions WHERE transaction_id = %s",
                      (victim,)).fetchone() == before
    rej = su.execute("SELECT r.transaction_id, r.error, r.request_id = ANY(s.request_ids), s.rejected, s.outcome, "
                     "r.data::jsonb ->> 'date' FROM plaid_sync.sync_rejects r JOIN plaid_sync.sync_runs s "
                     "ON s.id = r.sync_run_id WHERE r.item_id = %s", (item_id,)).fetchall()
    assert len(rej) == 1
    tid, error, known_request, rejected, outcome, date = rej[0]
    assert (tid, known_request, rejected, outcome, date) == (victim, True, 1, "ok", "2024-02-30")
    assert "date" in error
    health = su.execute("SELECT status, rejected_transactions FROM plaid_sync.item_health WHERE item_id = %s",
                        (item_id,)).fetchone()
    assert health == ("healthy", 1)

    # Plaid corrects it: the next sync applies it and the reject is resolved.
    emulator("modify_transaction", item_id=item_id, transaction_id=victim, changes={"date": "2024-02-28"})
    webhook(emulator, su, item_id)
    drain(su)
    assert str(su.execute("SELECT date FROM plaid_sync.transactions WHERE transaction_id = %s",
                          (victim,)).fetchone()[0]) == "2024-02-28"
    assert su.execute("SELECT rejected_transactions FROM plaid_sync.item_health WHERE item_id = %s",
                      (item_id,)).fetchone()[0] == 0
    assert_matches_emulator(emulator, su, item_id)


# ---- The property test: generated pages, the mirror checked against their net effect. ----

STRINGS = ["", "x" * 10_000, "\U0001F600 emoji", "\u200fRTL mark \u202e", "ctl \x01\x1f\t\n\r", "NUL\x00inside",
           "lone \ud800 high", "lone \udfff low", "plain Merchant", "quote \" backslash \\ slash /"]
NUMBERS = ["1e2", "-1.5E-7", "0.1234567890123456789012", "12.50", "-0", "3", "1E+3", "-987654321.987654321"]
NULLABLE = ["iso_currency_code", "unofficial_currency_code", "category", "category_id", "check_number",
            "merchant_name", "original_description", "pending_transaction_id", "account_owner", "logo_url",
            "website", "authorized_date", "authorized_datetime", "datetime", "transaction_code",
            "personal_finance_category"]


def jtext(s, rng):
    """A JSON string literal: escaped or raw UTF-8 (raw only where every character can be)."""
    if any(0xD800 <= ord(c) <= 0xDFFF for c in s) or rng.random() < 0.5:
        return json.dumps(s)
    return json.dumps(s, ensure_ascii=False)


def storable(s):
    """What the typed columns hold: NUL and lone surrogates replaced by U+FFFD."""
    return "".join("\ufffd" if c == "\x00" or 0xD800 <= ord(c) <= 0xDFFF else c for c in s)


def refused(s):
    return storable(s) != s


class Gen:
    def __init__(self, seed, accounts):
        self.rng = random.Random(seed)
        self.accounts = accounts
        self.n = 0

    def ident(self):
        self.n += 1
        return f"gen{self.n:05d}{self.rng.randrange(10**6):06d}"

    def txn(self, tid, pending_id=None, bad=False):
        """(JSON text, the values it carries) for one transaction."""
        r = self.rng
        name, amount = r.choice(STRINGS), r.choice(NUMBERS)
        fields = {
            "transaction_id": json.dumps(tid), "account_id": json.dumps(r.choice(self.accounts)),
            "amount": '"not a number"' if bad else amount, "date": json.dumps(f"2024-0{r.randint(1, 9)}-1{r.randint(0, 9)}"),
            "name": jtext(name, r), "pending": "true" if r.random() < 0.3 else "false",
            "payment_channel": '"online"', "transaction_type": '"place"',
            "location": '{"address": null, "city": null, "region": null, "postal_code": null, "country": null, '
                        '"lat": null, "lon": null, "store_number": null}',
            "payment_meta": '{"reference_number": null, "ppd_id": null, "payee": null, "by_order_of": null, '
                            '"payer": null, "payment_method": null, "payment_processor": null, "reason": null}',
        }
        merchant = None
        for f in NULLABLE:
            if r.random() < 0.5:
                fields[f] = "null"
            elif f == "merchant_name":
                merchant = r.choice(STRINGS)
                fields[f] = jtext(merchant, r)
            elif f in ("category",):
                fields[f] = '["Food and Drink", "Restaurants"]'
            elif f == "personal_finance_category":
                fields[f] = '{"primary": "FOOD_AND_DRINK", "detailed": "FOOD_AND_DRINK_COFFEE"}'
            elif f in ("authorized_date",):
                fields[f] = '"2024-01-02"'
            elif f in ("authorized_datetime", "datetime"):
                fields[f] = '"2024-01-02T11:00:00Z"'
            elif f == "pending_transaction_id":
                fields[f] = "null"
            elif f in ("iso_currency_code",):
                fields[f] = '"USD"'
            else:
                fields[f] = jtext(r.choice(STRINGS[:4] + ["x"]), r)
        if pending_id:
            fields["pending_transaction_id"] = json.dumps(pending_id)
            fields["pending"] = "false"
        keys = list(fields)
        r.shuffle(keys)
        text = "{" + ", ".join(f"{json.dumps(k)}: {fields[k]}" for k in keys) + "}"
        raw_has_refused = refused(name) or (merchant is not None and refused(merchant))
        return text, {"amount": amount, "name": name, "merchant_name": merchant,
                      "pending": fields["pending"] == "true", "pending_transaction_id": pending_id,
                      "raw": raw_has_refused, "text": text, "bad": bad}


def page_text(added, modified, removed, accounts_json, cursor, has_more):
    return ('{"accounts": ' + accounts_json + ', "added": [' + ", ".join(added) + '], "modified": ['
            + ", ".join(modified) + '], "removed": [' + ", ".join(json.dumps({"transaction_id": t}) for t in removed)
            + f'], "next_cursor": {json.dumps(cursor)}, "has_more": {"true" if has_more else "false"}, '
            '"request_id": null, "transactions_update_status": "HISTORICAL_UPDATE_COMPLETE"}')


@pytest.mark.slow
def test_property_generated_pages_mirror_their_net_effect(emulator, su):
    item = emulator("items", count=1, days=1, per_day=0)["items"][0]
    USED_SECRETS.add(item["access_token"])
    item_id = item["item_id"]
    su.execute("SELECT plaid_sync.plaid_notify_item_created(%s, %s)", (item_id, item["access_token"]))
    drain(su)
    accounts = emulator("state", item_id=item_id)["accounts"]
    gen = Gen(20261201, [a["account_id"] for a in accounts])
    model = {}       # id -> {"v": values of its last upsert, "removed": bool}
    never_seen = set()
    total_bad = 0
    for rnd in range(8):
        pages, events = [], []   # events per page: (upserts, removals)
        touched, bad_ids, posted_over = set(), set(), set()
        for p in range(gen.rng.randint(1, 3)):
            added, modified, removed, ups = [], [], [], []
            for _ in range(gen.rng.randint(0, 25)):
                tid = gen.ident()
                bad = rnd == 5 and gen.rng.random() < 0.15
                pend = None
                olds = [i for i, m in model.items() if m["v"]["pending"] and not m["removed"] and i not in touched]
                if olds and gen.rng.random() < 0.1:
                    pend = gen.rng.choice(olds)
                    touched.add(pend)
                    posted_over.add(pend)
                text, v = gen.txn(tid, pend, bad)
                added.append(text)
                ups.append((tid, v))
                touched.add(tid)
                if bad:
                    bad_ids.add(tid)
            # The same transactions again: modified (on this or a later page) or removed.
            earlier = [i for i in dict.fromkeys(list(model) + [u[0] for e in events for u in e[0]])
                       if i not in bad_ids and i not in posted_over]
            for tid in gen.rng.sample(earlier, min(len(earlier), gen.rng.randint(0, 6))):
                text, v = gen.txn(tid)
                modified.append(text)
                ups.append((tid, v))
                touched.add(tid)
            rems = gen.rng.sample(earlier, min(len(earlier), gen.rng.randint(0, 3)))
            for _ in range(gen.rng.randint(0, 2)):
                ghost = gen.ident()
                never_seen.add(ghost)
                rems.append(ghost)
            rems = [t for t in rems if t not in {u[0] for u in ups}]  # one word per id per page
            removed.extend(rems)
            touched.update(rems)
            acct_json = json.dumps([dict(a, official_name="Gold\x00Card") if i == 0 and rnd == 3 else a
                                    for i, a in enumerate(accounts)])
            pages.append((added, modified, removed, acct_json))
            events.append((ups, rems))
        texts = [page_text(a, m, r, acc, f"gen-{rnd}-{i}", i < len(pages) - 1)
                 for i, (a, m, r, acc) in enumerate(pages)]
        total_bad += len(bad_ids)
        emulator("script_pages", item_id=item_id, pages=texts)
        webhook(emulator, su, item_id)
        drain(su)

        # The model: pages in order; within a page, removals after upserts; a pending row
        # that any version of a posted row names is removed; a rejected id keeps what it had.
        for ups, rems in events:
            for tid, v in ups:
                if tid not in bad_ids:
                    model[tid] = {"v": v, "removed": False}
            for tid in rems:
                if tid in model and tid not in bad_ids:
                    model[tid]["removed"] = True
        for ups, _ in events:
            for tid, v in ups:
                if tid not in bad_ids and v["pending_transaction_id"] in model:
                    model[v["pending_transaction_id"]]["removed"] = True

        job = su.execute("SELECT status FROM plaid_sync.inbox WHERE item_id = %s ORDER BY id DESC LIMIT 1",
                         (item_id,)).fetchone()[0]
        assert job == "done", f"round {rnd}"
        assert su.execute("SELECT transactions_cursor FROM plaid_sync.items WHERE item_id = %s",
                          (item_id,)).fetchone()[0] == f"gen-{rnd}-{len(pages) - 1}"
        rows = {r[0]: r[1:] for r in su.execute(
            "SELECT transaction_id, amount::text, name, merchant_name, pending, pending_transaction_id, "
            "removed_at IS NOT NULL, data ->> 'name', raw_data FROM plaid_sync.transactions WHERE item_id = %s",
            (item_id,))}
        assert set(rows) == set(model), f"round {rnd}"
        for tid, m in model.items():
            v, row = m["v"], rows[tid]
            assert Decimal(row[0]) == Decimal(v["amount"]), (rnd, tid)
            assert row[1] == storable(v["name"]) == row[6], (rnd, tid)
            assert row[2] == (None if v["merchant_name"] is None else storable(v["merchant_name"]))
            assert (row[3], row[4], row[5]) == (v["pending"], v["pending_transaction_id"], m["removed"]), (rnd, tid)
            if v["raw"]:
                assert row[7] == v["text"], (rnd, tid)  # exactly as sent
            else:
                assert row[7] is None, (rnd, tid)
        assert not never_seen & set(rows)
        rejects = {r[0] for r in su.execute(
            "SELECT transaction_id FROM plaid_sync.sync_rejects WHERE item_id = %s AND sync_run_id = "
            "(SELECT max(id) FROM plaid_sync.sync_runs WHERE item_id = %s)", (item_id, item_id))}
        assert rejects == bad_ids, f"round {rnd}"
        if rnd == 3:
            a = su.execute("SELECT official_name, raw_data FROM plaid_sync.accounts WHERE account_id = %s",
                           (accounts[0]["account_id"],)).fetchone()
            assert a[0] == "Gold\ufffdCard" and json.loads(a[1])["official_name"] == "Gold\x00Card"
    assert total_bad > 0, "the seed generated no transaction the apply must reject"
