"""The fake's HTTP surface (aiohttp): Stripe's ``/v1`` API, hosted pages, and ``/_control``.

``/v1`` behaves like Stripe's API where our code and dj-stripe touch it: Bearer-key auth,
form-encoded bodies, ``expand[]``, cursor pagination, idempotency keys, Stripe-shaped errors
(``Unrecognized request URL`` for routes Stripe does not have). Every ``/v1`` call is logged and
can be made to fail on purpose (``/_control/faults``), which is how tests count API calls and
exercise retries, and can be slowed to a real round trip (``/_control/latency``,
``fakes.latency``).

``/_control`` is JSON for tests and benchmarks; ``/``, ``/checkout``, ``/portal`` and
``/invoices`` are HTML for people.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from aiohttp import web

from ..latency import Latency
from . import pages
from .errors import StripeError, invalid, no_such
from .forms import get_bool, get_int, get_list, get_str, parse_form, parse_query
from .objects import API_VERSION, list_object, new_id
from .state import Obj, StripeState, snapshot
from .webhooks import WebhookDispatcher, WebhookEndpoint

STATE = web.AppKey("state", StripeState)
DISPATCHER = web.AppKey("dispatcher", WebhookDispatcher)
API_KEYS = web.AppKey("api_keys", frozenset)
IDEMPOTENCY = web.AppKey("idempotency", collections.OrderedDict)
LATENCY = web.AppKey("latency", Latency)
LIVEMODE = web.RequestKey("livemode", bool)
PARAMS = web.RequestKey("params", dict)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_IDEMPOTENCY_CACHE_SIZE = 10_000


def _dumps(data: Any) -> bytes:
    # Compact: the C encoder is several times faster than indent=2 on 100-object pages.
    return json.dumps(data, separators=(",", ":")).encode()


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=_dumps(data), status=status, content_type="application/json")


def _error(exc: StripeError) -> web.Response:
    return _json(exc.body(), exc.status)


# -- /v1 middleware -----------------------------------------------------------------------------


def _authenticate(request: web.Request) -> tuple[str, bool]:
    header = request.headers.get("Authorization", "")
    key = ""
    if header.startswith("Bearer "):
        key = header[7:].strip()
    elif header.startswith("Basic "):
        try:
            key = base64.b64decode(header[6:]).decode().split(":", 1)[0]
        except ValueError:
            key = ""
    if not key:
        raise StripeError(
            401,
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
            "YOUR_SECRET_KEY').",
        )
    allowed = request.app[API_KEYS]
    shape_ok = key.startswith(("sk_test_", "sk_live_", "rk_test_", "rk_live_"))
    if not shape_ok or (allowed and key not in allowed):
        raise StripeError(401, f"Invalid API Key provided: {key[:8]}****{key[-4:]}")
    return key, "_live_" in key


async def _read_params(request: web.Request) -> tuple[Obj, Obj]:
    query = parse_query(request.query_string)
    body: Obj = {}
    if request.method in ("POST", "PUT", "PATCH") and request.can_read_body:
        raw = await request.read()
        if raw:
            if request.content_type == "application/json":
                loaded = json.loads(raw)
                body = loaded if isinstance(loaded, dict) else {}
            else:
                body = parse_form(parse_qsl(raw.decode(), keep_blank_values=True))
    return query, body


def _fault_error(fault: Obj) -> StripeError:
    status = fault["status"]
    if status == 429:
        return StripeError(
            429,
            "Too many requests hit the API too quickly (fault injected by the fake).",
            type="invalid_request_error",
            code="rate_limit",
        )
    if status >= 500:
        return StripeError(
            status, "An unknown error occurred (fault injected by the fake).", type="api_error"
        )
    return StripeError(status, "Fault injected by the fake Stripe server.")


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/v1/"):
        return await handler(request)
    state = request.app[STATE]
    request_id = new_id("req", 14)
    idempotency_key = request.headers.get("Idempotency-Key")
    entry: Obj = {
        "at": time.time(),
        "method": request.method,
        "path": request.path,
        "query": {},
        "params": {},
        "status": None,
        "request_id": request_id,
        "idempotency_key": idempotency_key,
    }
    state.log_request(entry)
    await request.app[LATENCY].wait()
    cache_key: tuple[str, str] | None = None
    fingerprint = ""
    try:
        query, body = await _read_params(request)
        entry["query"], entry["params"] = query, body
        fault = state.take_fault(request.method, request.path)
        if fault is not None:
            raise _fault_error(fault)
        api_key, livemode = _authenticate(request)
        request[LIVEMODE] = livemode
        request[PARAMS] = {**query, **body}
        cache = request.app[IDEMPOTENCY]
        if request.method == "POST" and idempotency_key:
            cache_key = (api_key, idempotency_key)
            fingerprint = hashlib.sha256(
                f"{request.path}?{json.dumps(request[PARAMS], sort_keys=True)}".encode()
            ).hexdigest()
            cached = cache.get(cache_key)
            if cached is not None:
                if cached[0] != fingerprint:
                    raise StripeError(
                        400,
                        "Keys for idempotent requests can only be used with the same parameters "
                        "they were first used with.",
                        type="idempotency_error",
                    )
                response = web.Response(
                    body=cached[2], status=cached[1], content_type="application/json"
                )
                response.headers["Idempotent-Replayed"] = "true"
                return _finish(response, entry, request_id)
        with state.request_context(request_id, idempotency_key):
            response = await handler(request)
    except StripeError as exc:
        response = _error(exc)
    # Stripe saves results once an endpoint has started executing (2xx and most 4xx).
    cacheable = response.status < 500 and response.status not in (401, 429)
    if cache_key is not None and isinstance(response, web.Response) and cacheable:
        cache = request.app[IDEMPOTENCY]
        cache[cache_key] = (fingerprint, response.status, response.body)
        while len(cache) > _IDEMPOTENCY_CACHE_SIZE:
            cache.popitem(last=False)
    return _finish(response, entry, request_id)


def _finish(response: web.StreamResponse, entry: Obj, request_id: str) -> web.StreamResponse:
    entry["status"] = response.status
    response.headers["Request-Id"] = request_id
    response.headers["Stripe-Version"] = API_VERSION
    return response


# -- /v1 helpers ------------------------------------------------------------------------------


def _state(request: web.Request) -> StripeState:
    return request.app[STATE]


def _params(request: web.Request) -> Obj:
    return request[PARAMS]


def _expand(params: Obj) -> list[str]:
    return [str(path) for path in get_list(params, "expand")]


def _reply(request: web.Request, obj: Obj) -> web.Response:
    state = _state(request)
    with state.lock:
        return _json(state.render(obj, _expand(_params(request))))


def _paging(params: Obj) -> Obj:
    limit = get_int(params, "limit", 10)
    assert limit is not None
    if not 1 <= limit <= 100:
        raise invalid("This value must be between 1 and 100.", param="limit")
    starting_after = get_str(params, "starting_after") or None
    ending_before = get_str(params, "ending_before") or None
    if starting_after and ending_before:
        raise invalid(
            "You may only specify one of these parameters: ending_before, starting_after."
        )
    return {"limit": limit, "starting_after": starting_after, "ending_before": ending_before}


def _reply_list(
    request: web.Request,
    url: str,
    page: Callable[..., tuple[list[Obj], bool]],
) -> web.Response:
    """A Stripe list page; ``expand[]=data.x`` expands ``x`` on every object."""
    state = _state(request)
    params = _params(request)
    paging = _paging(params)
    expand = [path[5:] for path in _expand(params) if path.startswith("data.")]
    with state.lock:
        items, has_more = page(params, **paging)
        data = [state.render(item, expand) for item in items] if expand else items
        return _json(list_object(data, url, has_more=has_more))


def _create(request: web.Request, operation: Callable[..., Obj]) -> web.Response:
    """A create call: new objects take ``livemode`` from the API key's prefix."""
    return _reply(request, operation(_params(request), livemode=request[LIVEMODE]))


