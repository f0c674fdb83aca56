"""The emulator's products beyond Transactions (docs/plaid.md, Products and billing): which products an Item has,
product errors, and recurring streams (/transactions/recurring/get). Imported by
plaid_emulator.py; the numbers are written as exact JSON number text (money())."""

import datetime as dt
from decimal import Decimal

# endpoint -> the product it serves (calling it adds the product when consented).
ENDPOINT_PRODUCT = {
    "/transactions/recurring/get": "recurring_transactions",
    "/liabilities/get": "liabilities",
    "/investments/holdings/get": "investments",
    "/investments/transactions/get": "investments",
}

# (webhook_type, webhook_code) -> the product an Item needs for /sandbox/item/fire_webhook to send it.
WEBHOOK_PRODUCT = {
    ("TRANSACTIONS", "RECURRING_TRANSACTIONS_UPDATE"): "recurring_transactions",
    ("LIABILITIES", "DEFAULT_UPDATE"): "liabilities",
    ("HOLDINGS", "DEFAULT_UPDATE"): "investments",
    ("INVESTMENTS_TRANSACTIONS", "DEFAULT_UPDATE"): "investments",
    ("INVESTMENTS_TRANSACTIONS", "HISTORICAL_UPDATE"): "investments",
}

PRODUCT_ERRORS = {
    "PRODUCTS_NOT_SUPPORTED": (400, "ITEM_ERROR", 'the following products are not supported by this institution: ["{p}"]'),
    "PRODUCT_NOT_READY": (400, "ITEM_ERROR", "the requested product is not yet ready. please provide a webhook or try the request again later"),
    "ADDITIONAL_CONSENT_REQUIRED": (400, "INVALID_INPUT", "client does not have user consent to access the following products: [\"{p}\"]"),
    "INVALID_PRODUCT": (400, "INVALID_INPUT", 'client is not authorized to access the following products: ["{p}"]'),
    "NO_INVESTMENT_ACCOUNTS": (400, "ITEM_ERROR", "There are no valid investment account(s) associated with this Item."),
    "NO_LIABILITY_ACCOUNTS": (400, "ITEM_ERROR", "There are no valid liability account(s) associated with this Item."),
}


def init_item(item):
    item.products = ["transactions"]
    item.billed = ["transactions"]
    item.consented = ["transactions"]
    item.product_errors = {}      # product -> [error_code, times left (-1 = always)]
    item.streams = None           # stream_id -> (direction, stream), made on first use
    item.streams_updated = "2026-11-01T00:00:00Z"
    item.liabilities = None       # account_id -> (kind, object), made on first use
    item.investments = None       # {"securities", "holdings", "transactions"}, made on first use
    item.mutate_next_page = False # an investment transaction appears between two pages


def item_fields(item, consent):
    """The product lists of an Item object (consented_products only in /item/get)."""
    out = {"products": list(item.products), "billed_products": list(item.billed),
           "available_products": [p for p in ("balance", "recurring_transactions", "investments", "liabilities")
                                  if p not in item.products]}
    if consent:
        out["consented_products"] = list(item.consented)
    return out


def gate(item, path, fault):
    """Raises the error a call of a product's endpoint gets, or adds the product as Plaid does."""
    product = ENDPOINT_PRODUCT[path]
    err = item.product_errors.get(product)
    if err and err[1] != 0:
        err[1] -= 1
        status, etype, msg = PRODUCT_ERRORS[err[0]]
        raise fault(err[0], msg.format(p=product), status=status, error_type=etype)
    if product not in item.products:
        if product not in item.consented:
            status, etype, msg = PRODUCT_ERRORS["ADDITIONAL_CONSENT_REQUIRED"]
            raise fault("ADDITIONAL_CONSENT_REQUIRED", msg.format(p=product), status=status, error_type=etype)
        item.products.append(product)   # the first call adds it, and billing starts
        item.billed.append(product)


def amount(money, text):
    return {"amount": money(Decimal(text)), "iso_currency_code": "USD", "unofficial_currency_code": None}


