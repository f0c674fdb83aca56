#!/usr/bin/env python3
"""A local Plaid emulator, faithful to plaid-openapi 2020-09-14 for the endpoints plaid_sync
uses, plus a control interface for tests (under /_emulator/).

Data is generated deterministically from a seed: each Item gets accounts and a history of
transactions; advancing emulated time adds transactions, posts pending ones (the posted row
carries pending_transaction_id, the pending one is removed), modifies and removes some.
Every change is an event in the Item's log; a cursor is an opaque, signed position in that
log, and /transactions/sync pages through it `count` at a time (max 500).

Run: python3 plaid_emulator.py --port 8765 [--seed 1]
"""

import argparse
import base64
import datetime as dt
import hashlib
import hmac
import json
import random
import re
import threading
import time
import urllib.request
import uuid
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

import plaid_item_state
import plaid_link
import plaid_products

CLIENT_ID = "emulator-client-id"
SECRET = "emulator-secret"
CURSOR_KEY = b"plaid-emulator-cursor-key"
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
MERCHANTS = [("Walmart", "GENERAL_MERCHANDISE"), ("Starbucks", "FOOD_AND_DRINK"),
             ("Uber", "TRANSPORTATION"), ("Amazon", "GENERAL_MERCHANDISE"),
             ("Shell", "TRANSPORTATION"), ("Whole Foods", "FOOD_AND_DRINK"),
             ("Netflix", "ENTERTAINMENT"), ("Payroll", "INCOME")]

FIELDS = {  # endpoint -> (required, optional) request fields, as the spec lists them
    "/item/get": ({"access_token"}, set()),
    "/accounts/get": ({"access_token"}, {"options"}),
    "/transactions/sync": ({"access_token"}, {"cursor", "count", "options"}),
    "/transactions/refresh": ({"access_token"}, set()),
    "/accounts/balance/get": ({"access_token"}, {"options"}),
    "/transactions/recurring/get": ({"access_token"}, {"account_ids", "options"}),
    "/liabilities/get": ({"access_token"}, {"options"}),
    "/investments/holdings/get": ({"access_token"}, {"options"}),
    "/investments/transactions/get": ({"access_token", "start_date", "end_date"}, {"options"}),
    "/institutions/get_by_id": ({"institution_id", "country_codes"}, {"options"}),
    "/item/webhook/update": ({"access_token"}, {"webhook"}),
    "/item/remove": ({"access_token"}, {"reason_code", "reason_note"}),
    "/webhook_verification_key/get": ({"key_id"}, set()),
    "/sandbox/public_token/create": ({"institution_id", "initial_products"}, {"options", "user_token"}),
    "/link/token/create": plaid_link.LINK_FIELDS,
    "/item/public_token/exchange": ({"public_token"}, set()),
    "/sandbox/item/fire_webhook": ({"access_token", "webhook_code"}, {"webhook_type"}),
    "/sandbox/item/reset_login": ({"access_token"}, set()),
}

ERRORS = {
    "INVALID_API_KEYS": (400, "INVALID_INPUT", "invalid client_id or secret provided"),
    "INVALID_ACCESS_TOKEN": (400, "INVALID_INPUT", "could not find matching access token"),
    "ITEM_LOGIN_REQUIRED": (400, "ITEM_ERROR", "the login details of this item have changed (credentials, MFA, or required user action) and a user login is required to update this information. use Link's update mode to restore the item to a good state"),
    "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION": (400, "TRANSACTIONS_ERROR", "Underlying transaction data changed since last page was fetched. Please restart pagination from last update."),
    "RATE_LIMIT": (429, "RATE_LIMIT_EXCEEDED", "rate limit exceeded for attempts to access this item. please try again later"),
    "INTERNAL_SERVER_ERROR": (500, "API_ERROR", "an unexpected error occurred"),
    "INVALID_WEBHOOK_VERIFICATION_KEY_ID": (400, "INVALID_INPUT", "invalid key_id provided. note that key_ids are specific to Plaid environments, and verification requests must be made to the same environment that the webhook was sent from"),
    "INVALID_FIELD": (400, "INVALID_REQUEST", "cursor is not valid"),
    "INSTITUTION_NOT_FOUND": (400, "INSTITUTION_ERROR", "this institution was not found. Please check the ID supplied"),
}


class PlaidFault(Exception):
    def __init__(self, code, message=None, status=None, error_type=None):
        s, t, m = ERRORS.get(code, (400, "INVALID_REQUEST", code.lower()))
        self.status, self.body = status or s, {
            "error_type": error_type or t, "error_code": code, "error_message": message or m,
            "display_message": None, "request_id": request_id()}