def _update(request: web.Request, operation: Callable[[str, Obj], Obj]) -> web.Response:
    return _reply(request, operation(request.match_info["id"], _params(request)))


# -- /v1 handlers -----------------------------------------------------------------------------


async def get_account(request: web.Request) -> web.Response:
    return _reply(request, _state(request).account)


async def get_account_by_id(request: web.Request) -> web.Response:
    state = _state(request)
    if request.match_info["id"] != state.account["id"]:
        raise StripeError(
            404,
            f"No such account: '{request.match_info['id']}'",
            code="resource_missing",
            param="account",
        )
    return _reply(request, state.account)


# customers


async def create_customer(request: web.Request) -> web.Response:
    return _create(request, _state(request).create_customer)


async def get_customer(request: web.Request) -> web.Response:
    state = _state(request)
    # Stripe still answers for a deleted customer, with a ``deleted: true`` stub.
    return _reply(request, state.get_customer(request.match_info["id"], allow_deleted=True))


async def update_customer(request: web.Request) -> web.Response:
    return _update(request, _state(request).update_customer)


async def delete_customer(request: web.Request) -> web.Response:
    state = _state(request)
    return _json(state.delete_customer(request.match_info["id"]))


async def list_customers(request: web.Request) -> web.Response:
    return _reply_list(request, "/v1/customers", _state(request).list_customers)


async def list_customer_payment_methods(request: web.Request) -> web.Response:
    state = _state(request)
    customer_id = request.match_info["id"]
    state.get_customer(customer_id)

    def page(params: Obj, **paging: Any) -> tuple[list[Obj], bool]:
        return state.list_payment_methods({**params, "customer": customer_id}, **paging)

    return _reply_list(request, f"/v1/customers/{customer_id}/payment_methods", page)


async def create_customer_tax_id(request: web.Request) -> web.Response:
    return _update(request, _state(request).create_tax_id)


async def list_customer_tax_ids(request: web.Request) -> web.Response:
    state = _state(request)
    customer_id = request.match_info["id"]

    def page(params: Obj, **paging: Any) -> tuple[list[Obj], bool]:
        return state.list_tax_ids(customer_id, **paging)

    return _reply_list(request, f"/v1/customers/{customer_id}/tax_ids", page)