def make_streams(item, money):
    checking = next(a["account_id"] for a in item.accounts if a["subtype"] == "checking")
    card = next(a["account_id"] for a in item.accounts if a["type"] == "credit")
    ids = lambda acct: sorted(t["transaction_id"] for t in item.txns.values() if t["account_id"] == acct)[:3]
    first = (item.today - dt.timedelta(days=60)).isoformat()
    last = (item.today - dt.timedelta(days=5)).isoformat()

    def stream(acct, desc, merchant, freq, avg, lastamt, pfc, status="MATURE", active=True, nxt=True):
        return {"account_id": acct, "stream_id": item.ident(), "category": None, "category_id": None,
                "description": desc, "merchant_name": merchant,
                "personal_finance_category": {"primary": pfc, "detailed": f"{pfc}_OTHER", "confidence_level": "HIGH"},
                "first_date": first, "last_date": last,
                "predicted_next_date": (item.today + dt.timedelta(days=10)).isoformat() if nxt else None,
                "frequency": freq, "transaction_ids": ids(acct), "average_amount": amount(money, avg),
                "last_amount": amount(money, lastamt), "is_active": active, "status": status,
                "is_user_modified": False}
    # Amounts a float would round: 16 significant digits, and cents that binary cannot hold.
    streams = [("inflow", stream(checking, "Platypus Payroll", None, "SEMI_MONTHLY", "-98765432109876.54", "-1000.10", "INCOME")),
               ("outflow", stream(card, "ConEd Bill Payment", "ConEd", "MONTHLY", "85.01", "100.07", "RENT_AND_UTILITIES")),
               ("outflow", stream(card, "Gym Membership", "Gym", "MONTHLY", "0.3", "0.3", "PERSONAL_CARE",
                                  status="TOMBSTONED", active=False, nxt=False))]
    return {s["stream_id"]: (d, s) for d, s in streams}


def credit(item, money, account_id):
    """The spec example's credit card, with a balance a float cannot hold."""
    return {"account_id": account_id, "aprs": [
        {"apr_percentage": money(Decimal("15.24")), "apr_type": "balance_transfer_apr",
         "balance_subject_to_apr": money(Decimal("1562.32")), "interest_charge_amount": money(Decimal("130.22"))},
        {"apr_percentage": money(Decimal("27.95")), "apr_type": "cash_apr",
         "balance_subject_to_apr": money(Decimal("56.22")), "interest_charge_amount": money(Decimal("14.81"))},
        {"apr_percentage": money(Decimal("12.5")), "apr_type": "purchase_apr",
         "balance_subject_to_apr": money(Decimal("157.01")), "interest_charge_amount": money(Decimal("25.66"))}],
        "is_overdue": False, "last_payment_amount": money(Decimal("168.25")), "last_payment_date": "2026-10-22",
        "last_statement_issue_date": "2026-10-28", "last_statement_balance": money(Decimal("12345678901234.56")),
        "minimum_payment_amount": money(Decimal("20")), "next_payment_due_date": "2026-11-28"}


def loan(item, money, kind, account_id):
    if kind == "student":
        return {"account_id": account_id, "account_number": "4277075694", "disbursement_dates": ["2002-08-28"],
                "expected_payoff_date": "2032-07-28", "guarantor": "DEPT OF ED",
                "interest_rate_percentage": money(Decimal("5.25")), "is_overdue": False,
                "last_payment_amount": money(Decimal("138.05")), "last_payment_date": "2026-10-22",
                "last_statement_issue_date": "2026-10-28", "last_statement_balance": money(Decimal("1708.77")),
                "loan_name": "Consolidation", "loan_status": {"end_date": "2032-07-28", "type": "repayment"},
                "minimum_payment_amount": money(Decimal("25")), "next_payment_due_date": "2026-11-28",
                "origination_date": "2002-08-28", "origination_principal_amount": money(Decimal("25000")),
                "outstanding_interest_amount": money(Decimal("6227.36")), "payment_reference_number": "4277075694",
                "pslf_status": {"estimated_eligibility_date": None, "payments_made": None, "payments_remaining": None},
                "repayment_plan": {"description": "Standard Repayment", "type": "standard"}, "sequence_number": "1",
                "servicer_address": {"city": "San Matias", "country": "US", "postal_code": "99415", "region": "CA",
                                     "street": "123 Relaxation Road"},
                "ytd_interest_paid": money(Decimal("280.55")), "ytd_principal_paid": money(Decimal("271.65"))}
    return {"account_id": account_id, "account_number": "3120194154", "current_late_fee": money(Decimal("25")),
            "escrow_balance": money(Decimal("3141.54")), "has_pmi": True, "has_prepayment_penalty": True,
            "interest_rate": {"percentage": money(Decimal("3.99")), "type": "fixed"},
            "last_payment_amount": money(Decimal("3141.54")), "last_payment_date": "2026-10-01",
            "loan_term": "30 year", "loan_type_description": "conventional", "maturity_date": "2045-07-31",
            "next_monthly_payment": money(Decimal("3141.54")), "next_payment_due_date": "2026-11-15",
            "origination_date": "2015-08-01", "origination_principal_amount": money(Decimal("425000")),
            "past_due_amount": money(Decimal("2304")),
            "property_address": {"city": "Malakoff", "country": "US", "postal_code": "14236", "region": "NY",
                                 "street": "2992 Cameron Road"},
            "ytd_interest_paid": money(Decimal("12300.4")), "ytd_principal_paid": money(Decimal("12340.5"))}


