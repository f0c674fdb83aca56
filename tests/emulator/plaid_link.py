"""Link as the emulator plays it (docs/plaid.md "Link"): /link/token/create checks what the
spec requires, /sandbox/public_token/create stands in for a user finishing Link, and
/item/public_token/exchange honours a public token once, for 30 minutes. A Link of the same
bank login (institution and username) gives the same accounts, masks and
persistent_account_ids, as Plaid's sandbox users do: that is what a duplicate Item looks like."""

import datetime as dt
import hashlib
import random
import time
import uuid

LINK_FIELDS = ({"client_name", "language", "country_codes"},
               {"user", "user_id", "products", "webhook", "access_token", "redirect_uri",
                "android_package_name", "account_filters", "additional_consented_products",
                "required_if_supported_products", "optional_products", "update", "transactions",
                "link_customization_name", "institution_data", "institution_id", "eu_config",
                "investments", "auth", "hosted_link"})
LINK_PRODUCTS = {"assets", "auth", "beacon", "employment", "identity", "income_verification",
                 "identity_verification", "investments", "investments_auth", "liabilities",
                 "payment_initiation", "protect_transactions", "standing_orders", "signal",
                 "statements", "transactions", "transfer", "layer", "protect_linked_bank"}
LANGUAGES = {"da", "nl", "en", "et", "fr", "de", "hi", "it", "lv", "lt", "no", "pl", "pt", "ro",
             "es", "sv", "vi"}
COUNTRY_CODES = {"US", "GB", "ES", "NL", "FR", "IE", "CA", "DE", "IT", "PL", "DK", "NO", "SE",
                 "EE", "LT", "LV", "PT", "BE", "AT", "FI"}
PUBLIC_TOKEN_TTL = 30 * 60
LINK_TOKEN_TTL = 4 * 3600


def iso(ts):
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def create_link_token(w, body, fault, item_for, rid):
    if not isinstance(body["client_name"], str) or not body["client_name"]:
        raise fault("INVALID_FIELD", "client_name must be a non-empty string")
    if body["language"] not in LANGUAGES:
        raise fault("INVALID_FIELD", "language must be one of the supported languages")
    codes = body["country_codes"]
    if not isinstance(codes, list) or not codes or any(c not in COUNTRY_CODES for c in codes):
        raise fault("INVALID_FIELD", "country_codes must be a non-empty list of supported country codes")
    user = body.get("user")
    if not isinstance(user, dict) or not isinstance(user.get("client_user_id"), str) or not user["client_user_id"]:
        raise fault("INVALID_FIELD", "user.client_user_id must be a non-empty string")
    webhook = body.get("webhook")
    if webhook is not None and (not isinstance(webhook, str) or not webhook.startswith(("https://", "http://"))):
        raise fault("INVALID_FIELD", "webhook must be a valid URL")
    item = None
    if "access_token" in body:
        item = item_for(w, body)           # INVALID_ACCESS_TOKEN for a token Plaid does not know
    else:
        products = body.get("products")
        if not isinstance(products, list) or not products:
            raise fault("INVALID_FIELD", "products must be a non-empty list unless access_token is set")
        bad = [p for p in products if p not in LINK_PRODUCTS]
        if bad:
            raise fault("INVALID_PRODUCT", f"the following products are not valid: {', '.join(map(str, bad))}")
    days = (body.get("transactions") or {}).get("days_requested")
    if days is not None and (not isinstance(days, int) or not 1 <= days <= 730):
        raise fault("INVALID_FIELD", "transactions.days_requested must be between 1 and 730")
    token = f"link-sandbox-{uuid.uuid4()}"
    kept = {k: v for k, v in body.items() if k not in ("client_id", "secret", "access_token")}
    kept["item_id"] = item.item_id if item else None
    w.link_tokens[token] = kept
    return {"link_token": token, "expiration": iso(time.time() + LINK_TOKEN_TTL), "request_id": rid}


def sandbox_public_token(w, body, fault, rid):
    """A user finishing Link: a new Item with the products asked for, and its public token."""
    products = body["initial_products"]
    if not isinstance(products, list) or not products or any(p not in LINK_PRODUCTS for p in products):
        raise fault("INVALID_PRODUCT", "initial_products must be a non-empty list of Link products")
    options = body.get("options") if isinstance(body.get("options"), dict) else {}
    item = w.new_item(body["institution_id"])
    login = f"{body['institution_id']}/{options.get('override_username', 'user_good')}"
    r = random.Random(hashlib.sha256(login.encode()).digest())
    for a in item.accounts:   # the same login has the same accounts, whichever Item it is
        a["mask"] = f"{r.randint(0, 9999):04d}"
        a["persistent_account_id"] = hashlib.sha256(f"{login}/{a['name']}".encode()).hexdigest()
    item.products = [p for p in products if p != "balance"]
    item.billed = list(item.products)
    item.consented = sorted(set(item.products) | set(options.get("additional_consented_products", [])))
    if options.get("webhook"):
        item.webhook = options["webhook"]
    token = f"public-sandbox-{uuid.uuid4()}"
    w.public_tokens[token] = (item, time.time())
    return {"public_token": token, "request_id": rid}


def exchange(w, body, fault, rid):
    token = body["public_token"]
    if not isinstance(token, str) or not token.startswith("public-"):
        raise fault("INVALID_PUBLIC_TOKEN", "provided public token is in an invalid format. expected format: public-<environment>-<identifier>",
                    error_type="INVALID_INPUT")
    found = w.public_tokens.pop(token, None)
    if found is None:   # never issued, or exchanged already: Plaid says the same for both
        raise fault("INVALID_PUBLIC_TOKEN", "could not find matching public token", error_type="INVALID_INPUT")
    item, created = found
    if time.time() - created > PUBLIC_TOKEN_TTL:
        raise fault("INVALID_PUBLIC_TOKEN", "provided public token is expired. Public tokens expire 30 minutes after creation at which point they can no longer be exchanged",
                    error_type="INVALID_INPUT")
    w.exchanged += 1
    return {"access_token": item.access_token, "item_id": item.item_id, "request_id": rid}


def control(w, what, body, institutions):
    """Test-only: what a Link token was made with, Link's onSuccess metadata for a public token,
    and time passing for public tokens. None when `what` is not Link's."""
    if what == "link_token":
        return w.link_tokens[body["link_token"]]
    if what == "link_metadata":
        item, _ = w.public_tokens[body["public_token"]]
        inst = institutions.get(item.institution_id, {})
        return {"institution": {"institution_id": item.institution_id, "name": inst.get("name")},
                "accounts": [{"id": a["account_id"], "name": a["name"], "mask": a["mask"],
                              "type": a["type"], "subtype": a["subtype"]} for a in item.accounts],
                "link_session_id": str(uuid.uuid4())}
    if what == "age_public_tokens":
        w.public_tokens = {t: (i, c - body["seconds"]) for t, (i, c) in w.public_tokens.items()}
        return {"ok": True}
    if what == "exchanges":
        return {"exchanged": w.exchanged, "link_tokens": len(w.link_tokens)}
    return None