async def get_tax_rate(request: web.Request) -> web.Response:
    return _reply(request, _state(request).get_tax_rate(request.match_info["id"]))


async def list_tax_rates(request: web.Request) -> web.Response:
    return _reply_list(request, "/v1/tax_rates", _state(request).list_tax_rates)


# products and prices


async def create_product(request: web.Request) -> web.Response:
    return _create(request, _state(request).create_product)


async def get_product(request: web.Request) -> web.Response:
    return _reply(request, _state(request).get_product(request.match_info["id"]))


async def update_product(request: web.Request) -> web.Response:
    return _update(request, _state(request).update_product)


async def list_products(request: web.Request) -> web.Response:
    return _reply_list(request, "/v1/products", _state(request).list_products)


async def list_product_features(request: web.Request) -> web.Response:
    product_id = request.match_info["id"]
    _state(request).get_product(product_id)
    # Entitlement features are not modelled: every product has none.
    return _reply_list(request, f"/v1/products/{product_id}/features", lambda p, **k: ([], False))


async def create_price(request: web.Request) -> web.Response:
    return _create(request, _state(request).create_price)


async def get_price(request: web.Request) -> web.Response:
    return _reply(request, _state(request).get_price(request.match_info["id"], param="id"))


async def update_price(request: web.Request) -> web.Response:
    return _update(request, _state(request).update_price)


async def list_prices(request: web.Request) -> web.Response:
    return _reply_list(request, "/v1/prices", _state(request).list_prices)


# coupons and promotion codes


def _resource(singular: str, plural: str) -> tuple[Handler, Handler, Handler, Handler]:
    """Create, retrieve, update and list handlers for ``state.<verb>_<singular|plural>``."""

    async def create(request: web.Request) -> web.Response:
        return _create(request, getattr(_state(request), f"create_{singular}"))

    async def retrieve(request: web.Request) -> web.Response:
        return _reply(
            request, getattr(_state(request), f"get_{singular}")(request.match_info["id"])
        )

    async def update(request: web.Request) -> web.Response:
        return _update(request, getattr(_state(request), f"update_{singular}"))

    async def list_all(request: web.Request) -> web.Response:
        return _reply_list(request, f"/v1/{plural}", getattr(_state(request), f"list_{plural}"))

    return create, retrieve, update, list_all


# checkout


async def create_checkout_session(request: web.Request) -> web.Response:
    return _create(request, _state(request).create_checkout_session)


async def get_checkout_session(request: web.Request) -> web.Response:
    return _reply(request, _state(request).get_checkout_session(request.match_info["id"]))


async def expire_checkout_session(request: web.Request) -> web.Response:
    state = _state(request)
    return _reply(request, state.expire_checkout_session(request.match_info["id"]))


async def list_checkout_sessions(request: web.Request) -> web.Response:
    return _reply_list(request, "/v1/checkout/sessions", _state(request).list_checkout_sessions)


async def list_checkout_line_items(request: web.Request) -> web.Response:
    state = _state(request)
    session_id = request.match_info["id"]
    state.get_checkout_session(session_id)

    def page(params: Obj, **paging: Any) -> tuple[list[Obj], bool]:
        items = state.checkout_line_items.get(session_id, [])
        return _page_of_list(items, **paging)

    return _reply_list(request, f"/v1/checkout/sessions/{session_id}/line_items", page)


def _page_of_list(
    items: list[Obj],
    *,
    limit: int,
    starting_after: str | None = None,
    ending_before: str | None = None,
) -> tuple[list[Obj], bool]:
    """Paginate a small embedded list that is kept in display order (first item first)."""
    ids = [item["id"] for item in items]
    start, end = 0, len(items)
    if starting_after:
        if starting_after not in ids:
            raise invalid(f"No such object: '{starting_after}'", param="starting_after")
        start = ids.index(starting_after) + 1
    if ending_before:
        if ending_before not in ids:
            raise invalid(f"No such object: '{ending_before}'", param="ending_before")
        end = ids.index(ending_before)
        start = max(0, end - limit)
    chosen = items[start:end]
    if ending_before:
        return chosen, start > 0
    return chosen[:limit], len(chosen) > limit


# subscriptions


async def create_subscription(request: web.Request) -> web.Response:
    return _create(request, _state(request).create_subscription)


async def get_subscription(request: web.Request) -> web.Response:
    return _reply(request, _state(request).get_subscription(request.match_info["id"]))


async def update_subscription(request: web.Request) -> web.Response:
    return _update(request, _state(request).update_subscription)


async def cancel_subscription(request: web.Request) -> web.Response:
    return _update(request, _state(request).cancel_subscription)


async def list_subscriptions(request: web.Request) -> web.Response:
    return _reply_list(request, "/v1/subscriptions", _state(request).list_subscriptions)


async def create_subscription_item(request: web.Request) -> web.Response:
    # Items inherit livemode from their subscription.
    return _reply(request, _state(request).create_subscription_item(_params(request)))


async def get_subscription_item(request: web.Request) -> web.Response:
    return _reply(request, _state(request).get_subscription_item(request.match_info["id"]))


async def update_subscription_item(request: web.Request) -> web.Response:
    return _update(request, _state(request).update_subscription_item)