def liabilities_of(item, money):
    if item.liabilities is None:
        card = next(a["account_id"] for a in item.accounts if a["type"] == "credit")
        item.liabilities = {card: ("credit", credit(item, money, card))}
    return item.liabilities


def add_loan(item, money, kind):
    acct = item.ident()
    item.accounts.append({
        "account_id": acct, "balances": {"available": None, "current": money(Decimal("56302.06")),
                                         "iso_currency_code": "USD", "limit": None, "unofficial_currency_code": None},
        "mask": "8888", "name": f"Plaid {kind.title()}", "official_name": f"Plaid {kind.title()} Loan",
        "subtype": kind, "type": "loan", "holder_category": "personal"})
    liabilities_of(item, money)[acct] = (kind, loan(item, money, kind, acct))
    return acct


def security(item, ticker, name, typ, subtype, close):
    return {"security_id": item.ident(), "ticker_symbol": ticker, "name": name, "type": typ, "subtype": subtype,
            "close_price": close, "close_price_as_of": item.today.isoformat(), "cusip": None, "isin": None,
            "sedol": None, "institution_id": None, "institution_security_id": None,
            "is_cash_equivalent": typ == "cash", "iso_currency_code": "USD", "unofficial_currency_code": None,
            "proxy_security_id": None, "update_datetime": None, "market_identifier_code": "XNAS" if ticker else None,
            "sector": None, "industry": None, "cfi_code": None, "option_contract": None, "fixed_income": None}


def investment_account(item, money):
    acct = next((a for a in item.accounts if a["type"] == "investment"), None)
    if acct is None:
        acct = {"account_id": item.ident(), "balances": {"available": None, "current": money(Decimal("23631.9805")),
                                                          "iso_currency_code": "USD", "limit": None,
                                                          "margin_loan_amount": None, "unofficial_currency_code": None},
                "mask": "5555", "name": "Plaid IRA", "official_name": None, "subtype": "ira", "type": "investment",
                "holder_category": "personal"}
        item.accounts.append(acct)
    return acct["account_id"]


def inv_transaction(item, money, acct, sec, days_ago, kind, qty, price, amount, fees="0"):
    return {"investment_transaction_id": item.ident(), "account_id": acct,
            "security_id": sec["security_id"] if sec else None,
            "date": (item.today - dt.timedelta(days=days_ago)).isoformat(), "transaction_datetime": None,
            "name": f"{kind.upper()} {sec['name'] if sec else 'CASH'}", "quantity": money(Decimal(qty)),
            "amount": money(Decimal(amount)), "price": money(Decimal(price)),
            "fees": money(Decimal(fees)) if fees is not None else None, "type": kind,
            "subtype": {"buy": "buy", "sell": "sell", "cash": "dividend", "fee": "management fee"}[kind],
            "iso_currency_code": "USD", "unofficial_currency_code": None, "cancel_transaction_id": None}