RID_SLOT = "request-id-slot-5b1f"   # where a cached page's request_id goes
PAGE_CACHE_BYTES = 512 * 2**20


def request_id():
    return "".join(random.choice(BASE62) for _ in range(15))


def money(d: Decimal):
    """JSON numbers keep their exact digits: Decimals are written as raw number text."""
    return {"__num__": str(d)}


def dumps(obj, **kw):
    text = json.dumps(obj, **kw)
    return re.sub(r'\{"__num__": "([-0-9.eE+]+)"\}', r"\1", text)


class Item:
    def __init__(self, world, item_id, institution_id, seed, days, per_day):
        self.world, self.item_id, self.institution_id = world, item_id, institution_id
        self.rng = random.Random(seed)
        self.access_token = f"access-sandbox-{uuid.UUID(int=self.rng.getrandbits(128))}"
        self.webhook = None
        self.error = None
        self.removed = False
        self.scripted = []  # JSON texts served by /transactions/sync before the log (tests)
        self.events = []        # (kind, transaction_id, object-or-None)
        self.txns = {}          # live transactions by id
        self.accounts = []
        self.synced_once = False
        self.last_update, self.last_failed, self.last_webhook = time.time(), None, None
        plaid_products.init_item(self)
        for i, (name, sub, typ) in enumerate([("Plaid Checking", "checking", "depository"),
                                              ("Plaid Saving", "savings", "depository"),
                                              ("Plaid Credit Card", "credit card", "credit")]):
            self.accounts.append({
                "account_id": self.ident(), "balances": {
                    "available": money(Decimal(self.rng.randint(100, 99999)) / 100),
                    "current": money(Decimal(self.rng.randint(100, 99999)) / 100),
                    "iso_currency_code": "USD", "limit": money(Decimal(5000)) if typ == "credit" else None,
                    "unofficial_currency_code": None},
                "mask": f"{i}{self.rng.randint(100, 999)}", "name": name,
                "official_name": f"Plaid {sub.title()} Account", "subtype": sub, "type": typ,
                "holder_category": "personal"})
        self.today = world.today
        for d in range(days, 0, -1):
            self.generate_day(self.today - dt.timedelta(days=d), per_day, pending_ok=d <= 2)

    def ident(self):
        return "".join(self.rng.choice(BASE62) for _ in range(37))

    def transaction(self, account_id, date, amount, name, pending, merchant=None, pfc="GENERAL_MERCHANDISE", pending_id=None):
        return {
            "account_id": account_id, "account_owner": None, "amount": money(Decimal(amount)),
            "iso_currency_code": "USD", "unofficial_currency_code": None, "check_number": None,
            "counterparties": [], "date": date.isoformat(),
            "datetime": f"{date.isoformat()}T12:00:00Z" if not pending else None,
            "authorized_date": date.isoformat(), "authorized_datetime": None,
            "location": {"address": None, "city": None, "region": None, "postal_code": None,
                         "country": None, "lat": None, "lon": None, "store_number": None},
            "name": name, "merchant_name": merchant, "merchant_entity_id": None, "logo_url": None,
            "website": None,
            "payment_meta": {"by_order_of": None, "payee": None, "payer": None, "payment_method": None,
                             "payment_processor": None, "ppd_id": None, "reason": None, "reference_number": None},
            "payment_channel": self.rng.choice(["online", "in store", "other"]), "pending": pending,
            "pending_transaction_id": pending_id,
            "personal_finance_category": {"primary": pfc, "detailed": f"{pfc}_OTHER", "confidence_level": "HIGH"},
            "personal_finance_category_icon_url": f"https://plaid-category-icons.plaid.com/PFC_{pfc}.png",
            "transaction_id": self.ident(), "transaction_code": None, "transaction_type": "place"}

    def log(self, kind, txn_id, obj):
        if kind == "removed":
            obj = {"account_id": self.txns.get(txn_id, {}).get("account_id", ""), "transaction_id": txn_id}
            self.events.append((kind, txn_id, obj))
            self.txns.pop(txn_id, None)
            return
        self.events.append((kind, txn_id, json.loads(json.dumps(obj))))
        self.txns[txn_id] = obj

    def add(self, obj):
        self.log("added", obj["transaction_id"], obj)
        return obj

    def generate_day(self, date, per_day, pending_ok):
        for _ in range(per_day):
            merchant, pfc = self.rng.choice(MERCHANTS)
            cents = self.rng.randint(-50000, 50000) or 1
            acc = self.rng.choice(self.accounts)["account_id"]
            self.add(self.transaction(acc, date, Decimal(cents) / 100, f"{merchant.upper()} {self.rng.randint(1000, 9999)}",
                                      pending_ok and self.rng.random() < 0.3, merchant, pfc))

    def advance(self, days, per_day):
        self.last_update = time.time()
        for _ in range(days):
            self.today += dt.timedelta(days=1)
            # Pending transactions older than a day post: remove the pending, add the posted.
            for t in [t for t in list(self.txns.values()) if t["pending"]]:
                if dt.date.fromisoformat(t["date"]) < self.today - dt.timedelta(days=1):
                    posted = dict(t, pending=False, transaction_id=self.ident(),
                                  pending_transaction_id=t["transaction_id"], datetime=f"{t['date']}T12:00:00Z")
                    self.log("removed", t["transaction_id"], None)
                    self.add(posted)
            live = [t for t in self.txns.values() if not t["pending"]]
            if live and self.rng.random() < 0.5:  # a merchant name gets cleaned up
                t = dict(self.rng.choice(live))
                t["merchant_name"] = (t["merchant_name"] or "") + " Inc."
                self.log("modified", t["transaction_id"], t)
            if live and self.rng.random() < 0.2:  # a duplicate disappears
                self.log("removed", self.rng.choice(live)["transaction_id"], None)
            self.generate_day(self.today, per_day, pending_ok=True)