async def delete_subscription_item(request: web.Request) -> web.Response:
    state = _state(request)
    return _json(state.delete_subscription_item(request.match_info["id"], _params(request)))


async def list_subscription_items(request: web.Request) -> web.Response:
    return _reply_list(request, "/v1/subscription_items", _state(request).list_subscription_items)


# invoices


async def get_invoice(request: web.Request) -> web.Response:
    return _reply(request, _state(request).get_invoice(request.match_info["id"]))


async def list_invoices(request: web.Request) -> web.Response:
    return _reply_list(request, "/v1/invoices", _state(request).list_invoices)


async def list_invoice_lines(request: web.Request) -> web.Response:
    state = _state(request)
    invoice = state.get_invoice(request.match_info["id"])

    def page(params: Obj, **paging: Any) -> tuple[list[Obj], bool]:
        return _page_of_list(invoice["lines"]["data"], **paging)

    return _reply_list(request, f"/v1/invoices/{invoice['id']}/lines", page)


async def pay_invoice(request: web.Request) -> web.Response:
    return _reply(request, _state(request).pay_invoice(request.match_info["id"]))


# charges, invoice payments, disputes


async def get_charge(request: web.Request) -> web.Response:
    return _reply(request, _state(request).get_charge(request.match_info["id"]))


async def create_refund(request: web.Request) -> web.Response:
    return _create(request, _state(request).create_refund)


async def list_refunds(request: web.Request) -> web.Response:
    return _reply_list(request, "/v1/refunds", _state(request).list_refunds)


async def get_invoice_payment(request: web.Request) -> web.Response:
    return _reply(request, _state(request).get_invoice_payment(request.match_info["id"]))


async def list_charges(request: web.Request) -> web.Response:
    return _reply_list(request, "/v1/charges", _state(request).list_charges)


async def list_invoice_payments(request: web.Request) -> web.Response:
    return _reply_list(request, "/v1/invoice_payments", _state(request).list_invoice_payments)


async def get_dispute(request: web.Request) -> web.Response:
    return _reply(request, _state(request).get_dispute(request.match_info["id"]))


async def list_disputes(request: web.Request) -> web.Response:
    return _reply_list(request, "/v1/disputes", _state(request).list_disputes)


async def control_dispute(request: web.Request) -> web.Response:
    """``POST /_control/disputes/{id}/{action}``: ``evidence``, or ``close`` with ``won``."""
    state, dispute_id = _state(request), request.match_info["id"]
    body = await _body(request)
    action = request.match_info["action"]
    if action == "evidence":
        return _json(state.submit_dispute_evidence(dispute_id))
    if action == "close":
        return _json(state.close_dispute(dispute_id, won=bool(body.get("won", True))))
    raise web.HTTPNotFound(text=f"unknown action {action!r}")


async def get_invoice_item(request: web.Request) -> web.Response:
    state = _state(request)
    item = state.invoice_items.get(request.match_info["id"])
    if item is None:
        raise no_such("ii", request.match_info["id"])
    return _reply(request, item)


async def list_invoice_items(request: web.Request) -> web.Response:
    state = _state(request)

    def page(params: Obj, **paging: Any) -> tuple[list[Obj], bool]:
        customer_id = get_str(params, "customer")
        invoice_id = get_str(params, "invoice")
        pending = get_bool(params, "pending")

        def match(obj: Obj) -> bool:
            return (
                (customer_id is None or obj["customer"] == customer_id)
                and (invoice_id is None or obj["invoice"] == invoice_id)
                and (pending is None or (obj["invoice"] is None) == pending)
            )

        return state.invoice_items.page(match=match, kind="invoiceitem", **paging)

    return _reply_list(request, "/v1/invoiceitems", page)


# portal, payment methods, events


async def create_portal_session(request: web.Request) -> web.Response:
    return _create(request, _state(request).create_portal_session)


async def get_payment_method(request: web.Request) -> web.Response:
    return _reply(request, _state(request).get_payment_method(request.match_info["id"]))


async def list_payment_methods(request: web.Request) -> web.Response:
    return _reply_list(request, "/v1/payment_methods", _state(request).list_payment_methods)


async def get_event(request: web.Request) -> web.Response:
    state = _state(request)
    event = state.events.get(request.match_info["id"])
    if event is None:
        raise no_such("evt", request.match_info["id"])
    return _reply(request, event)


async def list_events(request: web.Request) -> web.Response:
    return _reply_list(request, "/v1/events", _state(request).list_events)


async def unknown_route(request: web.Request) -> web.Response:
    raise StripeError(
        404,
        f"Unrecognized request URL ({request.method}: {request.path}). Please see "
        "https://stripe.com/docs or we can help at https://support.stripe.com/.",
        code="resource_missing",
    )


# -- hosted pages -------------------------------------------------------------------------------