def investments_of(item, money):
    if item.investments is None:
        acct = investment_account(item, money)
        cash = security(item, "USD", "U S Dollar", "cash", "cash", money(Decimal("1")))
        fund = security(item, "MIPTX", "Matthews Pacific Tiger Fund Insti Class", "mutual fund", "mutual fund",
                        money(Decimal("27.530000001")))
        bill = security(item, None, "US Treasury Bill - 0.41% 31/03/2033 USD 100", "fixed income", "bill",
                        money(Decimal("94.817")))
        holdings = {(acct, cash["security_id"]): {"quantity": "12345.67", "price": "1", "value": "12345.67", "cost": "12345.67"},
                    (acct, fund["security_id"]): {"quantity": "47.74104242992852", "price": "27.530000001",
                                                   "value": "1314.3", "cost": None},
                    (acct, bill["security_id"]): {"quantity": "-10", "price": "94.817", "value": "-948.17", "cost": "1000"}}
        item.investments = {
            "securities": {x["security_id"]: x for x in (cash, fund, bill)},
            "holdings": {k: {"account_id": k[0], "security_id": k[1], "cost_basis": money(Decimal(v["cost"])) if v["cost"] else None,
                             "institution_price": money(Decimal(v["price"])), "institution_price_as_of": item.today.isoformat(),
                             "institution_price_datetime": None, "institution_value": money(Decimal(v["value"])),
                             "iso_currency_code": "USD", "quantity": money(Decimal(v["quantity"])),
                             "unofficial_currency_code": None, "vested_quantity": None, "vested_value": None}
                         for k, v in holdings.items()},
            "transactions": [inv_transaction(item, money, acct, fund, 3, "sell", "-47.74104242992852", "27.53", "-1289.01", "7.99"),
                             inv_transaction(item, money, acct, fund, 20, "buy", "0.7388014749727547", "10.42", "7.7", "7.99"),
                             inv_transaction(item, money, acct, cash, 45, "cash", "0", "0", "-8.72", None),
                             inv_transaction(item, money, acct, bill, 400, "buy", "10", "94.817", "948.17")],
        }
    return item.investments


def transactions_page(w, item, body, money, fault):
    opts = body.get("options") or {}
    count, offset = opts.get("count", 100), opts.get("offset", 0)
    if not isinstance(count, int) or not 1 <= count <= 500:
        raise fault("INVALID_FIELD", "count must be between 1 and 500")
    if not isinstance(offset, int) or offset < 0:
        raise fault("INVALID_FIELD", "offset must be at least 0")
    try:
        start, end = dt.date.fromisoformat(body["start_date"]), dt.date.fromisoformat(body["end_date"])
    except ValueError:
        raise fault("INVALID_FIELD", "start_date and end_date must be YYYY-MM-DD")
    inv = investments_of(item, money)
    if offset > 0 and item.mutate_next_page:
        # A transaction Plaid learns of mid-read: every later offset shifts by one.
        item.mutate_next_page = False
        sec = next(iter(inv["securities"].values()))
        inv["transactions"].append(inv_transaction(item, money, investment_account(item, money), sec, 0, "buy", "1", "1", "1"))
    oldest = max(start, item.today - dt.timedelta(days=730))   # only 24 months, whatever start_date says
    match = sorted((t for t in inv["transactions"] if oldest <= dt.date.fromisoformat(t["date"]) <= end),
                   key=lambda t: (t["date"], t["investment_transaction_id"]), reverse=True)
    page = match[offset:offset + count]
    used = {t["security_id"] for t in page if t["security_id"]}
    return {"investment_transactions": page, "total_investment_transactions": len(match),
            "securities": [x for sid, x in inv["securities"].items() if sid in used]}


def handle(w, item, path, body, rid, money, fault, item_json):
    """(status, response) for a product endpoint, or None when `path` is not one."""
    if path not in ENDPOINT_PRODUCT:
        return None
    gate(item, path, fault)
    if path == "/transactions/recurring/get":
        if item.streams is None:
            item.streams = make_streams(item, money)
        ids = body.get("account_ids")
        pick = lambda d: [s for dd, s in item.streams.values() if dd == d and (ids is None or s["account_id"] in ids)]
        return 200, {"inflow_streams": pick("inflow"), "outflow_streams": pick("outflow"),
                     "updated_datetime": item.streams_updated, "personal_finance_category_version": "v2",
                     "request_id": rid}
    if path == "/investments/holdings/get":
        inv = investments_of(item, money)
        used = {h["security_id"] for h in inv["holdings"].values()}
        return 200, {"accounts": item.accounts, "holdings": list(inv["holdings"].values()),
                     "securities": [x for sid, x in inv["securities"].items() if sid in used],
                     "item": item_json(item), "request_id": rid}
    if path == "/investments/transactions/get":
        return 200, transactions_page(w, item, body, money, fault) | {
            "accounts": item.accounts, "item": item_json(item), "request_id": rid}
    if path == "/liabilities/get":
        kinds = {"credit": [], "student": [], "mortgage": []}
        for kind, obj in liabilities_of(item, money).values():
            kinds[kind].append(obj)
        # A kind the Item has none of is null, as Plaid sends it.
        return 200, {"accounts": item.accounts, "item": item_json(item),
                     "liabilities": {k: (v or None) for k, v in kinds.items()}, "request_id": rid}
    return None