class World:
    def __init__(self, seed):
        self.lock = threading.RLock()
        self.seed = seed
        self.rng = random.Random(seed)
        # Today, as Postgres sees it: windows plaid_sync computes from current_date line up.
        self.today = dt.datetime.now(dt.timezone.utc).date()
        self.items = {}
        self.by_token = {}
        self.public_tokens = {}    # public token -> (Item, created at)
        self.link_tokens = {}      # link token -> what it was made with (no credentials)
        self.exchanged = 0
        self.requests = []
        self.faults = []           # dicts: endpoint, kind, page, times, delay_ms
        self.latency_ms = 0        # a number, or {endpoint: ms, "default": ms}
        # Plaid's rate limits, enforced when set: {endpoint: (per client, per Item) per minute},
        # counted over sliding 60 s windows of the calls received.
        self.rate_limits = {}
        self.windows = {}          # (endpoint,) or (endpoint, token) -> deque of times
        self.throttled = 0
        self.connections_opened = 0
        # /transactions/sync answers as JSON text, for as long as no control call changed the
        # world (`version`): a page asked for again costs the emulator nothing, so what a
        # benchmark measures is plaid_sync, not Python building the same page twice.
        self.version = 0
        self.page_cache = {}
        self.page_cache_bytes = 0
        self.calls = {}            # endpoint -> calls answered 200
        self.billed = {}           # "item_id endpoint" -> paid calls answered 200 (Plaid bills these)
        self.default_days, self.default_per_day = 90, 3
        self.client_id, self.secret = CLIENT_ID, SECRET
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.kid = str(uuid.UUID(int=self.rng.getrandbits(128)))
        self.expired_keys = {}     # kid -> private key, served with expired_at set

    def new_item(self, institution_id="ins_109508", days=None, per_day=None, item_id=None):
        seed = self.rng.getrandbits(64)
        r = random.Random(seed)
        iid = item_id or "".join(r.choice(BASE62) for _ in range(37))
        item = Item(self, iid, institution_id, seed, self.default_days if days is None else days,
                    self.default_per_day if per_day is None else per_day)
        self.items[iid] = item
        self.by_token[item.access_token] = item
        return item

    def jwk(self, kid, key, expired=False):
        n = key.public_key().public_numbers()
        b = lambda i: base64.urlsafe_b64encode(i.to_bytes(32, "big")).rstrip(b"=").decode()
        return {"alg": "ES256", "created_at": 1700000000, "crv": "P-256",
                "expired_at": 1700000500 if expired else None, "kid": kid, "kty": "EC", "use": "sig",
                "x": b(n.x), "y": b(n.y)}

    def sign(self, body: bytes, iat=None, key=None, kid=None, alg="ES256"):
        b64 = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()
        header = b64(json.dumps({"alg": alg, "kid": kid or self.kid, "typ": "JWT"}, separators=(",", ":")).encode())
        payload = b64(json.dumps({"iat": int(time.time()) if iat is None else iat,
                                  "request_body_sha256": hashlib.sha256(body).hexdigest()}, separators=(",", ":")).encode())
        der = (key or self.key).sign(f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{header}.{payload}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def webhook(self, item, webhook_type, webhook_code, **extra):
        body = {"webhook_type": webhook_type, "webhook_code": webhook_code, "item_id": item.item_id,
                "environment": "sandbox", **extra}
        item.last_webhook = (time.time(), webhook_code)
        if webhook_code == "SYNC_UPDATES_AVAILABLE":
            body.setdefault("initial_update_complete", True)
            body.setdefault("historical_update_complete", True)
        raw = json.dumps(body, indent=2, sort_keys=True).encode()
        return raw, self.sign(raw)


def cursor_for(item, pos, snap):
    raw = json.dumps([item.item_id, pos, snap]).encode()
    mac = hmac.new(CURSOR_KEY, raw, hashlib.sha256).digest()[:12]
    return base64.b64encode(raw + mac).decode()


def parse_cursor(item, cursor):
    try:
        data = base64.b64decode(cursor, validate=True)
        raw, mac = data[:-12], data[-12:]
        if not hmac.compare_digest(mac, hmac.new(CURSOR_KEY, raw, hashlib.sha256).digest()[:12]):
            raise ValueError
        iid, pos, snap = json.loads(raw)
        if iid != item.item_id:
            raise ValueError
        return pos, snap
    except Exception:
        raise PlaidFault("INVALID_FIELD", "cursor is not valid for this item")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # http.server writes headers and body separately; with Nagle's algorithm and delayed
    # ACKs that costs ~40 ms a response, which Plaid's own servers do not add.
    disable_nagle_algorithm = True
    world: World = None
    # Open client connections, so an outage can cut them (keep-alive would outlive the listener).
    connections: set = set()

    def setup(self):
        super().setup()
        Handler.connections.add(self.connection)
        with self.world.lock:
            self.world.connections_opened += 1

    def finish(self):
        Handler.connections.discard(self.connection)
        super().finish()

    def log_message(self, *a):
        pass

    def send(self, status, obj, raw=None):
        data = raw if raw is not None else dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/_emulator/health":
            return self.send(200, {"ok": True})
        self.send(404, {"error": "not found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return self.send(400, PlaidFault("INVALID_BODY", "body could not be parsed as JSON").body)
        w = self.world
        if self.path.startswith("/_emulator/"):
            with w.lock:
                w.version += 1
                try:
                    return self.send(200, control(w, self.path[len("/_emulator/"):], body))
                except KeyError as e:
                    return self.send(404, {"error": f"unknown {e}"})
        path = self.path
        with w.lock:
            w.requests.append({"path": path, "cursor": body.get("cursor"), "count": body.get("count"),
                               "key_id": body.get("key_id"),
                               "access_token_hash": hashlib.sha256(str(body.get("access_token")).encode()).hexdigest()[:12],
                               "plaid_version": self.headers.get("Plaid-Version"), "at": time.time(),
                               "item_id": getattr(w.by_token.get(body.get("access_token")), "item_id", None),
                               "options": body.get("options")})
            fault = None
            for f in w.faults:
                if f["endpoint"] == path and f["times"] != 0 and (f.get("page") is None or self._page_of(body) == f["page"]):
                    fault = f
                    f["times"] -= 1
                    break
            lat = w.latency_ms
            delay = (lat.get(path, lat.get("default", 0)) if isinstance(lat, dict) else lat) / 1000
            limited = rate_limited(w, path, body.get("access_token"))
            if limited:
                w.requests[-1]["status"] = 429
        if limited:
            return self.send(429, PlaidFault("RATE_LIMIT", error_type="RATE_LIMIT_EXCEEDED").body | {"error_code": limited})
        if fault and fault["kind"] == "slow":
            delay += fault.get("delay_ms", 60000) / 1000
        if delay:
            time.sleep(delay)
        if fault:
            kind = fault["kind"]
            if kind == "http500":
                return self.send(500, PlaidFault("INTERNAL_SERVER_ERROR").body)
            if kind == "rate_limit":
                return self.send(429, PlaidFault("RATE_LIMIT", error_type="RATE_LIMIT_EXCEEDED").body
                                 | {"error_code": RATE_LIMIT_CODES.get(path, "RATE_LIMIT")})
            if kind == "mutation":
                return self.send(400, PlaidFault("TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION").body)
            if kind == "login_required":
                return self.send(400, PlaidFault("ITEM_LOGIN_REQUIRED").body)
        try:
            with w.lock:
                status, resp = handle(w, path, body)
        except PlaidFault as e:
            return self.send(e.status, e.body)
        if status == 200:
            with w.lock:
                w.calls[path] = w.calls.get(path, 0) + 1
                item = w.by_token.get(body.get("access_token"))
                if path in PAID and item:
                    key = f"{item.item_id} {path}"
                    w.billed[key] = w.billed.get(key, 0) + 1
        data = resp if isinstance(resp, bytes) else resp.encode() if isinstance(resp, str) else dumps(resp).encode()
        if fault and fault["kind"] == "truncated":
            data = data[: len(data) // 2]
        self.send(status, None, raw=data)

    def _page_of(self, body):
        """1 for a sync that starts a loop (no cursor or a final cursor), else the page number."""
        cur = body.get("cursor")
        item = self.world.by_token.get(body.get("access_token"))
        if not cur or not item:
            return 1
        try:
            pos, snap = parse_cursor(item, cur)
        except PlaidFault:
            return 1
        return snap["page"] + 1 if isinstance(snap, dict) else 1


def check_request(w, path, body):
    if path not in FIELDS:
        raise PlaidFault("NOT_FOUND", "not found", status=404)
    required, optional = FIELDS[path]
    unknown = set(body) - required - optional - {"client_id", "secret"}
    if unknown:
        raise PlaidFault("UNKNOWN_FIELDS", f"the following fields are not recognized by this endpoint: {', '.join(sorted(unknown))}")
    missing = required - set(body)
    if missing:
        raise PlaidFault("MISSING_FIELDS", f"the following required fields are missing: {', '.join(sorted(missing))}")
    if body.get("client_id") != w.client_id or body.get("secret") != w.secret:
        raise PlaidFault("INVALID_API_KEYS")
    if "options" in body and body["options"] is None:
        raise PlaidFault("INVALID_FIELD", "options must not be null")


def item_json(item, consent=False):
    """`Item`; with `consent`, the `ItemWithConsentFields` of /item/get."""
    inst = INSTITUTIONS.get(item.institution_id, {})
    extra = {"consented_use_cases": ["Track and manage your finances"],
             "consented_data_scopes": ["account_balance_info", "transactions"],
             "created_at": "2026-11-01T00:00:00Z"} if consent else {}
    return extra | {"consent_expiration_time": None, "error": item.error, "institution_id": item.institution_id,
            "institution_name": inst.get("name"), "item_id": item.item_id, "update_type": "background",
            "webhook": item.webhook, "auth_method": None} | plaid_products.item_fields(item, consent)


INSTITUTIONS = {
    "ins_109508": {"institution_id": "ins_109508", "name": "First Platypus Bank", "products": ["transactions"],
                   "country_codes": ["US"], "routing_numbers": ["011000138"], "oauth": False},
    "ins_109512": {"institution_id": "ins_109512", "name": "Houndstooth Bank", "products": ["transactions"],
                   "country_codes": ["US"], "routing_numbers": ["011000138"], "oauth": False},
}


def item_for(w, body):
    item = w.by_token.get(body.get("access_token"))
    if item is None or item.removed:
        raise PlaidFault("INVALID_ACCESS_TOKEN")
    return item


# Endpoints Plaid bills per successful request.
PAID = {"/transactions/refresh", "/accounts/balance/get"}

RATE_LIMIT_CODES = {
    "/transactions/sync": "TRANSACTIONS_SYNC_LIMIT", "/transactions/get": "TRANSACTIONS_LIMIT",
    "/transactions/refresh": "TRANSACTIONS_REFRESH_LIMIT", "/accounts/get": "ACCOUNTS_LIMIT",
    "/item/get": "ITEM_GET_LIMIT", "/institutions/get_by_id": "INSTITUTIONS_GET_BY_ID_LIMIT",
    "/item/remove": "RATE_LIMIT", "/accounts/balance/get": "BALANCE_LIMIT",
    "/investments/holdings/get": "INVESTMENT_HOLDINGS_GET_LIMIT",
    "/investments/transactions/get": "INVESTMENT_TRANSACTIONS_LIMIT",
}


def rate_limited(w, path, token):
    """The error_code of the limit this call breaks, or None (then it is counted)."""
    client, item = w.rate_limits.get(path, (None, None))
    now = time.time()
    windows = []
    for key, limit in (((path,), client), ((path, token), item)):
        if limit is None or (len(key) == 2 and token is None):
            continue
        q = w.windows.setdefault(key, [])
        while q and q[0] <= now - 60:
            q.pop(0)
        if len(q) >= limit:
            w.throttled += 1
            return RATE_LIMIT_CODES.get(path, "RATE_LIMIT")
        windows.append(q)
    for q in windows:
        q.append(now)
    return None


def handle(w, path, body):
    check_request(w, path, body)
    rid = request_id()
    if path == "/sandbox/public_token/create":
        return 200, plaid_link.sandbox_public_token(w, body, PlaidFault, rid)
    if path == "/item/public_token/exchange":
        return 200, plaid_link.exchange(w, body, PlaidFault, rid)
    if path == "/link/token/create":
        return 200, plaid_link.create_link_token(w, body, PlaidFault, item_for, rid)
    if path == "/institutions/get_by_id":
        inst = INSTITUTIONS.get(body["institution_id"])
        if not inst:
            raise PlaidFault("INSTITUTION_NOT_FOUND")
        return 200, {"institution": inst, "request_id": rid}
    if path == "/webhook_verification_key/get":
        if body["key_id"] == w.kid:
            return 200, {"key": w.jwk(w.kid, w.key), "request_id": rid}
        if body["key_id"] in w.expired_keys:
            return 200, {"key": w.jwk(body["key_id"], w.expired_keys[body["key_id"]], expired=True), "request_id": rid}
        raise PlaidFault("INVALID_WEBHOOK_VERIFICATION_KEY_ID")
    item = item_for(w, body)
    if path == "/item/remove":
        item.removed = True
        return 200, {"request_id": rid}
    if path == "/sandbox/item/reset_login":
        item.error = PlaidFault("ITEM_LOGIN_REQUIRED").body
        return 200, {"reset_login": True, "request_id": rid}
    if path == "/sandbox/item/fire_webhook":
        needs = plaid_products.WEBHOOK_PRODUCT.get((body.get("webhook_type", "TRANSACTIONS"), body["webhook_code"]))
        if needs and needs not in item.products:
            raise PlaidFault("SANDBOX_PRODUCT_NOT_ENABLED", f"the Item does not have {needs}")
        raw, jwt = w.webhook(item, body.get("webhook_type", "TRANSACTIONS"), body["webhook_code"])
        if item.webhook:
            deliver(item.webhook, raw, jwt)
        return 200, {"webhook_fired": True, "request_id": rid}
    if item.error:
        e = PlaidFault(item.error["error_code"])
        raise e
    if path == "/item/get":
        return 200, {"item": item_json(item, consent=True), "status": plaid_item_state.status(item), "request_id": rid}
    if path == "/accounts/get":
        return 200, {"accounts": item.accounts, "item": item_json(item), "request_id": rid}
    product = plaid_products.handle(w, item, path, body, rid, money, PlaidFault, item_json)
    if product:
        return product
    if path == "/accounts/balance/get":
        # Real-time balances: they differ from the cached ones /accounts/get returns.
        live = [dict(a, balances=dict(a["balances"], current=money(Decimal(a["balances"]["current"]["__num__"]) + 1)))
                for a in item.accounts]
        return 200, {"accounts": live, "item": item_json(item), "request_id": rid}
    if path == "/item/webhook/update":
        item.webhook = body.get("webhook")
        return 200, {"item": item_json(item), "request_id": rid}
    if path == "/transactions/refresh":
        # An on-demand bank check: today's new transactions appear, and Plaid says so.
        before = len(item.events)
        item.last_update = time.time()
        item.generate_day(item.today, 2, pending_ok=True)
        if item.webhook and item.synced_once and len(item.events) > before:
            deliver(item.webhook, *w.webhook(item, "TRANSACTIONS", "SYNC_UPDATES_AVAILABLE"))
        return 200, {"request_id": rid}
    if path == "/transactions/sync":
        count = body.get("count", 100)
        if not isinstance(count, int) or not 1 <= count <= 500:
            raise PlaidFault("INVALID_FIELD", "count must be between 1 and 500")
        opts = plaid_item_state.check_options(body.get("options"), PlaidFault)
        if not body.get("cursor"):
            plaid_item_state.initialise(item, opts, PlaidFault)
        if item.scripted:
            # Pages a test wrote as JSON text, served as they are (request_id filled in).
            return 200, item.scripted.pop(0).replace('"request_id": null', f'"request_id": "{rid}"')
        # Keyed by what shapes the page: a request with include_original_description false is
        # the same page as one without options.
        shaping = (bool(opts.get("include_original_description")), opts.get("personal_finance_category_version"))
        key = (item.item_id, body.get("cursor"), count, w.version, shaping)
        if key in w.page_cache:
            item.synced_once = True
            head, tail = w.page_cache[key]
            return 200, head + rid.encode() + tail
        if body.get("cursor"):
            pos, snap = parse_cursor(item, body["cursor"])
        else:
            pos, snap = 0, None
        # A loop's pages all come from the log as it was when the loop started (snap);
        # a cursor with has_more=false carries snap = None.
        end = snap["end"] if snap else len(item.events)
        page = (snap["page"] + 1) if snap else 1
        chunk = item.events[pos:min(end, pos + count)]
        added, modified, removed = {}, {}, {}
        for kind, tid, obj in chunk:
            if kind == "removed":
                if tid in added:
                    del added[tid]
                else:
                    modified.pop(tid, None)
                    removed[tid] = obj
            elif kind == "added" or tid in added:
                added[tid] = obj
            else:
                modified[tid] = obj
        new_pos = pos + len(chunk)
        has_more = new_pos < end
        item.synced_once = True
        text = dumps({
            "accounts": item.accounts, "added": [plaid_item_state.shape(t, opts) for t in added.values()],
            "modified": [plaid_item_state.shape(t, opts) for t in modified.values()],
            "removed": list(removed.values()),
            "next_cursor": cursor_for(item, new_pos, {"end": end, "page": page} if has_more else None),
            "has_more": has_more, "request_id": RID_SLOT, "transactions_update_status": "HISTORICAL_UPDATE_COMPLETE"})
        if w.page_cache_bytes + len(text) > PAGE_CACHE_BYTES:
            w.page_cache.clear()
            w.page_cache_bytes = 0
        # Kept as bytes on either side of the request_id: an answer from the cache is two copies.
        head, tail = text.encode().split(RID_SLOT.encode(), 1)
        w.page_cache[key] = (head, tail)
        w.page_cache_bytes += len(text)
        return 200, head + rid.encode() + tail
    raise PlaidFault("NOT_FOUND", "not found", status=404)


def deliver(url, raw, jwt):
    def post():
        req = urllib.request.Request(url, data=raw, method="POST",
                                     headers={"Content-Type": "application/json", "Plaid-Verification": jwt})
        try:
            urllib.request.urlopen(req, timeout=10).read()
        except Exception:
            pass
    threading.Thread(target=post, daemon=True).start()


def forged(w, raw, how):
    """Webhook signatures Plaid would never send, for rejection tests."""
    b64 = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()
    now = int(time.time())
    if how == "wrong_key":
        return w.sign(raw, key=ec.generate_private_key(ec.SECP256R1()))
    if how == "stale_iat":
        return w.sign(raw, iat=now - 600)
    if how == "future_iat":
        return w.sign(raw, iat=now + 600)
    if how == "unknown_kid":
        return w.sign(raw, kid=str(uuid.uuid4()))
    if how == "expired_key":
        kid, key = str(uuid.uuid4()), ec.generate_private_key(ec.SECP256R1())
        w.expired_keys[kid] = key
        return w.sign(raw, key=key, kid=kid)
    payload = b64(json.dumps({"iat": now, "request_body_sha256": hashlib.sha256(raw).hexdigest()}).encode())
    if how == "alg_none":
        header = b64(json.dumps({"alg": "none", "kid": w.kid, "typ": "JWT"}).encode())
        return f"{header}.{payload}."
    if how == "hs256_public_key":
        header = b64(json.dumps({"alg": "HS256", "kid": w.kid, "typ": "JWT"}).encode())
        from cryptography.hazmat.primitives import serialization
        pub = w.key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        sig = hmac.new(pub, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{b64(sig)}"
    if how == "not_a_jwt":
        return "this-is-not-a-jwt"
    raise KeyError(how)


def control(w, what, body):
    """The test-only interface."""
    if what == "reset":
        creds = (w.client_id, w.secret)
        w.__init__(body.get("seed", w.seed))
        w.client_id, w.secret = creds
        return {"ok": True}
    if what == "rate_limits":  # {"limits": {endpoint: [per client, per Item]}}; {} lifts them
        w.rate_limits = {k: tuple(v) for k, v in body.get("limits", {}).items()}
        w.windows.clear()
        w.throttled = 0
        return {"ok": True}
    if what == "calls":  # calls answered 200, per endpoint and per product, and the paid ones per Item
        by_product = {}
        for path, n in w.calls.items():
            product = plaid_products.ENDPOINT_PRODUCT.get(path)
            if product:
                by_product[product] = by_product.get(product, 0) + n
        by_item = {}   # item_id -> endpoint -> requests received (answered or not)
        for r in w.requests:
            if r.get("item_id"):
                per = by_item.setdefault(r["item_id"], {})
                per[r["path"]] = per.get(r["path"], 0) + 1
        return {"calls": w.calls, "products": by_product, "billed": w.billed, "by_item": by_item}
    if what == "rate_limit_stats":
        return {"throttled": w.throttled, "connections_opened": w.connections_opened}
    if what == "config":
        w.latency_ms = body.get("latency_ms", w.latency_ms)
        w.default_days = body.get("days", w.default_days)
        w.default_per_day = body.get("per_day", w.default_per_day)
        return {"ok": True}
    if what == "items":  # create Items directly (benchmarks): returns tokens
        out = []
        for _ in range(body.get("count", 1)):
            it = w.new_item(body.get("institution_id", "ins_109508"), body.get("days"), body.get("per_day"))
            out.append({"item_id": it.item_id, "access_token": it.access_token})
        return {"items": out}
    link = plaid_link.control(w, what, body, INSTITUTIONS)
    if link is not None:
        return link
    item = w.items[body["item_id"]] if "item_id" in body else None
    if what == "advance":
        for it in ([item] if item else list(w.items.values())):
            it.advance(body.get("days", 1), body.get("per_day", 3))
        return {"ok": True}
    if what == "add_transactions":
        ids = []
        for t in body["transactions"]:
            obj = item.transaction(t.get("account_id", item.accounts[0]["account_id"]),
                                   dt.date.fromisoformat(t.get("date", item.today.isoformat())),
                                   Decimal(t["amount"]), t.get("name", "TEST"), t.get("pending", False),
                                   pending_id=t.get("pending_transaction_id"))
            ids.append(item.add(obj)["transaction_id"])
        return {"transaction_ids": ids}
    if what == "modify_transaction":
        t = dict(item.txns[body["transaction_id"]])
        for k, v in body["changes"].items():
            t[k] = money(Decimal(v)) if k == "amount" else v
        for k in body.get("drop", []):  # a key Plaid left out of the object
            t.pop(k, None)
        item.log("modified", t["transaction_id"], t)
        return {"ok": True}
    if what == "remove_transaction":
        item.log("removed", body["transaction_id"], None)
        return {"ok": True}
    if what == "post_pending":
        t = item.txns[body["transaction_id"]]
        posted = dict(t, pending=False, transaction_id=item.ident(), pending_transaction_id=t["transaction_id"])
        item.log("removed", t["transaction_id"], None)
        item.add(posted)
        return {"transaction_id": posted["transaction_id"]}
    if what == "new_token":  # the Item linked again: a new access token (and not removed)
        del w.by_token[item.access_token]
        item.access_token = f"access-sandbox-{uuid.uuid4()}"
        item.removed = False
        w.by_token[item.access_token] = item
        return {"access_token": item.access_token}
    if what == "modify_account":
        acct = next(a for a in item.accounts if a["account_id"] == body["account_id"])
        acct.update(body["changes"])
        return {"ok": True}
    if what == "script_pages":  # the next /transactions/sync answers, as exact JSON text
        item.scripted.extend(body["pages"])
        return {"ok": True}
    product = plaid_products.control(w, item, what, body, money) if item else None
    if product is not None:
        return product
    if what == "break_login":
        item.error = PlaidFault("ITEM_LOGIN_REQUIRED").body
        item.last_failed = time.time()
        return {"ok": True}
    if what == "revoke_permission":  # the user revoked access at my.plaid.com
        item.error = PlaidFault("USER_PERMISSION_REVOKED", "the holder of this account has revoked their permission for your application to access it", error_type="INVALID_INPUT").body
        return {"ok": True}
    if what == "repair_login":
        item.error = None
        return {"ok": True}
    if what == "fault":
        w.faults.append({"endpoint": body["endpoint"], "kind": body["kind"], "page": body.get("page"),
                         "times": body.get("times", 1), "delay_ms": body.get("delay_ms")})
        return {"ok": True}
    if what == "clear_faults":
        w.faults.clear()
        return {"ok": True}
    if what == "requests":
        return {"requests": w.requests}
    if what == "state":  # the live truth, for comparing with the database
        return {"transactions": {k: v for k, v in item.txns.items()}, "accounts": item.accounts}
    if what == "webhook":  # a signed webhook for the item: body text and header, optionally sent
        kw = body.get("fields", {})
        raw, jwt = w.webhook(item, body.get("webhook_type", "TRANSACTIONS"), body.get("webhook_code", "SYNC_UPDATES_AVAILABLE"), **kw)
        forge = body.get("forge")
        if forge:
            jwt = forged(w, raw, forge)
        if body.get("iat_age") is not None:  # signed genuinely, that many seconds ago
            jwt = w.sign(raw, iat=int(time.time()) - int(body["iat_age"]))
        if body.get("deliver_to"):
            deliver(body["deliver_to"], raw, jwt)
        return {"body": raw.decode(), "plaid_verification": jwt}
    raise KeyError(what)


def drop_connections():
    """Cuts every open client connection, as an outage would."""
    import socket
    for conn in list(Handler.connections):
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


# Workers open one connection per call in flight at once: the default backlog of 5 would
# drop their SYNs and add a second to each connect.
ThreadingHTTPServer.request_queue_size = 256


def serve(port, seed=1, host="127.0.0.1", client_id=CLIENT_ID, secret=SECRET):
    Handler.world = World(seed)
    Handler.world.client_id, Handler.world.secret = client_id, secret
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--client-id", default=CLIENT_ID)
    ap.add_argument("--secret", default=SECRET)
    a = ap.parse_args()
    s = serve(a.port, a.seed, client_id=a.client_id, secret=a.secret)
    print(f"plaid emulator on http://127.0.0.1:{a.port}", flush=True)
    s.serve_forever()
