"""What the emulator's /transactions/sync does with its options, and /item/get's `status`
(docs/plaid.md): Transactions initialised by the first sync of an Item that only consented to
it (with `days_requested` of history, and billing from then on), `original_description` only
when asked for, the taxonomy version asked for, and Plaid's own freshness per product."""

import datetime as dt


def iso(ts):
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_options(opts, fault):
    if not isinstance(opts, dict):
        return {}
    desc = opts.get("include_original_description")
    if desc is not None and not isinstance(desc, bool):
        raise fault("INVALID_FIELD", "include_original_description must be a boolean")
    if opts.get("personal_finance_category_version") not in (None, "v1", "v2"):
        raise fault("INVALID_FIELD", "personal_finance_category_version must be one of v1, v2")
    days = opts.get("days_requested")
    if days is not None and (not isinstance(days, int) or not 1 <= days <= 730):
        raise fault("INVALID_FIELD", "days_requested must be between 1 and 730")
    return opts


def initialise(item, opts, fault):
    """A sync on an Item without Transactions adds it (and its bill), keeping `days_requested`
    days of history (90 when not given); one the user did not consent to is refused."""
    if "transactions" in item.products:
        return
    if "transactions" not in item.consented:
        raise fault("ADDITIONAL_CONSENT_REQUIRED",
                    'client does not have user consent to access the following products: ["transactions"]',
                    status=400, error_type="INVALID_INPUT")
    days = opts.get("days_requested") or 90
    oldest = item.today - dt.timedelta(days=days)
    keep = {tid for kind, tid, obj in item.events
            if kind != "removed" and dt.date.fromisoformat(obj["date"]) >= oldest}
    item.events = [e for e in item.events if e[1] in keep]
    item.txns = {k: v for k, v in item.txns.items() if k in keep}
    item.products.append("transactions")
    item.billed.append("transactions")
    item.days_requested = days


def shape(obj, opts):
    """A transaction as this request asks for it; unchanged when no option changes it."""
    if obj is None or "transaction_id" not in obj or "name" not in obj:
        return obj
    out = obj
    if opts.get("include_original_description"):
        out = dict(out, original_description=f"POS DEBIT {obj['name']}")
    version = opts.get("personal_finance_category_version")
    if version and isinstance(obj.get("personal_finance_category"), dict):
        pfc = dict(obj["personal_finance_category"], version=version)
        if version == "v2":   # v2 renamed the catch-all detailed categories
            pfc["detailed"] = pfc["detailed"].replace("_OTHER", "_OTHER_" + pfc["primary"])
        out = dict(out, personal_finance_category=pfc)
    return out


def status(item):
    """/item/get's `status`: Plaid's last update per product it has, and its last webhook."""
    def product(p):
        if p not in item.products:
            return None
        return {"last_successful_update": iso(item.last_update),
                "last_failed_update": iso(item.last_failed) if item.last_failed else None}
    return {"transactions": product("transactions"), "investments": product("investments"),
            "last_webhook": ({"sent_at": iso(item.last_webhook[0]), "code_sent": item.last_webhook[1]}
                             if item.last_webhook else None)}