def control(w, item, what, body, money):
    """The test-only interface for products; None when `what` is not one of these."""
    if what == "products":  # {"products": [...], "consented": [...]}: what the Item has
        for key, attr in (("products", "products"), ("products", "billed"), ("consented", "consented")):
            if key in body:
                setattr(item, attr, list(body[key]))
        if "investments" in item.products + item.consented:
            investment_account(item, money)   # an Item with Investments has an investment account
        return {"ok": True}
    if what == "investments":  # {"add": [{days_ago, type, quantity, price, amount}], "cancel": [ids],
        #                        "sell": [security_id], "quantity": {security_id: text}, "mutate_next_page": bool}
        inv = investments_of(item, money)
        acct = investment_account(item, money)
        sec = next(iter(inv["securities"].values()))
        for t in body.get("add", []):
            inv["transactions"].append(inv_transaction(item, money, acct, sec, t.get("days_ago", 0), t.get("type", "buy"),
                                                       t.get("quantity", "1"), t.get("price", "1"), t.get("amount", "1")))
        cancel = set(body.get("cancel", []))
        inv["transactions"] = [t for t in inv["transactions"] if t["investment_transaction_id"] not in cancel]
        for sid in body.get("sell", []):
            inv["holdings"].pop((acct, sid))
        for sid, q in body.get("quantity", {}).items():
            inv["holdings"][(acct, sid)]["quantity"] = money(Decimal(q))
        item.mutate_next_page = body.get("mutate_next_page", item.mutate_next_page)
        return {"account_id": acct, "securities": inv["securities"], "holdings": list(inv["holdings"].values()),
                "transactions": inv["transactions"]}
    if what == "product_error":  # {"product", "code", "times"}; code null clears it
        if body.get("code"):
            item.product_errors[body["product"]] = [body["code"], body.get("times", -1)]
        else:
            item.product_errors.pop(body["product"], None)
        return {"ok": True}
    if what == "liabilities":  # {"add": "student"|"mortgage", "remove": [account_id], "modify": {account_id: {...}}}
        out = {}
        if body.get("add"):
            out["account_id"] = add_loan(item, money, body["add"])
        lia = liabilities_of(item, money)
        for acct in body.get("remove", []):
            lia.pop(acct)
        for acct, changes in body.get("modify", {}).items():
            kind, obj = lia[acct]
            for k, v in changes.items():
                obj[k] = money(Decimal(v)) if isinstance(v, str) and k.endswith(("amount", "balance", "payment")) else v
        out["liabilities"] = {a: dict(o, kind=k) for a, (k, o) in lia.items()}
        return out
    if what == "recurring":  # {"remove": [ids], "modify": {id: {field: value}}, "add": n}: the streams change
        if item.streams is None:
            item.streams = make_streams(item, money)
        for sid in body.get("remove", []):
            item.streams.pop(sid)
        for sid, changes in body.get("modify", {}).items():
            d, s = item.streams[sid]
            for k, v in changes.items():
                s[k] = amount(money, v) if k in ("average_amount", "last_amount") else v
        for _ in range(body.get("add", 0)):
            acct = item.accounts[0]["account_id"]
            s = dict(next(iter(item.streams.values()))[1], stream_id=item.ident(), account_id=acct,
                     description="New Subscription", status="EARLY_DETECTION")
            item.streams[s["stream_id"]] = ("outflow", s)
        item.streams_updated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return {"streams": {sid: dict(s, direction=d) for sid, (d, s) in item.streams.items()}}
    return None