def _html(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html")


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


async def checkout_page(request: web.Request) -> web.Response:
    state = _state(request)
    with state.lock:
        try:
            session = state.get_checkout_session(request.match_info["id"])
        except StripeError:
            return _html(pages.message("Not found", "This checkout session does not exist."), 404)
        if session["status"] != "open":
            link = (session["success_url"], "Continue") if session["success_url"] else None
            if session["status"] == "complete" and link:
                link = (_success_url(session), "Continue")
            return _html(
                pages.message(
                    "Checkout closed", f"This checkout session is {session['status']}.", link
                )
            )
        return _html(_checkout_view(state, session))


def _checkout_view(state: StripeState, session: Obj, error: str | None = None) -> str:
    """The hosted page for an open session (the caller holds the state's lock)."""
    return pages.checkout(
        session,
        state.checkout_line_items[session["id"]],
        trial_days=state.checkout_trial_days(session["id"]),
        error=error,
    )


def _success_url(session: Obj) -> str:
    return session["success_url"].replace("{CHECKOUT_SESSION_ID}", session["id"])


async def checkout_submit(request: web.Request) -> web.Response:
    state = _state(request)
    form = parse_form(parse_qsl((await request.read()).decode(), keep_blank_values=True))
    session_id = request.match_info["id"]
    custom = form.get("custom_fields") if isinstance(form.get("custom_fields"), dict) else {}
    try:
        session = state.complete_checkout(
            session_id,
            email=get_str(form, "email"),
            name=get_str(form, "name") or None,
            card_number=get_str(form, "card_number"),
            custom_fields={str(k): str(v) for k, v in (custom or {}).items()},
            promotion_code=get_str(form, "promotion_code"),
            address={
                "country": get_str(form, "country"),
                "postal_code": get_str(form, "postal_code"),
            },
            tax_id=get_str(form, "tax_id"),
        )
    except StripeError as exc:
        with state.lock:
            current = state.checkout_sessions.get(session_id)
            if current is None:
                return _html(
                    pages.message("Not found", "This checkout session does not exist."), 404
                )
            if current["status"] != "open":
                return _html(pages.message("Checkout closed", exc.message), 400)
            page = _checkout_view(state, current, exc.message)
        return _html(page, 402 if exc.status == 402 else 400)
    if session["success_url"]:
        return _redirect(_success_url(session))
    return _html(pages.message("Payment complete", "Thank you: your subscription is active."))


def _portal_view(
    request: web.Request, *, notice: str | None = None, error: str | None = None, status: int = 200
) -> web.Response:
    state = _state(request)
    with state.lock:
        try:
            session = state.get_portal_session(request.match_info["id"])
            customer = state.get_customer(session["customer"])
        except StripeError:
            return _html(pages.message("Not found", "This portal session does not exist."), 404)
        subs = [
            state.subscriptions.objects[s] for s in state.subs_by_customer.get(customer["id"], [])
        ]
        invoices = [
            state.invoices.objects[i] for i in state.invoices_by_customer.get(customer["id"], [])
        ]
        pm_id = customer["invoice_settings"]["default_payment_method"]
        if pm_id is None and subs:
            pm_id = subs[-1]["default_payment_method"]
        card = state.payment_methods.get(pm_id) if pm_id else None
        names = {p["id"]: p["name"] for p in state.products.values()}
        page = pages.portal(
            session, customer, subs[::-1], invoices[::-1], card, names, notice=notice, error=error
        )
    return _html(page, status)


async def portal_page(request: web.Request) -> web.Response:
    return _portal_view(
        request, notice=request.query.get("notice"), error=request.query.get("error")
    )


async def portal_update_card(request: web.Request) -> web.Response:
    state = _state(request)
    session_id = request.match_info["id"]
    form = parse_form(parse_qsl((await request.read()).decode(), keep_blank_values=True))
    try:
        state.portal_update_card(session_id, card_number=get_str(form, "card_number") or "")
    except StripeError as exc:
        return _portal_view(request, error=exc.message, status=exc.status)
    return _redirect(f"/portal/{session_id}?{urlencode({'notice': 'Card updated.'})}")


async def portal_subscription_action(request: web.Request) -> web.Response:
    state = _state(request)
    session_id, sub_id = request.match_info["id"], request.match_info["sub"]
    action = request.match_info["action"]
    try:
        with state.lock:
            state.portal_subscription(session_id, sub_id)
        state.set_cancel_at_period_end(sub_id, action == "cancel")
    except StripeError as exc:
        return _portal_view(request, error=exc.message, status=exc.status)
    notice = (
        "Your plan will end at the end of the period."
        if action == "cancel"
        else ("Your plan will renew.")
    )
    return _redirect(f"/portal/{session_id}?{urlencode({'notice': notice})}")


async def invoice_page(request: web.Request) -> web.Response:
    state = _state(request)
    with state.lock:
        invoice = state.invoices.get(request.match_info["id"])
        if invoice is None:
            return _html(pages.message("Not found", "No such invoice."), 404)
        return _html(pages.invoice(invoice))


async def invoice_pdf(request: web.Request) -> web.Response:
    state = _state(request)
    with state.lock:
        invoice = state.invoices.get(request.match_info["id"])
        if invoice is None:
            raise web.HTTPNotFound()
        body = pages.invoice_pdf(invoice)
    return web.Response(body=body, content_type="application/pdf")


async def dashboard(request: web.Request) -> web.Response:
    state = _state(request)
    dispatcher = request.app[DISPATCHER]
    counts = collections.Counter(d["status"] for d in dispatcher.deliveries())
    with state.lock:
        prices = [(p, state.product_name(p["product"])) for p in state.prices.values()]
        subs, _ = state.subscriptions.page(limit=50)
        rows = []
        for sub in subs:
            customer = state.customers.get(sub["customer"]) or {}
            rows.append((sub, customer.get("email") or sub["customer"]))
        events, _ = state.events.page(limit=20)
        page = pages.dashboard(
            prices=prices,
            subscriptions=rows,
            subscription_total=len(state.subscriptions),
            events=events,
            endpoints=[e.url for e in dispatcher.endpoints],
            delivery_counts=dict(counts),
            notice=request.query.get("notice"),
            error=request.query.get("error"),
        )
    return _html(page)


def _lifecycle(state: StripeState, action: str) -> Callable[[str, Obj], Obj]:
    """The subscription controls shared by the dashboard buttons and ``/_control``."""
    operations: dict[str, Callable[[str, Obj], Obj]] = {
        "renew": lambda sub_id, body: state.renew(sub_id),
        "fail_renewal": lambda sub_id, body: state.fail_renewal(sub_id),
        "recover": lambda sub_id, body: state.recover(sub_id),
        "cancel_at_period_end": lambda sub_id, body: state.set_cancel_at_period_end(
            sub_id, bool(body.get("value", True))
        ),
        "cancel": lambda sub_id, body: state.cancel(sub_id),
        "status": lambda sub_id, body: state.set_status(sub_id, str(body.get("status", ""))),
        "dispute": lambda sub_id, body: state.open_dispute(
            sub_id, reason=str(body.get("reason") or "fraudulent")
        ),
        "refund": lambda sub_id, body: state.refund(sub_id, amount=body.get("amount")),
        "end_trial": lambda sub_id, body: state.end_trial(sub_id),
        "trial_will_end": lambda sub_id, body: state.trial_will_end(sub_id),
    }
    if action not in operations:
        raise web.HTTPNotFound(text=f"unknown action {action!r}")
    return operations[action]


async def dashboard_action(request: web.Request) -> web.Response:
    state = _state(request)
    sub_id, action = request.match_info["id"], request.match_info["action"]
    operation = _lifecycle(state, action)
    try:
        operation(sub_id, {})
    except StripeError as exc:
        return _redirect("/?" + urlencode({"error": exc.message}))
    return _redirect("/?" + urlencode({"notice": f"{action.replace('_', ' ')}: {sub_id}"}))


async def dashboard_flush(request: web.Request) -> web.Response:
    count = request.app[DISPATCHER].flush()
    return _redirect("/?" + urlencode({"notice": f"Released {count} held deliveries."}))


# -- /_control ----------------------------------------------------------------------------------


async def _body(request: web.Request) -> Obj:
    raw = await request.read()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise invalid("Control API bodies are JSON objects.") from None
    if not isinstance(data, dict):
        raise invalid("Control API bodies are JSON objects.")
    return data


@web.middleware
async def control_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/_control/"):
        return await handler(request)
    try:
        return await handler(request)
    except StripeError as exc:
        return _error(exc)
    except (ValueError, TypeError, KeyError) as exc:
        return _error(StripeError(400, f"{type(exc).__name__}: {exc}"))


async def control_state(request: web.Request) -> web.Response:
    kinds = [k for k in request.query.get("kind", "").split(",") if k] or None
    limit = int(request.query["limit"]) if "limit" in request.query else None
    return _json(_state(request).dump(kinds, limit))


async def control_reset(request: web.Request) -> web.Response:
    body = await _body(request)
    catalogue = body.get("catalogue")
    _state(request).reset(catalogue)
    request.app[DISPATCHER].clear()
    request.app[IDEMPOTENCY].clear()
    return _json({"ok": True})


async def control_subscription(request: web.Request) -> web.Response:
    state = _state(request)
    operation = _lifecycle(state, request.match_info["action"])
    return _json(operation(request.match_info["id"], await _body(request)))


async def control_complete_checkout(request: web.Request) -> web.Response:
    body = await _body(request)
    state = _state(request)
    session = state.complete_checkout(
        request.match_info["id"],
        email=body.get("email"),
        name=body.get("name"),
        card_number=str(body.get("card_number", "4242424242424242")),
        custom_fields=body.get("custom_fields") or {},
        promotion_code=body.get("promotion_code"),
        address=body.get("address"),
        tax_id=body.get("tax_id"),
    )
    with state.lock:
        return _json(
            {
                "session": snapshot(session),
                "redirect": _success_url(session) if session["success_url"] else None,
            }
        )


async def control_add_fault(request: web.Request) -> web.Response:
    body = await _body(request)
    fault = _state(request).add_fault(
        str(body.get("path_prefix", "/v1/")),
        status=int(body.get("status", 500)),
        count=int(body.get("count", 1)),
        method=body.get("method"),
    )
    return _json(fault)


async def control_faults(request: web.Request) -> web.Response:
    state = _state(request)
    with state.lock:
        return _json({"faults": list(state.faults)})


async def control_clear_faults(request: web.Request) -> web.Response:
    _state(request).clear_faults()
    return _json({"ok": True})


async def control_latency(request: web.Request) -> web.Response:
    """``GET``/``POST /_control/latency``: the delay added to every ``/v1`` call."""
    latency = request.app[LATENCY]
    if request.method == "POST":
        body = await _body(request)
        return _json(latency.configure(ms=body.get("ms"), jitter_ms=body.get("jitter_ms")))
    return _json(latency.as_dict())


async def control_decline_payments(request: web.Request) -> web.Response:
    body = await _body(request)
    state = _state(request)
    state.decline_payments(int(body.get("count", 1)))
    return _json({"declines": state.declines})


async def control_requests(request: web.Request) -> web.Response:
    prefix = request.query.get("path_prefix", "")
    entries = [e for e in _state(request).request_log() if e["path"].startswith(prefix)]
    return _json({"count": len(entries), "requests": entries})


async def control_clear_requests(request: web.Request) -> web.Response:
    _state(request).clear_requests()
    return _json({"ok": True})


async def control_seed(request: web.Request) -> web.Response:
    body = await _body(request)
    started = time.monotonic()
    ids = _state(request).seed(
        int(body.get("count", 100)),
        price=body.get("price"),
        quantity=int(body.get("quantity", 1)),
        status=str(body.get("status", "active")),
        metadata_key=body.get("metadata_key"),
        metadata=body.get("metadata"),
    )
    result: Obj = {
        "created": len(ids),
        "first": ids[0] if ids else None,
        "last": ids[-1] if ids else None,
        "seconds": round(time.monotonic() - started, 3),
    }
    if body.get("return_ids"):
        result["subscription_ids"] = ids
    return _json(result)


async def control_deliveries(request: web.Request) -> web.Response:
    deliveries = request.app[DISPATCHER].deliveries()
    event_type = request.query.get("type")
    if event_type:
        deliveries = [d for d in deliveries if d["event_type"] == event_type]
    return _json({"count": len(deliveries), "deliveries": deliveries})


async def control_clear_deliveries(request: web.Request) -> web.Response:
    request.app[DISPATCHER].clear()
    return _json({"ok": True})


async def control_flush(request: web.Request) -> web.Response:
    body = await _body(request)
    released = request.app[DISPATCHER].flush(reverse=bool(body.get("reverse", False)))
    return _json({"released": released})


def _webhook_config(dispatcher: WebhookDispatcher) -> Obj:
    return {
        "endpoints": [{"url": e.url} for e in dispatcher.endpoints],
        "options": dict(vars(dispatcher.options)),
    }


async def control_webhook(request: web.Request) -> web.Response:
    dispatcher = request.app[DISPATCHER]
    if request.method == "GET":
        return _json(_webhook_config(dispatcher))
    body = await _body(request)
    if "endpoints" in body:
        dispatcher.set_endpoints(
            [WebhookEndpoint(str(e["url"]), str(e["secret"])) for e in body["endpoints"]]
        )
    elif "url" in body:
        endpoints = []
        if body["url"]:
            if not body.get("secret"):
                raise invalid("A webhook endpoint needs a secret.", param="secret")
            endpoints = [WebhookEndpoint(str(body["url"]), str(body["secret"]))]
        dispatcher.set_endpoints(endpoints)
    options = {k: v for k, v in body.items() if k not in ("url", "secret", "endpoints")}
    dispatcher.configure(**options)
    return _json(_webhook_config(dispatcher))


async def control_health(request: web.Request) -> web.Response:
    return _json({"ok": True, "api_version": API_VERSION})


# -- assembly ---------------------------------------------------------------------------------


def build_app(
    state: StripeState,
    dispatcher: WebhookDispatcher,
    *,
    api_keys: frozenset[str] = frozenset(),
    latency: Latency | None = None,
) -> web.Application:
    """The aiohttp application; starting it starts webhook delivery."""
    app = web.Application(middlewares=[api_middleware, control_middleware])
    app[STATE] = state
    app[LATENCY] = latency or Latency()
    app[DISPATCHER] = dispatcher
    app[API_KEYS] = api_keys
    app[IDEMPOTENCY] = collections.OrderedDict()

    async def start_dispatcher(_: web.Application) -> None:
        await dispatcher.start()

    async def stop_dispatcher(_: web.Application) -> None:
        await dispatcher.stop()

    app.on_startup.append(start_dispatcher)
    app.on_cleanup.append(stop_dispatcher)

    r = app.router
    r.add_get("/v1/account", get_account)
    r.add_get("/v1/accounts/{id}", get_account_by_id)
    r.add_post("/v1/customers", create_customer)
    r.add_get("/v1/customers", list_customers)
    r.add_get("/v1/customers/{id}", get_customer)
    r.add_post("/v1/customers/{id}", update_customer)
    r.add_delete("/v1/customers/{id}", delete_customer)
    r.add_get("/v1/customers/{id}/payment_methods", list_customer_payment_methods)
    r.add_post("/v1/customers/{id}/tax_ids", create_customer_tax_id)
    r.add_get("/v1/customers/{id}/tax_ids", list_customer_tax_ids)
    r.add_get("/v1/tax_rates", list_tax_rates)
    r.add_get("/v1/tax_rates/{id}", get_tax_rate)
    r.add_post("/v1/products", create_product)
    r.add_get("/v1/products", list_products)
    r.add_get("/v1/products/{id}", get_product)
    r.add_post("/v1/products/{id}", update_product)
    r.add_get("/v1/products/{id}/features", list_product_features)
    r.add_post("/v1/prices", create_price)
    r.add_get("/v1/prices", list_prices)
    r.add_get("/v1/prices/{id}", get_price)
    r.add_post("/v1/prices/{id}", update_price)
    for singular, plural in (("coupon", "coupons"), ("promotion_code", "promotion_codes")):
        create, retrieve, update, list_all = _resource(singular, plural)
        r.add_post(f"/v1/{plural}", create)
        r.add_get(f"/v1/{plural}", list_all)
        r.add_get(f"/v1/{plural}/{{id}}", retrieve)
        r.add_post(f"/v1/{plural}/{{id}}", update)
    r.add_post("/v1/checkout/sessions", create_checkout_session)
    r.add_get("/v1/checkout/sessions", list_checkout_sessions)
    r.add_get("/v1/checkout/sessions/{id}", get_checkout_session)
    r.add_get("/v1/checkout/sessions/{id}/line_items", list_checkout_line_items)
    r.add_post("/v1/checkout/sessions/{id}/expire", expire_checkout_session)
    r.add_post("/v1/subscriptions", create_subscription)
    r.add_get("/v1/subscriptions", list_subscriptions)
    r.add_get("/v1/subscriptions/{id}", get_subscription)
    r.add_post("/v1/subscriptions/{id}", update_subscription)
    r.add_delete("/v1/subscriptions/{id}", cancel_subscription)
    r.add_post("/v1/subscription_items", create_subscription_item)
    r.add_get("/v1/subscription_items", list_subscription_items)
    r.add_get("/v1/subscription_items/{id}", get_subscription_item)
    r.add_post("/v1/subscription_items/{id}", update_subscription_item)
    r.add_delete("/v1/subscription_items/{id}", delete_subscription_item)
    r.add_get("/v1/charges", list_charges)
    r.add_get("/v1/charges/{id}", get_charge)
    r.add_post("/v1/refunds", create_refund)
    r.add_get("/v1/refunds", list_refunds)
    r.add_get("/v1/invoice_payments", list_invoice_payments)
    r.add_get("/v1/invoice_payments/{id}", get_invoice_payment)
    r.add_get("/v1/disputes", list_disputes)
    r.add_get("/v1/disputes/{id}", get_dispute)
    r.add_get("/v1/invoices", list_invoices)
    r.add_get("/v1/invoices/{id}", get_invoice)
    r.add_get("/v1/invoices/{id}/lines", list_invoice_lines)
    r.add_post("/v1/invoices/{id}/pay", pay_invoice)
    r.add_get("/v1/invoiceitems", list_invoice_items)
    r.add_get("/v1/invoiceitems/{id}", get_invoice_item)
    r.add_post("/v1/billing_portal/sessions", create_portal_session)
    r.add_get("/v1/payment_methods", list_payment_methods)
    r.add_get("/v1/payment_methods/{id}", get_payment_method)
    r.add_get("/v1/events", list_events)
    r.add_get("/v1/events/{id}", get_event)
    r.add_route("*", "/v1/{tail:.*}", unknown_route)

    r.add_get("/", dashboard)
    r.add_post("/dashboard/subscriptions/{id}/{action}", dashboard_action)
    r.add_post("/dashboard/flush", dashboard_flush)
    r.add_get("/checkout/{id}", checkout_page)
    r.add_post("/checkout/{id}", checkout_submit)
    r.add_get("/portal/{id}", portal_page)
    r.add_post("/portal/{id}/card", portal_update_card)
    r.add_post(
        "/portal/{id}/subscriptions/{sub}/{action:cancel|reactivate}", portal_subscription_action
    )
    r.add_get("/invoices/{id}", invoice_page)
    r.add_get("/invoices/{id}/pdf", invoice_pdf)

    r.add_get("/_control/health", control_health)
    r.add_get("/_control/state", control_state)
    r.add_post("/_control/reset", control_reset)
    r.add_post("/_control/subscriptions/{id}/{action}", control_subscription)
    r.add_post("/_control/disputes/{id}/{action}", control_dispute)
    r.add_post("/_control/checkout/{id}/complete", control_complete_checkout)
    r.add_get("/_control/faults", control_faults)
    r.add_post("/_control/faults", control_add_fault)
    r.add_delete("/_control/faults", control_clear_faults)
    r.add_post("/_control/payments/decline", control_decline_payments)
    r.add_get("/_control/latency", control_latency)
    r.add_post("/_control/latency", control_latency)
    r.add_get("/_control/requests", control_requests)
    r.add_post("/_control/requests/clear", control_clear_requests)
    r.add_post("/_control/seed", control_seed)
    r.add_get("/_control/deliveries", control_deliveries)
    r.add_post("/_control/deliveries/clear", control_clear_deliveries)
    r.add_post("/_control/flush", control_flush)
    r.add_get("/_control/webhook", control_webhook)
    r.add_post("/_control/webhook", control_webhook)
    return app
