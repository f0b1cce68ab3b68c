"""The fake's in-memory Stripe account: objects, business operations and the event log.

Every operation runs under one re-entrant lock, so the HTTP handlers (on the server's event
loop thread) and a test driving ``srv.state.renew(...)`` from its own thread see consistent
objects. Operations collect the events they emit into a *batch*; the batch is stored and
handed to listeners (the webhook dispatcher) once the operation has finished and the lock is
released, so a listener never runs under the lock.

Objects are stored as the JSON-ready dicts the API returns. Lists keep creation order plus an
id → position index, so a cursor page over 100k subscriptions costs O(page), not O(n).
"""

from __future__ import annotations

import gc
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from . import objects, tax
from .catalogue import DEMO_CATALOGUE, Catalogue
from .errors import StripeError, invalid, missing, no_such
from .forms import apply_metadata, get_bool, get_dict, get_int, get_list, get_str
from .objects import add_interval, describe_interval, format_amount, new_id

Obj = dict[str, Any]
Listener = Callable[[list[Obj]], None]

SUBSCRIPTION_STATUSES = {
    "incomplete",
    "incomplete_expired",
    "trialing",
    "active",
    "past_due",
    "canceled",
    "unpaid",
    "paused",
}
# Stripe's test card numbers that are declined (generic, insufficient funds, on attach).
DECLINED_CARDS = {"4000000000000002", "4000000000009995", "4000000000000341"}


def snapshot(obj: Obj) -> Obj:
    """A deep copy that later mutations cannot reach (events keep the object as it was)."""
    return json.loads(json.dumps(obj))


def changes(before: Obj, after: Obj) -> Obj:
    """Stripe's ``previous_attributes``: the old values of the top-level fields that changed."""
    return {key: value for key, value in before.items() if after.get(key) != value}


class Store:
    """Objects of one kind, in creation order, with O(1) lookup of a cursor's position."""

    def __init__(self) -> None:
        self.objects: dict[str, Obj] = {}
        self.order: list[str] = []
        self.position: dict[str, int] = {}

    def add(self, obj: Obj) -> Obj:
        self.position[obj["id"]] = len(self.order)
        self.order.append(obj["id"])
        self.objects[obj["id"]] = obj
        return obj

    def get(self, object_id: str) -> Obj | None:
        return self.objects.get(object_id)

    def __len__(self) -> int:
        return len(self.objects)

    def values(self) -> Iterator[Obj]:
        for object_id in self.order:
            obj = self.objects.get(object_id)
            if obj is not None:
                yield obj

    def page(
        self,
        *,
        limit: int,
        starting_after: str | None = None,
        ending_before: str | None = None,
        match: Callable[[Obj], bool] | None = None,
        subset: Sequence[str] | None = None,
        kind: str = "object",
    ) -> tuple[list[Obj], bool]:
        """One page, newest first, as Stripe's list endpoints return it.

        ``subset`` is an id list in creation order (a secondary index such as "this
        customer's subscriptions"); without it the whole store is walked from the cursor.
        """
        ids: Sequence[str] = self.order if subset is None else subset
        step = -1
        start = len(ids) - 1
        cursor = starting_after or ending_before
        if cursor:
            param = "starting_after" if starting_after else "ending_before"
            if cursor not in self.position:
                raise StripeError(
                    400, f"No such {kind}: '{cursor}'", code="resource_missing", param=param
                )
            index = self.position[cursor] if subset is None else _index(subset, cursor)
            if index is None:
                raise invalid(f"'{cursor}' is not in this list", param=param)
            if starting_after:
                start = index - 1
            else:
                start, step = index + 1, 1
        found: list[Obj] = []
        i = start
        while 0 <= i < len(ids) and len(found) <= limit:
            obj = self.objects.get(ids[i])
            if obj is not None and (match is None or match(obj)):
                found.append(obj)
            i += step
        has_more = len(found) > limit
        found = found[:limit]
        if step == 1:
            found.reverse()  # walked towards newer objects; pages are always newest first
        return found, has_more


def _index(ids: Sequence[str], object_id: str) -> int | None:
    try:
        return ids.index(object_id)
    except ValueError:
        return None


class _Context(threading.local):
    depth = 0
    batch: list[Obj] | None = None
    request_id: str | None = None
    idempotency_key: str | None = None


class StripeState:
    """The whole fake account. Public methods are safe to call from any thread."""

    def __init__(
        self,
        *,
        catalogue: Catalogue | None = None,
        public_url: str = "http://127.0.0.1:12111",
    ) -> None:
        self.lock = threading.RLock()
        self.public_url = public_url.rstrip("/")
        self.catalogue = DEMO_CATALOGUE if catalogue is None else catalogue
        self.webhook_endpoint_count = 0
        self._listeners: list[Listener] = []
        self._ctx = _Context()
        self.account = objects.account("acct_" + "fakesandbox0000001", int(time.time()))
        self.requests: deque[Obj] = deque(maxlen=100_000)
        self.faults: list[Obj] = []
        self.declines = 0  # how many upcoming API-initiated card charges fail
        self.reset()

    # -- plumbing -------------------------------------------------------------------------

    def now(self) -> int:
        return int(time.time())

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    @contextmanager
    def request_context(
        self, request_id: str | None, idempotency_key: str | None
    ) -> Iterator[None]:
        """Events emitted while serving an API request name it in ``event.request``."""
        previous = (self._ctx.request_id, self._ctx.idempotency_key)
        self._ctx.request_id, self._ctx.idempotency_key = request_id, idempotency_key
        try:
            yield
        finally:
            self._ctx.request_id, self._ctx.idempotency_key = previous

    @contextmanager
    def _operation(self) -> Iterator[None]:
        outermost = False
        with self.lock:
            if self._ctx.depth == 0:
                self._ctx.batch = []
                outermost = True
            self._ctx.depth += 1
            try:
                yield
            finally:
                self._ctx.depth -= 1
                batch = self._ctx.batch if outermost else None
                if outermost:
                    self._ctx.batch = None
        # Outside the lock: listeners may take their own locks or hop threads.
        if batch:
            for listener in self._listeners:
                listener(batch)

    def _emit(self, event_type: str, obj: Obj, previous: Obj | None = None) -> Obj:
        assert self._ctx.batch is not None, "events are emitted inside an operation"
        event = objects.event(
            new_id("evt"),
            event_type=event_type,
            data_object=snapshot(obj),
            previous_attributes=previous,
            created=self.now(),
            livemode=bool(obj.get("livemode", False)),
            pending_webhooks=self.webhook_endpoint_count,
            request_id=self._ctx.request_id,
            idempotency_key=self._ctx.idempotency_key,
        )
        self.events.add(event)
        self._ctx.batch.append(event)
        return event

    def mark_event_delivered(self, event_id: str) -> None:
        with self.lock:
            event = self.events.get(event_id)
            if event is not None and event["pending_webhooks"] > 0:
                event["pending_webhooks"] -= 1

    # -- reset and catalogue -------------------------------------------------------------

    def reset(self, catalogue: Catalogue | None = None) -> None:
        with self.lock:
            if catalogue is not None:
                self.catalogue = catalogue
            self.customers = Store()
            self.products = Store()
            self.prices = Store()
            self.plans: dict[str, Obj] = {}
            self.subscriptions = Store()
            self.subscription_items = Store()
            self.invoices = Store()
            self.invoice_items = Store()
            self.checkout_sessions = Store()
            self.checkout_line_items: dict[str, list[Obj]] = {}
            # ``subscription_data`` of each session, kept beside the (Stripe-shaped) session.
            self.session_subscription_data: dict[str, Obj] = {}
            self.portal_sessions = Store()
            self.payment_methods = Store()
            self.charges = Store()
            self.refunds = Store()
            self.invoice_payments = Store()
            self.disputes = Store()
            self.coupons = Store()
            self.promotion_codes = Store()
            self.discounts = Store()
            self.discounts_used: set[str] = set()  # ``once`` discounts already applied
            self.tax_rates = Store()
            self.tax_ids = Store()
            self.tax_ids_by_customer: dict[str, list[str]] = {}
            self.charge_by_invoice: dict[str, str] = {}
            self.events = Store()
            self.subs_by_customer: dict[str, list[str]] = {}
            self.invoices_by_customer: dict[str, list[str]] = {}
            self.invoices_by_subscription: dict[str, list[str]] = {}
            self.pms_by_customer: dict[str, list[str]] = {}
            self.faults.clear()
            self.declines = 0
            self.requests.clear()
            created = self.now()
            for entry in self.catalogue:
                product = objects.product(
                    entry["id"],
                    name=entry["name"],
                    created=created,
                    livemode=False,
                    description=entry.get("description"),
                    metadata=entry.get("metadata"),
                )
                self.products.add(product)
                for price_def in entry.get("prices", []):
                    price = self._build_price(product["id"], price_def, created, livemode=False)
                    self.prices.add(price)
                    if product["default_price"] is None:
                        product["default_price"] = price["id"]

    def _build_price(self, product_id: str, spec: Obj, created: int, *, livemode: bool) -> Obj:
        interval = spec.get("interval", "month")
        recurring = None
        if interval:
            _check_interval(interval, int(spec.get("interval_count", 1)))
            recurring = {
                "interval": interval,
                "interval_count": int(spec.get("interval_count", 1)),
                "meter": None,
                "trial_period_days": None,
                "usage_type": "licensed",
            }
        price = objects.price(
            spec.get("id") or new_id("price"),
            product_id=product_id,
            unit_amount=int(spec["unit_amount"]),
            currency=spec.get("currency", "usd"),
            created=created,
            livemode=livemode,
            recurring=recurring,
            nickname=spec.get("nickname"),
            lookup_key=spec.get("lookup_key"),
            metadata=spec.get("metadata"),
        )
        self.plans[price["id"]] = objects.plan_from_price(price)
        return price

    # -- lookups ---------------------------------------------------------------------------

    _PREFIXES = {
        "cus": "customers",
        "sub": "subscriptions",
        "si": "subscription_items",
        "price": "prices",
        "prod": "products",
        "in": "invoices",
        "ii": "invoice_items",
        "cs": "checkout_sessions",
        "evt": "events",
        "bps": "portal_sessions",
        "pm": "payment_methods",
        "ch": "charges",
        "inpay": "invoice_payments",
        "dp": "disputes",
        "promo": "promotion_codes",
        "di": "discounts",
        "txr": "tax_rates",
        "txi": "tax_ids",
    }

    def lookup(self, object_id: str) -> Obj | None:
        """Any object by id, recognised by its prefix (used by ``expand``)."""
        if object_id == self.account["id"]:
            return self.account
        store_name = self._PREFIXES.get(object_id.split("_", 1)[0])
        if store_name is None:
            return self.coupons.get(object_id)  # coupon ids are free-form
        store: Store = getattr(self, store_name)
        return store.get(object_id)

    def _get(self, store: Store, kind: str, object_id: str, *, param: str = "id") -> Obj:
        obj = store.get(object_id) if isinstance(object_id, str) else None
        if obj is None:
            raise no_such(kind, str(object_id), param=param)
        return obj

    def get_customer(
        self, customer_id: str, *, param: str = "id", allow_deleted: bool = False
    ) -> Obj:
        """A customer; a deleted one (a ``{"deleted": true}`` stub) only if asked for."""
        customer = self._get(self.customers, "cus", customer_id, param=param)
        if customer.get("deleted") and not allow_deleted:
            raise no_such("cus", customer_id, param=param)
        return customer

    def get_subscription(self, subscription_id: str, *, param: str = "id") -> Obj:
        return self._get(self.subscriptions, "sub", subscription_id, param=param)

    def get_price(self, price_id: str, *, param: str = "price") -> Obj:
        return self._get(self.prices, "price", price_id, param=param)

    def get_product(self, product_id: str, *, param: str = "id") -> Obj:
        return self._get(self.products, "prod", product_id, param=param)

    def get_invoice(self, invoice_id: str) -> Obj:
        return self._get(self.invoices, "in", invoice_id)

    def get_checkout_session(self, session_id: str) -> Obj:
        return self._get(self.checkout_sessions, "cs", session_id)

    def get_portal_session(self, session_id: str) -> Obj:
        return self._get(self.portal_sessions, "bps", session_id)

    def product_name(self, product_id: str) -> str:
        product = self.products.get(product_id)
        return product["name"] if product else product_id

    # -- expansion -------------------------------------------------------------------------

    def render(self, obj: Obj, expand: Sequence[str] = ()) -> Obj:
        """The object with ``expand`` paths replaced by the objects they name.

        Returns shallow copies along each expanded path; the stored object is untouched.
        """
        with self.lock:
            for path in expand:
                obj = self._expand(obj, path.split("."))
            return obj

    def _expand(self, value: Any, parts: list[str]) -> Any:
        if not parts:
            return value
        if isinstance(value, list):
            return [self._expand(item, parts) for item in value]
        if not isinstance(value, dict):
            return value
        head, rest = parts[0], parts[1:]
        if head in value:
            child = value[head]
            if isinstance(child, str):
                child = self.lookup(child) or child
            elif isinstance(child, list):  # a list of ids (``discounts``) expands each one
                child = [self.lookup(c) or c if isinstance(c, str) else c for c in child]
        else:
            child = self._virtual_field(value, head)
            if child is None:
                return value
        expanded = dict(value)
        expanded[head] = self._expand(child, rest)
        return expanded

    def _virtual_field(self, obj: Obj, field: str) -> Any:
        """Fields Stripe includes only when expanded."""
        kind = obj.get("object")
        if kind == "checkout.session" and field == "line_items":
            items = self.checkout_line_items.get(obj["id"], [])
            return objects.list_object(items, f"/v1/checkout/sessions/{obj['id']}/line_items")
        if kind == "customer" and field == "sources":
            return objects.list_object([], f"/v1/customers/{obj['id']}/sources")
        if kind == "customer" and field == "tax_ids":
            ids = self.tax_ids_by_customer.get(obj["id"], [])
            return objects.list_object(
                [self.tax_ids.objects[i] for i in ids], f"/v1/customers/{obj['id']}/tax_ids"
            )
        if kind == "customer" and field == "subscriptions":
            subs = [self.subscriptions.objects[s] for s in self.subs_by_customer.get(obj["id"], [])]
            return objects.list_object(subs[::-1], f"/v1/customers/{obj['id']}/subscriptions")
        if kind == "price" and field == "currency_options":
            return {
                obj["currency"]: {
                    "custom_unit_amount": None,
                    "tax_behavior": obj["tax_behavior"],
                    "unit_amount": obj["unit_amount"],
                    "unit_amount_decimal": obj["unit_amount_decimal"],
                }
            }
        if field == "breakdown" and "amount_discount" in obj:
            return {"discounts": [], "taxes": []}
        return None

    # -- customers -------------------------------------------------------------------------

    def create_customer(self, params: Obj, *, livemode: bool = False) -> Obj:
        with self._operation():
            pm_id = get_str(params, "payment_method")
            pm = (
                self._get(self.payment_methods, "pm", pm_id, param="payment_method")
                if pm_id
                else None
            )
            customer_id = get_str(params, "id") or new_id("cus", 14)
            if customer_id in self.customers.objects:
                raise invalid(
                    f"Customer already exists: {customer_id}",
                    param="id",
                    code="resource_already_exists",
                )
            customer = objects.customer(
                customer_id,
                created=self.now(),
                livemode=livemode,
                email=get_str(params, "email"),
                name=get_str(params, "name"),
                description=get_str(params, "description"),
                phone=get_str(params, "phone"),
                metadata=apply_metadata({}, params.get("metadata")),
            )
            if params.get("address"):
                customer["address"] = _address(get_dict(params, "address"))
            self.customers.add(customer)
            self.subs_by_customer[customer["id"]] = []
            self._emit("customer.created", customer)
            if pm is not None:
                self._attach_payment_method(pm, customer)
            return customer

    def update_customer(self, customer_id: str, params: Obj) -> Obj:
        with self._operation():
            customer = self.get_customer(customer_id)
            before = snapshot(customer)
            for field in ("email", "name", "description", "phone"):
                if field in params:
                    customer[field] = get_str(params, field) or None
            customer["metadata"] = apply_metadata(customer["metadata"], params.get("metadata"))
            if "address" in params:
                address = get_dict(params, "address")
                customer["address"] = _address(address) if address else None
            settings = get_dict(params, "invoice_settings")
            if "default_payment_method" in settings:
                pm_id = settings["default_payment_method"] or None
                if pm_id:
                    pm = self._get(
                        self.payment_methods,
                        "pm",
                        pm_id,
                        param="invoice_settings[default_payment_method]",
                    )
                    if pm["customer"] != customer["id"]:
                        raise invalid(
                            f"The payment method {pm_id} is not attached to this customer.",
                            param="invoice_settings[default_payment_method]",
                        )
                customer["invoice_settings"] = {
                    **customer["invoice_settings"],
                    "default_payment_method": pm_id,
                }
            previous = changes(before, customer)
            if previous:
                self._emit("customer.updated", customer, previous)
            return customer

    def delete_customer(self, customer_id: str) -> Obj:
        with self._operation():
            customer = self.get_customer(customer_id)
            for sub_id in self.subs_by_customer.get(customer_id, []):
                sub = self.subscriptions.objects[sub_id]
                if sub["status"] not in ("canceled", "incomplete_expired"):
                    self._end_subscription(sub, reason="cancellation_requested")
            deleted = {"id": customer_id, "object": "customer", "deleted": True}
            self.customers.objects[customer_id] = deleted
            self._emit("customer.deleted", customer)
            return deleted

    def list_customers(self, params: Obj, **paging: Any) -> tuple[list[Obj], bool]:
        email = get_str(params, "email")
        created = created_filter(params)

        def match(obj: Obj) -> bool:
            if obj.get("deleted"):
                return False
            return (email is None or obj.get("email") == email) and created(obj)

        return self.customers.page(match=match, kind="customer", **paging)

    # -- tax ids and tax rates --------------------------------------------------------------

    def create_tax_id(self, customer_id: str, params: Obj) -> Obj:
        """``POST /v1/customers/{id}/tax_ids`` (``type``, ``value``), then
        ``customer.tax_id.created``."""
        id_type, value = get_str(params, "type"), get_str(params, "value")
        if not id_type:
            raise missing("type")
        if not value:
            raise missing("value")
        with self._operation():
            customer = self.get_customer(customer_id)
            country = (customer.get("address") or {}).get("country")
            tax_id = tax.tax_id(
                new_id("txi", 14),
                customer=customer_id,
                id_type=id_type,
                value=value,
                country=country,
                created=self.now(),
                livemode=customer["livemode"],
            )
            self.tax_ids.add(tax_id)
            self.tax_ids_by_customer.setdefault(customer_id, []).append(tax_id["id"])
            self._emit("customer.tax_id.created", tax_id)
            return tax_id

    def list_tax_ids(self, customer_id: str, **paging: Any) -> tuple[list[Obj], bool]:
        self.get_customer(customer_id)
        subset = self.tax_ids_by_customer.get(customer_id, [])
        return self.tax_ids.page(subset=subset, kind="tax_id", **paging)

    def _customer_tax_ids(self, customer_id: str) -> list[Obj]:
        """``{type, value}`` of each tax id (invoices' ``customer_tax_ids``, Checkout's)."""
        found = (self.tax_ids.objects[i] for i in self.tax_ids_by_customer.get(customer_id, []))
        return [{"type": t["type"], "value": t["value"]} for t in found]

    def _customer_update_check(self, params: Obj, customer_id: str | None) -> None:
        """Stripe's rules for a session with an existing customer: what Checkout collects for
        tax is saved to that customer only when ``customer_update`` says so, and Stripe refuses
        a session that would need it otherwise."""
        if not customer_id:
            return
        update = get_dict(params, "customer_update")
        tax_ids = get_bool(get_dict(params, "tax_id_collection"), "enabled")
        if tax_ids and get_str(update, "name") != "auto":
            raise invalid(
                "To enable tax ID collection for an existing customer, please set "
                "`customer_update[name]` to `auto`.",
                param="customer_update[name]",
            )
        automatic = get_bool(get_dict(params, "automatic_tax"), "enabled")
        if automatic and get_str(update, "address") != "auto":
            customer = self.get_customer(customer_id, param="customer")
            if not (customer.get("address") or {}).get("country"):
                raise invalid(
                    "Automatic tax calculation in Checkout requires a valid address on the "
                    "Customer. Add a valid address to the Customer or set "
                    "`customer_update[address]` to 'auto' to save the address entered in "
                    "Checkout.",
                    param="customer_update[address]",
                )

    def tax_rate_for(self, country: str) -> Obj:
        """The fixed rate of ``country`` (``fakes.stripe.tax``), made on first use."""
        rate = self.tax_rates.get(tax.rate_id(country))
        if rate is None:
            rate = self.tax_rates.add(tax.tax_rate(country, created=self.now()))
        return rate

    def get_tax_rate(self, rate_id: str) -> Obj:
        return self._get(self.tax_rates, "tax_rate", rate_id)

    def list_tax_rates(self, params: Obj, **paging: Any) -> tuple[list[Obj], bool]:
        return self.tax_rates.page(kind="tax_rate", **paging)

    def _tax_country(self, customer: Obj, *, param: str = "automatic_tax[enabled]") -> str:
        """Where Stripe Tax places the customer; a 400 if it cannot."""
        country = (customer.get("address") or {}).get("country")
        if not country:
            raise invalid(
                "The customer's location isn't recognized. Set a valid customer address "
                "(at least its country) to calculate tax.",
                param=param,
                code="customer_tax_location_invalid",
            )
        return country

    def _apply_tax(self, invoice: Obj, sub: Obj) -> int:
        """Stripe Tax on an invoice of a subscription with ``automatic_tax.enabled``.

        Each line is taxed on its amount less its discounts at the customer's country's rate
        (``fakes.stripe.tax``); ``total_taxes`` sums the lines. Returns the tax.
        """
        if not sub["automatic_tax"]["enabled"]:
            return 0
        customer = self.customers.objects[sub["customer"]]
        country = self._tax_country(customer)
        self.tax_rate_for(country)
        taxable_total = 0
        for line in invoice["lines"]["data"]:
            taxable = line["amount"] - sum(d["amount"] for d in line["discount_amounts"])
            line["taxes"] = [tax.line_tax(taxable, country)]
            taxable_total += taxable
        amount = sum(line["taxes"][0]["amount"] for line in invoice["lines"]["data"])
        invoice.update(
            automatic_tax={**_AUTOMATIC_TAX_ON, "provider": "stripe", "status": "complete"},
            customer_address=customer["address"],
            customer_tax_ids=self._customer_tax_ids(customer["id"]),
            total_taxes=[{**tax.line_tax(taxable_total, country), "amount": amount}],
        )
        return amount

    # -- payment methods -------------------------------------------------------------------

    def _new_payment_method(
        self, customer: Obj, *, last4: str = "4242", name: str | None = None
    ) -> Obj:
        pm = objects.payment_method(
            new_id("pm"),
            customer_id=None,
            created=self.now(),
            livemode=customer["livemode"],
            last4=last4,
            email=customer.get("email"),
            name=name or customer.get("name"),
        )
        self.payment_methods.add(pm)
        self._attach_payment_method(pm, customer)
        return pm

    def _attach_payment_method(self, pm: Obj, customer: Obj) -> None:
        pm["customer"] = customer["id"]
        self.pms_by_customer.setdefault(customer["id"], []).append(pm["id"])
        self._emit("payment_method.attached", pm)

    def get_payment_method(self, pm_id: str) -> Obj:
        return self._get(self.payment_methods, "pm", pm_id)

    def list_payment_methods(self, params: Obj, **paging: Any) -> tuple[list[Obj], bool]:
        customer_id = get_str(params, "customer")
        subset = None
        if customer_id:
            self.get_customer(customer_id, param="customer")
            subset = self.pms_by_customer.get(customer_id, [])
        return self.payment_methods.page(subset=subset, kind="payment method", **paging)

    # -- products and prices ---------------------------------------------------------------

    def create_product(self, params: Obj, *, livemode: bool = False) -> Obj:
        name = get_str(params, "name")
        if not name:
            raise missing("name")
        with self._operation():
            product_id = get_str(params, "id") or new_id("prod", 14)
            if product_id in self.products.objects:
                raise invalid(
                    f"Product already exists: {product_id}",
                    param="id",
                    code="resource_already_exists",
                )
            product = objects.product(
                product_id,
                name=name,
                created=self.now(),
                livemode=livemode,
                description=get_str(params, "description"),
                metadata=apply_metadata({}, params.get("metadata")),
                active=get_bool(params, "active", True) is not False,
            )
            self.products.add(product)
            self._emit("product.created", product)
            return product

    def update_product(self, product_id: str, params: Obj) -> Obj:
        with self._operation():
            product = self.get_product(product_id)
            before = snapshot(product)
            if "name" in params:
                product["name"] = get_str(params, "name")
            if "description" in params:
                product["description"] = get_str(params, "description") or None
            if "active" in params:
                product["active"] = bool(get_bool(params, "active"))
            if "default_price" in params:
                product["default_price"] = get_str(params, "default_price") or None
            product["metadata"] = apply_metadata(product["metadata"], params.get("metadata"))
            previous = changes(before, product)
            if previous:
                product["updated"] = self.now()
                self._emit("product.updated", product, previous)
            return product

    def create_price(self, params: Obj, *, livemode: bool = False) -> Obj:
        currency = get_str(params, "currency")
        if not currency:
            raise missing("currency")
        unit_amount = get_int(params, "unit_amount")
        if unit_amount is None:
            raise missing("unit_amount")
        with self._operation():
            product_id = get_str(params, "product")
            if product_id:
                self.get_product(product_id, param="product")
            else:
                product_data = get_dict(params, "product_data")
                if not product_data.get("name"):
                    raise missing("product")
                product_id = self.create_product(product_data, livemode=livemode)["id"]
            recurring = get_dict(params, "recurring")
            interval = recurring.get("interval")
            interval_count = get_int(recurring, "interval_count", 1)
            if recurring:
                _check_interval(interval, interval_count)
            price_id = get_str(params, "id")
            if price_id and price_id in self.prices.objects:
                raise invalid(
                    f"Price already exists: {price_id}", param="id", code="resource_already_exists"
                )
            price = self._build_price(
                product_id,
                {
                    "id": price_id,
                    "unit_amount": unit_amount,
                    "currency": currency.lower(),
                    "interval": interval,
                    "interval_count": interval_count,
                    "nickname": get_str(params, "nickname"),
                    "lookup_key": get_str(params, "lookup_key"),
                    "metadata": apply_metadata({}, params.get("metadata")),
                },
                self.now(),
                livemode=livemode,
            )
            self.prices.add(price)
            self._emit("price.created", price)
            return price

    def update_price(self, price_id: str, params: Obj) -> Obj:
        with self._operation():
            price = self.get_price(price_id, param="id")
            before = snapshot(price)
            if "active" in params:
                price["active"] = bool(get_bool(params, "active"))
            if "nickname" in params:
                price["nickname"] = get_str(params, "nickname") or None
            if "lookup_key" in params:
                price["lookup_key"] = get_str(params, "lookup_key") or None
            price["metadata"] = apply_metadata(price["metadata"], params.get("metadata"))
            previous = changes(before, price)
            if previous:
                self.plans[price_id] = objects.plan_from_price(price)
                self._emit("price.updated", price, previous)
            return price

    def list_prices(self, params: Obj, **paging: Any) -> tuple[list[Obj], bool]:
        product_id = get_str(params, "product")
        active = get_bool(params, "active")
        lookup_keys = set(get_list(params, "lookup_keys"))

        def match(obj: Obj) -> bool:
            return (
                (product_id is None or obj["product"] == product_id)
                and (active is None or obj["active"] == active)
                and (not lookup_keys or obj["lookup_key"] in lookup_keys)
            )

        return self.prices.page(match=match, kind="price", **paging)

    def list_products(self, params: Obj, **paging: Any) -> tuple[list[Obj], bool]:
        active = get_bool(params, "active")
        return self.products.page(
            match=lambda obj: active is None or obj["active"] == active, kind="product", **paging
        )

    # -- coupons and promotion codes ---------------------------------------------------------

    def create_coupon(self, params: Obj, *, livemode: bool = False) -> Obj:
        percent_off = params.get("percent_off")
        amount_off = get_int(params, "amount_off")
        if (percent_off in (None, "")) == (amount_off is None):
            raise invalid("You must specify exactly one of percent_off or amount_off.")
        percent = None
        if percent_off not in (None, ""):
            try:
                percent = float(percent_off)
            except (TypeError, ValueError):
                raise invalid(f"Invalid decimal: {percent_off}", param="percent_off") from None
            if not 0 < percent <= 100:
                raise invalid("percent_off must be between 0 and 100.", param="percent_off")
        currency = get_str(params, "currency")
        if amount_off is not None and not currency:
            raise missing("currency")
        duration = get_str(params, "duration") or "once"
        if duration not in ("once", "repeating", "forever"):
            raise invalid(
                "Invalid duration: must be one of forever, once, or repeating", param="duration"
            )
        months = get_int(params, "duration_in_months")
        if (duration == "repeating") != (months is not None):
            raise invalid(
                "duration_in_months is required with duration=repeating and only then.",
                param="duration_in_months",
            )
        with self._operation():
            coupon_id = get_str(params, "id") or objects.random_code()
            if coupon_id in self.coupons.objects:
                raise invalid(
                    f"Coupon already exists: {coupon_id}",
                    param="id",
                    code="resource_already_exists",
                )
            coupon = objects.coupon(
                coupon_id,
                created=self.now(),
                livemode=livemode,
                percent_off=percent,
                amount_off=amount_off,
                currency=currency.lower() if currency and amount_off is not None else None,
                duration=duration,
                duration_in_months=months,
                name=get_str(params, "name"),
                max_redemptions=get_int(params, "max_redemptions"),
                redeem_by=get_int(params, "redeem_by"),
                metadata=apply_metadata({}, params.get("metadata")),
            )
            self.coupons.add(coupon)
            self._emit("coupon.created", coupon)
            return coupon

    def get_coupon(self, coupon_id: str, *, param: str = "id") -> Obj:
        return self._get(self.coupons, "coupon", coupon_id, param=param)

    def update_coupon(self, coupon_id: str, params: Obj) -> Obj:
        with self._operation():
            fields = {"name": get_str(params, "name") or None} if "name" in params else {}
            return self._edit(self.get_coupon(coupon_id), params, fields)

    def _edit(self, obj: Obj, params: Obj, fields: Obj) -> Obj:
        """Set ``fields`` and merge ``metadata``; ``<object>.updated`` if anything changed."""
        before = snapshot(obj)
        obj.update(fields)
        obj["metadata"] = apply_metadata(obj["metadata"], params.get("metadata"))
        previous = changes(before, obj)
        if previous:
            self._emit(f"{obj['object']}.updated", obj, previous)
        return obj

    def list_coupons(self, params: Obj, **paging: Any) -> tuple[list[Obj], bool]:
        return self.coupons.page(match=created_filter(params), kind="coupon", **paging)

    def create_promotion_code(
        self, params: Obj, *, livemode: bool = False, promo_id: str | None = None
    ) -> Obj:
        """``promo_id``: a fixed id for a seeded code (Stripe's API always makes one up)."""
        if "coupon" in params:
            raise invalid(
                "Received unknown parameter: coupon. At this API version the coupon goes in "
                "promotion[coupon] (with promotion[type]=coupon).",
                param="coupon",
            )
        promotion = get_dict(params, "promotion")
        if not promotion:
            raise missing("promotion")
        if promotion.get("type") != "coupon":
            raise invalid("Invalid promotion[type]: must be coupon", param="promotion[type]")
        if not promotion.get("coupon"):
            raise missing("promotion[coupon]")
        with self._operation():
            coupon = self.get_coupon(str(promotion["coupon"]), param="promotion[coupon]")
            code = get_str(params, "code") or objects.random_code()
            if self.find_promotion_code(code) is not None:
                raise invalid(
                    f"An active promotion code with `code: {code}` already exists.",
                    param="code",
                    code="resource_already_exists",
                )
            customer_id = get_str(params, "customer")
            if customer_id:
                self.get_customer(customer_id, param="customer")
            promo = objects.promotion_code(
                promo_id or new_id("promo"),
                code=code,
                coupon_id=coupon["id"],
                created=self.now(),
                livemode=livemode,
                active=get_bool(params, "active", True) is not False,
                max_redemptions=get_int(params, "max_redemptions"),
                expires_at=get_int(params, "expires_at"),
                customer=customer_id,
                metadata=apply_metadata({}, params.get("metadata")),
            )
            self.promotion_codes.add(promo)
            self._emit("promotion_code.created", promo)
            return promo

    def seed_promotion(self, promotion: Obj) -> Obj:
        """A coupon and its promotion code under fixed ids (``catalogue.DEMO_PROMOTION``'s
        shape), as a seeded account has them; returns the promotion code."""
        code = dict(promotion["promotion_code"])
        with self._operation():
            coupon = self.create_coupon(promotion["coupon"])
            params = {**code, "promotion": {"type": "coupon", "coupon": coupon["id"]}}
            return self.create_promotion_code(params, promo_id=params.pop("id", None))

    def get_promotion_code(self, promo_id: str, *, param: str = "id") -> Obj:
        return self._get(self.promotion_codes, "promo", promo_id, param=param)

    def update_promotion_code(self, promo_id: str, params: Obj) -> Obj:
        with self._operation():
            fields = {"active": bool(get_bool(params, "active"))} if "active" in params else {}
            return self._edit(self.get_promotion_code(promo_id), params, fields)

    def list_promotion_codes(self, params: Obj, **paging: Any) -> tuple[list[Obj], bool]:
        code = get_str(params, "code")
        coupon_id = get_str(params, "coupon")
        customer_id = get_str(params, "customer")
        active = get_bool(params, "active")
        created = created_filter(params)

        def match(obj: Obj) -> bool:
            return (
                (code is None or obj["code"].lower() == code.lower())
                and (coupon_id is None or obj["promotion"]["coupon"] == coupon_id)
                and (customer_id is None or obj["customer"] == customer_id)
                and (active is None or obj["active"] == active)
                and created(obj)
            )

        return self.promotion_codes.page(match=match, kind="promotion_code", **paging)

    def find_promotion_code(self, code: str) -> Obj | None:
        """The active promotion code a customer types (codes are case-insensitive)."""
        wanted = code.strip().lower()
        for promo in self.promotion_codes.values():
            if promo["active"] and promo["code"].lower() == wanted:
                return promo
        return None

    def _redeemable(self, promo: Obj | None, coupon: Obj, customer_id: str | None) -> None:
        """Raise if the coupon (through ``promo`` if given) cannot be redeemed now."""
        now = self.now()
        if coupon["max_redemptions"] is not None and (
            coupon["times_redeemed"] >= coupon["max_redemptions"]
        ):
            coupon["valid"] = False
        if coupon["redeem_by"] is not None and coupon["redeem_by"] <= now:
            coupon["valid"] = False
        if not coupon["valid"]:
            raise invalid(f"Coupon {coupon['id']} is no longer valid.", param="discounts")
        if promo is None:
            return
        if (
            not promo["active"]
            or (promo["expires_at"] is not None and promo["expires_at"] <= now)
            or (
                promo["max_redemptions"] is not None
                and promo["times_redeemed"] >= promo["max_redemptions"]
            )
            or (promo["customer"] is not None and promo["customer"] != customer_id)
        ):
            raise invalid(
                f"This promotion code cannot be redeemed: {promo['code']}.", param="discounts"
            )

    def _read_discounts(
        self, raw: Any, customer_id: str | None, *, param: str = "discounts"
    ) -> list[tuple[Obj, Obj | None]]:
        """``discounts[i][coupon|promotion_code]`` → (coupon, promotion code or None) pairs."""
        found: list[tuple[Obj, Obj | None]] = []
        for index, entry in enumerate(get_list({param: raw}, param)):
            if not isinstance(entry, dict):
                raise invalid("Invalid hash", param=f"{param}[{index}]")
            promo = None
            if entry.get("promotion_code"):
                promo = self.get_promotion_code(
                    str(entry["promotion_code"]), param=f"{param}[{index}][promotion_code]"
                )
                coupon = self.coupons.objects[promo["promotion"]["coupon"]]
            elif entry.get("coupon"):
                coupon = self.get_coupon(str(entry["coupon"]), param=f"{param}[{index}][coupon]")
            else:
                raise missing(f"{param}[{index}][coupon]")
            self._redeemable(promo, coupon, customer_id)
            found.append((coupon, promo))
        return found

    def _redeem(self, sub: Obj, sources: list[tuple[Obj, Obj | None]]) -> list[str]:
        """Discounts on ``sub`` for each (coupon, promotion code); counts the redemptions."""
        ids = []
        now = self.now()
        for coupon, promo in sources:
            months = coupon["duration_in_months"]
            repeating = coupon["duration"] == "repeating"
            discount = objects.discount(
                new_id("di"),
                coupon_id=coupon["id"],
                promotion_code=promo["id"] if promo else None,
                customer=sub["customer"],
                subscription=sub["id"],
                start=now,
                end=add_interval(now, "month", months) if repeating else None,
            )
            self.discounts.add(discount)
            coupon["times_redeemed"] += 1
            if promo is not None:
                promo["times_redeemed"] += 1
            ids.append(discount["id"])
        return ids

    def _active_discounts(self, sub: Obj, at: int) -> list[Obj]:
        """The subscription's discounts that still apply to an invoice made at ``at``."""
        active = []
        for discount_id in sub.get("discounts") or []:
            discount = self.discounts.objects[discount_id]
            duration = self.coupons.objects[discount["source"]["coupon"]]["duration"]
            if duration == "once" and discount_id in self.discounts_used:
                continue
            if discount["end"] is not None and at >= discount["end"]:
                continue
            active.append(discount)
        return active

    def _apply_discounts(self, invoice: Obj, sub: Obj) -> int:
        """Take the subscription's discounts off the invoice's discountable lines.

        Each discount applies to what is left of the positive, discountable lines (subscription
        item lines; prorations are not discounted) and is shared among them in proportion to
        their amounts (``discount_amounts`` on each line, ``total_discount_amounts`` on the
        invoice). A ``once`` discount is spent by the first invoice it reduces; a
        ``repeating`` one applies until its ``end``. Returns the total taken off.
        """
        lines = [
            line for line in invoice["lines"]["data"] if line["discountable"] and line["amount"] > 0
        ]
        left = [line["amount"] for line in lines]
        totals = []
        discounts = self._active_discounts(sub, invoice["created"])
        for discount in discounts:
            coupon = self.coupons.objects[discount["source"]["coupon"]]
            off = objects.coupon_amount(coupon, sum(left))
            if off <= 0:
                continue
            for index, share in enumerate(objects.split_amount(off, left)):
                if share:
                    lines[index]["discount_amounts"].append(
                        {"amount": share, "discount": discount["id"]}
                    )
                    left[index] -= share
            totals.append({"amount": off, "discount": discount["id"]})
            if coupon["duration"] == "once":
                self.discounts_used.add(discount["id"])
        invoice["discounts"] = [discount["id"] for discount in discounts]
        invoice["total_discount_amounts"] = totals
        return sum(entry["amount"] for entry in totals)

    # -- checkout --------------------------------------------------------------------------

    def create_checkout_session(self, params: Obj, *, livemode: bool = False) -> Obj:
        mode = get_str(params, "mode")
        if not mode:
            raise missing("mode")
        if mode != "subscription":
            raise invalid(
                "The fake Stripe server supports Checkout in mode=subscription only.",
                param="mode",
            )
        with self._operation():
            customer_id = get_str(params, "customer")
            if customer_id:
                self.get_customer(customer_id, param="customer")
                if params.get("customer_email"):
                    raise invalid(
                        "You may only specify one of these parameters: customer, customer_email."
                    )
            lines = self._read_line_items(get_list(params, "line_items"), "line_items")
            currency = lines[0][0]["currency"]
            total = sum(price["unit_amount"] * quantity for price, quantity in lines)
            session_id = new_id("cs_live" if livemode else "cs_test", 58)
            subscription_data = get_dict(params, "subscription_data")
            trial_days, trial_end, trial_settings = self._read_trial(
                subscription_data, where="subscription_data"
            )
            collection = get_str(params, "payment_method_collection") or "always"
            if collection not in ("always", "if_required"):
                raise invalid(
                    "Invalid payment_method_collection: must be one of always or if_required",
                    param="payment_method_collection",
                )
            discounts = self._read_discounts(params.get("discounts"), customer_id)
            if discounts and get_bool(params, "allow_promotion_codes"):
                raise invalid(
                    "You may only specify one of these parameters: allow_promotion_codes, "
                    "discounts."
                )
            if len(discounts) > 1:
                raise invalid("Checkout accepts only one discount.", param="discounts")
            subtotal = total
            if trial_days or trial_end:
                subtotal = total = 0  # nothing is due today: the first invoice of a trial is $0
            for coupon, _ in discounts:
                total -= objects.coupon_amount(coupon, total)
            self._customer_update_check(params, customer_id)
            session = objects.checkout_session(
                session_id,
                mode=mode,
                customer_id=customer_id,
                customer_email=get_str(params, "customer_email"),
                client_reference_id=get_str(params, "client_reference_id"),
                success_url=get_str(params, "success_url"),
                cancel_url=get_str(params, "cancel_url"),
                metadata=apply_metadata({}, params.get("metadata")),
                custom_fields=self._read_custom_fields(get_list(params, "custom_fields")),
                amount_total=total,
                currency=currency,
                created=self.now(),
                livemode=livemode,
                url=f"{self.public_url}/checkout/{session_id}",
            )
            if get_bool(params, "allow_promotion_codes") is not None:
                session["allow_promotion_codes"] = get_bool(params, "allow_promotion_codes")
            if get_bool(get_dict(params, "automatic_tax"), "enabled"):
                session["automatic_tax"] = {
                    **_AUTOMATIC_TAX_ON,
                    "provider": "stripe",
                    "status": "requires_location_inputs",
                }
                del session["automatic_tax"]["disabled_reason"]
            session.update(
                billing_address_collection=get_str(params, "billing_address_collection"),
                tax_id_collection={
                    "enabled": bool(get_bool(get_dict(params, "tax_id_collection"), "enabled")),
                    "required": "never",
                },
                payment_method_collection=collection,
                amount_subtotal=subtotal,
                discounts=_session_discounts(discounts),
                total_details={**session["total_details"], "amount_discount": subtotal - total},
            )
            self.checkout_sessions.add(session)
            self.checkout_line_items[session_id] = [
                objects.checkout_line_item(
                    new_id("li", 24),
                    price_obj=price,
                    product_name=self.product_name(price["product"]),
                    quantity=quantity,
                )
                for price, quantity in lines
            ]
            # Not part of Stripe's session object: what the subscription is created with.
            self.session_subscription_data[session_id] = {
                "metadata": apply_metadata({}, subscription_data.get("metadata")),
                "description": subscription_data.get("description"),
                "trial_period_days": trial_days,
                "trial_end": trial_end,
                "trial_settings": trial_settings,
            }
            return session

    def _checkout_discounts(
        self, session: Obj, promotion_code: str | None
    ) -> list[tuple[Obj, Obj | None]]:
        """The session's discounts, or the code typed on the page ("This code is invalid.")."""
        sources: list[tuple[Obj, Obj | None]] = []
        for entry in session["discounts"]:
            promo = self.promotion_codes.get(entry["promotion_code"] or "")
            sources.append((self.coupons.objects[entry["coupon"]], promo))
        code = (promotion_code or "").strip()
        if code and session["allow_promotion_codes"]:
            promo = self.find_promotion_code(code)
            try:
                if promo is None:
                    raise invalid("This code is invalid.")
                coupon = self.coupons.objects[promo["promotion"]["coupon"]]
                self._redeemable(promo, coupon, session["customer"])
            except StripeError:
                raise invalid("This code is invalid.", param="promotion_code") from None
            sources.append((coupon, promo))
        for coupon, promo in sources:
            self._redeemable(promo, coupon, session["customer"])
        return sources

    def _read_line_items(self, raw: list[Any], param: str) -> list[tuple[Obj, int]]:
        if not raw:
            raise missing(param)
        lines: list[tuple[Obj, int]] = []
        seen: set[str] = set()
        for index, item in enumerate(raw):
            if not isinstance(item, dict):
                raise invalid("Invalid hash", param=f"{param}[{index}]")
            price_id = get_str(item, "price")
            if not price_id:
                raise missing(f"{param}[{index}][price]")
            price = self.get_price(price_id, param=f"{param}[{index}][price]")
            if not price["active"]:
                raise invalid(
                    f"The price specified is inactive: {price_id}",
                    param=f"{param}[{index}][price]",
                )
            if price["recurring"] is None:
                raise invalid(
                    "You must specify at least one recurring price in `subscription` mode.",
                    param=f"{param}[{index}][price]",
                )
            if price_id in seen:
                raise invalid(
                    f"Cannot add multiple line items with the same price: {price_id}",
                    param=f"{param}[{index}][price]",
                )
            seen.add(price_id)
            quantity = get_int(item, "quantity", 1)
            assert quantity is not None
            if quantity < 1:
                raise invalid(
                    "Quantity must be greater than or equal to 1.",
                    param=f"{param}[{index}][quantity]",
                )
            lines.append((price, quantity))
        currencies = {price["currency"] for price, _ in lines}
        if len(currencies) > 1:
            raise invalid("All prices must use the same currency.", param=param)
        return lines

    def _read_custom_fields(self, raw: list[Any]) -> list[Obj]:
        fields = []
        for index, field in enumerate(raw):
            if not isinstance(field, dict) or not field.get("key"):
                raise missing(f"custom_fields[{index}][key]")
            field_type = field.get("type", "text")
            if field_type != "text":
                raise invalid(
                    "The fake supports text custom fields only.",
                    param=f"custom_fields[{index}][type]",
                )
            label = field.get("label") or {}
            fields.append(
                {
                    "dropdown": None,
                    "key": field["key"],
                    "label": {"custom": label.get("custom", field["key"]), "type": "custom"},
                    "numeric": None,
                    "optional": field.get("optional") == "true",
                    "text": {
                        "default_value": None,
                        "maximum_length": None,
                        "minimum_length": None,
                        "value": None,
                    },
                    "type": "text",
                }
            )
        return fields

    def complete_checkout(
        self,
        session_id: str,
        *,
        email: str | None = None,
        name: str | None = None,
        card_number: str | None = "4242424242424242",
        custom_fields: dict[str, str] | None = None,
        promotion_code: str | None = None,
        address: Obj | None = None,
        tax_id: str | None = None,
    ) -> Obj:
        """What happens when the buyer presses "Pay" on the hosted page.

        ``address`` (at least ``country``) is required when the session collects it
        (``automatic_tax`` or ``billing_address_collection=required``) and becomes the
        customer's; ``tax_id`` (with ``tax_id_collection``) becomes a customer tax id.

        ``promotion_code``: the code typed on the page (``allow_promotion_codes``).

        An empty ``card_number`` means "no card" when the session lets the buyer skip it
        (``payment_method_collection=if_required`` and nothing due today, i.e. a trial);
        otherwise it is the default test card.
        """
        digits = "".join(ch for ch in card_number or "" if ch.isdigit())
        with self._operation():
            session = self.get_checkout_session(session_id)
            if session["status"] != "open":
                raise invalid(
                    f"This Checkout Session is {session['status']}.", code="session_expired"
                )
            extra = self.session_subscription_data.get(session_id, {})
            skip_card = (
                not digits
                and session["payment_method_collection"] == "if_required"
                and session["amount_total"] == 0
            )
            card = digits or "4242424242424242"
            values = custom_fields or {}
            for field in session["custom_fields"]:
                value = (values.get(field["key"]) or "").strip()
                if not value and not field["optional"]:
                    raise invalid(f"{field['label']['custom']} is required.", param=field["key"])
            discounts = self._checkout_discounts(session, promotion_code)
            billing_address = _address(address or {})
            asks_address = session["automatic_tax"]["enabled"] or (
                session["billing_address_collection"] == "required"
            )
            if asks_address and not billing_address["country"]:
                raise invalid("Your country is required.", param="address[country]")
            if not skip_card and card in DECLINED_CARDS:
                raise _card_declined()
            if session["customer"]:
                customer = self.get_customer(session["customer"])
            else:
                buyer_email = (email or session["customer_email"] or "").strip()
                if not buyer_email:
                    raise missing("email")
                customer = self.create_customer(
                    {"email": buyer_email, "name": name or None}, livemode=session["livemode"]
                )
            if asks_address:
                self.update_customer(customer["id"], {"address": billing_address})
            if session["tax_id_collection"]["enabled"] and (tax_id or "").strip():
                country = billing_address["country"] or ""
                self.create_tax_id(
                    customer["id"], {"type": tax.tax_id_type(country), "value": tax_id.strip()}
                )
            pm = None
            if not skip_card:
                pm = self._new_payment_method(customer, last4=card[-4:], name=name)
            lines = [
                (item["price"], item["quantity"])
                for item in self.checkout_line_items.get(session_id, [])
            ]
            sub, invoice = self._start_subscription(
                customer,
                lines,
                metadata=extra.get("metadata", {}),
                description=extra.get("description"),
                payment_method=pm["id"] if pm else None,
                livemode=session["livemode"],
                trial_end=self._trial_end(extra.get("trial_period_days"), extra.get("trial_end")),
                trial_settings=extra.get("trial_settings"),
                discounts=discounts,
                automatic_tax=session["automatic_tax"]["enabled"],
            )
            if session["automatic_tax"]["enabled"]:
                session["automatic_tax"] = {**session["automatic_tax"], "status": "complete"}
            for field in session["custom_fields"]:
                value = (values.get(field["key"]) or "").strip() or None
                field["text"] = {**field["text"], "value": value}
            session.update(
                status="complete",
                payment_status="paid" if invoice["amount_paid"] > 0 else "no_payment_required",
                amount_subtotal=invoice["subtotal"],
                amount_total=invoice["total"],
                discounts=_session_discounts(discounts),
                total_details={
                    **session["total_details"],
                    "amount_discount": sum(d["amount"] for d in invoice["total_discount_amounts"]),
                    "amount_tax": sum(t["amount"] for t in invoice["total_taxes"]),
                },
                customer=customer["id"],
                subscription=sub["id"],
                invoice=invoice["id"],
                url=None,
                customer_details={
                    "address": customer["address"],
                    "business_name": None,
                    "email": customer.get("email"),
                    "individual_name": None,
                    "name": customer.get("name"),
                    "phone": None,
                    "tax_exempt": "none",
                    "tax_ids": self._customer_tax_ids(customer["id"]),
                },
            )
            self._emit("checkout.session.completed", session)
            return session

    def checkout_trial_days(self, session_id: str) -> int | None:
        """The free days a session's subscription starts with (None: no trial)."""
        extra = self.session_subscription_data.get(session_id, {})
        if extra.get("trial_period_days"):
            return int(extra["trial_period_days"])
        if extra.get("trial_end"):
            return max(1, -(-(extra["trial_end"] - self.now()) // 86400))
        return None

    def expire_checkout_session(self, session_id: str) -> Obj:
        with self._operation():
            session = self.get_checkout_session(session_id)
            if session["status"] != "open":
                raise invalid(
                    f"Only Checkout Sessions with a status of open can be expired; this one is "
                    f"{session['status']}."
                )
            session.update(status="expired", url=None)
            self._emit("checkout.session.expired", session)
            return session

    def list_checkout_sessions(self, params: Obj, **paging: Any) -> tuple[list[Obj], bool]:
        customer_id = get_str(params, "customer")
        subscription_id = get_str(params, "subscription")
        status = get_str(params, "status")

        def match(obj: Obj) -> bool:
            return (
                (customer_id is None or obj["customer"] == customer_id)
                and (subscription_id is None or obj["subscription"] == subscription_id)
                and (status is None or obj["status"] == status)
            )

        return self.checkout_sessions.page(match=match, kind="checkout.session", **paging)

    # -- subscriptions: creation and invoices ----------------------------------------------

    def _start_subscription(
        self,
        customer: Obj,
        lines: list[tuple[Obj, int]],
        *,
        metadata: dict[str, str],
        description: str | None,
        payment_method: str | None,
        livemode: bool,
        declined: bool = False,
        trial_end: int | None = None,
        trial_settings: Obj | None = None,
        discounts: Sequence[tuple[Obj, Obj | None]] = (),
        automatic_tax: bool = False,
    ) -> tuple[Obj, Obj]:
        """An active subscription whose first invoice is paid (events in Stripe's order).

        ``declined``: the first payment fails, leaving the subscription ``incomplete`` with
        its invoice open (Stripe's default ``payment_behavior=allow_incomplete``).

        ``trial_end``: the subscription starts ``trialing``; its items' first period is the
        trial and the first invoice is a paid $0 ``subscription_create`` invoice.

        ``discounts``: (coupon, promotion code) pairs redeemed onto the subscription.
        """
        created = self.now()
        sub_id = new_id("sub")
        items = [
            self._new_item(sub_id, price, quantity, created, created, trial_end)
            for price, quantity in lines
        ]
        sub = objects.subscription(
            sub_id,
            customer_id=customer["id"],
            items=items,
            created=created,
            livemode=livemode,
            currency=lines[0][0]["currency"],
            metadata=metadata,
            default_payment_method=payment_method,
            description=description,
            status="incomplete" if declined else "active",
        )
        if trial_end is not None:
            sub.update(
                status="trialing",
                trial_start=created,
                trial_end=trial_end,
                billing_cycle_anchor=trial_end,
            )
        if trial_settings:
            sub["trial_settings"] = trial_settings
        if automatic_tax:
            sub["automatic_tax"] = _AUTOMATIC_TAX_ON
        self.subscriptions.add(sub)
        for item in items:
            self.subscription_items.add(item)
        self.subs_by_customer.setdefault(customer["id"], []).append(sub_id)
        sub["discounts"] = self._redeem(sub, list(discounts))
        invoice = self._build_cycle_invoice(
            sub,
            billing_reason="subscription_create",
            period_start=created,
            period_end=created,
            trial=trial_end is not None,
        )
        sub["latest_invoice"] = invoice["id"]
        self._emit("customer.subscription.created", sub)
        for discount_id in sub["discounts"]:
            self._emit("customer.discount.created", self.discounts.objects[discount_id])
        self._finalize_and_collect(invoice, succeed=not declined)
        return sub, invoice

    def _new_item(
        self,
        sub_id: str,
        price: Obj,
        quantity: int,
        created: int,
        period_start: int,
        period_end: int | None = None,
    ) -> Obj:
        """An item whose period is one price interval from ``period_start`` (or ``period_end``)."""
        if period_end is None:
            recurring = price["recurring"]
            period_end = add_interval(
                period_start, recurring["interval"], recurring["interval_count"]
            )
        return objects.subscription_item(
            new_id("si", 14),
            subscription_id=sub_id,
            price_obj=price,
            plan_obj=self.plans.get(price["id"]) or objects.plan_from_price(price),
            quantity=quantity,
            created=created,
            period_start=period_start,
            period_end=period_end,
        )

    def _line_description(self, price: Obj, quantity: int) -> str:
        return (
            f"{quantity} × {self.product_name(price['product'])} "
            f"(at {format_amount(price['unit_amount'], price['currency'])} / "
            f"{describe_interval(price['recurring'] or {'interval': 'month'})})"
        )

    def _build_cycle_invoice(
        self,
        sub: Obj,
        *,
        billing_reason: str,
        period_start: int,
        period_end: int,
        trial: bool = False,
    ) -> Obj:
        """A draft invoice for the items' current period plus pending invoice items.

        ``trial``: the period is a free trial, so each item's line is $0 ("Trial period for").
        """
        invoice_id = new_id("in")
        lines = [
            objects.invoice_line(
                new_id("il"),
                invoice_id=invoice_id,
                subscription_id=sub["id"],
                subscription_item_id=item["id"],
                price_obj=item["price"],
                quantity=item["quantity"],
                amount=0 if trial else item["price"]["unit_amount"] * item["quantity"],
                period_start=item["current_period_start"],
                period_end=item["current_period_end"],
                livemode=sub["livemode"],
                description=(
                    f"Trial period for {self.product_name(item['price']['product'])}"
                    if trial
                    else self._line_description(item["price"], item["quantity"])
                ),
            )
            for item in sub["items"]["data"]
        ]
        return self._build_invoice(
            sub,
            invoice_id,
            lines + self._claim_pending_items(sub, invoice_id),
            billing_reason=billing_reason,
            period_start=period_start,
            period_end=period_end,
        )

    def _claim_pending_items(self, sub: Obj, invoice_id: str) -> list[Obj]:
        """Pending (not yet invoiced) proration items of ``sub`` become lines of the invoice."""
        lines = []
        for item in self.invoice_items.values():
            parent = item["parent"]["subscription_details"]
            if item["invoice"] is None and parent["subscription"] == sub["id"]:
                item["invoice"] = invoice_id
                lines.append(self._line_from_invoice_item(item, invoice_id, sub["id"]))
        return lines

    def _line_from_invoice_item(self, item: Obj, invoice_id: str, sub_id: str) -> Obj:
        return objects.invoice_line(
            new_id("il"),
            invoice_id=invoice_id,
            subscription_id=sub_id,
            invoice_item_id=item["id"],
            price_obj=self.prices.objects.get(item["pricing"]["price_details"]["price"])
            or {
                "id": item["pricing"]["price_details"]["price"],
                "product": item["pricing"]["price_details"]["product"],
                "currency": item["currency"],
                "unit_amount_decimal": item["pricing"]["unit_amount_decimal"],
            },
            quantity=item["quantity"],
            amount=item["amount"],
            period_start=item["period"]["start"],
            period_end=item["period"]["end"],
            livemode=item["livemode"],
            description=item["description"],
            proration=item["proration"],
        )

    def _build_invoice(
        self,
        sub: Obj,
        invoice_id: str,
        lines: list[Obj],
        *,
        billing_reason: str,
        period_start: int,
        period_end: int,
    ) -> Obj:
        customer = self.customers.objects[sub["customer"]]
        invoice = objects.invoice(
            invoice_id,
            customer=customer,
            subscription_id=sub["id"],
            subscription_metadata=sub["metadata"],
            lines=lines,
            billing_reason=billing_reason,
            currency=sub["currency"],
            created=self.now(),
            period_start=period_start,
            period_end=period_end,
            livemode=sub["livemode"],
            public_url=self.public_url,
        )
        invoice["default_payment_method"] = None
        self._price_invoice(invoice, sub)
        self.invoices.add(invoice)
        self.invoices_by_customer.setdefault(customer["id"], []).append(invoice_id)
        self.invoices_by_subscription.setdefault(sub["id"], []).append(invoice_id)
        return invoice

    def _price_invoice(self, invoice: Obj, sub: Obj) -> None:
        """Subtotal, discounts, tax and total of a draft invoice (lines are pre-discount).

        ``subtotal`` = the lines; ``total_excluding_tax`` = subtotal − discounts;
        ``total`` = that + tax (exclusive); ``amount_due`` = the total, or 0 for a credit.
        """
        subtotal = sum(line["amount"] for line in invoice["lines"]["data"])
        excluding_tax = subtotal - self._apply_discounts(invoice, sub)
        total = excluding_tax + self._apply_tax(invoice, sub)
        invoice.update(
            subtotal=subtotal,
            subtotal_excluding_tax=subtotal,
            total_excluding_tax=excluding_tax,
            total=total,
            amount_due=max(total, 0),
            amount_remaining=max(total, 0),
        )

    def decline_payments(self, count: int = 1) -> None:
        """Make the next ``count`` card charges made through the API fail (card_declined).

        Affects ``POST /v1/subscriptions``, ``always_invoice`` updates and
        ``POST /v1/invoices/{id}/pay``; Checkout (use a declining card number) and the
        lifecycle controls (``fail_renewal``) have their own ways to fail.
        """
        with self.lock:
            self.declines = max(0, int(count))

    def _take_decline(self) -> bool:
        if self.declines > 0:
            self.declines -= 1
            return True
        return False

    def _finalize_and_collect(self, invoice: Obj, *, succeed: bool) -> None:
        """invoice.created → invoice.finalized → paid (or payment_failed), like Stripe."""
        self._emit("invoice.created", invoice)
        customer = self.customers.objects[invoice["customer"]]
        now = self.now()
        # A credit (negative total, e.g. fewer seats) goes to the customer's balance.
        if invoice["total"] < 0:
            customer["balance"] += invoice["total"]
        invoice.update(
            status="open",
            number=f"{customer['invoice_prefix']}-{customer['next_invoice_sequence']:04d}",
            effective_at=now,
            status_transitions={**invoice["status_transitions"], "finalized_at": now},
        )
        customer["next_invoice_sequence"] += 1
        self._emit("invoice.finalized", invoice)
        if succeed or invoice["amount_due"] == 0:
            self._pay_invoice(invoice)
        else:
            self._fail_invoice(invoice)

    def _pay_invoice(self, invoice: Obj) -> None:
        now = self.now()
        invoice.update(
            status="paid",
            amount_paid=invoice["amount_due"],
            amount_remaining=0,
            attempted=True,
            attempt_count=invoice["attempt_count"] + (1 if invoice["amount_due"] else 0),
            next_payment_attempt=None,
            ending_balance=0,
            webhooks_delivered_at=invoice["webhooks_delivered_at"] or now,
            status_transitions={**invoice["status_transitions"], "paid_at": now},
        )
        if invoice["amount_paid"] > 0:
            self._charge_for(invoice)
        self._emit("invoice.paid", invoice)
        self._emit("invoice.payment_succeeded", invoice)

    def _charge_for(self, invoice: Obj) -> Obj:
        """The card charge that paid ``invoice``, and the invoice payment linking the two."""
        now = self.now()
        customer = self.customers.objects[invoice["customer"]]
        intent = new_id("pi")
        charge = objects.charge(
            new_id("ch"),
            amount=invoice["amount_paid"],
            currency=invoice["currency"],
            customer=invoice["customer"],
            payment_intent=intent,
            payment_method=(customer.get("invoice_settings") or {}).get("default_payment_method"),
            created=now,
            livemode=bool(invoice.get("livemode")),
        )
        self.charges.add(charge)
        self.invoice_payments.add(
            objects.invoice_payment(
                new_id("inpay"),
                invoice_id=invoice["id"],
                amount=invoice["amount_paid"],
                currency=invoice["currency"],
                payment_intent=intent,
                created=now,
                livemode=bool(invoice.get("livemode")),
            )
        )
        self.charge_by_invoice[invoice["id"]] = charge["id"]
        return charge

    def _fail_invoice(self, invoice: Obj) -> None:
        now = self.now()
        invoice.update(
            attempted=True,
            attempt_count=invoice["attempt_count"] + 1,
            next_payment_attempt=now + 3 * 86400,
            webhooks_delivered_at=invoice["webhooks_delivered_at"] or now,
        )
        self._emit("invoice.payment_failed", invoice)

    def create_subscription(self, params: Obj, *, livemode: bool = False) -> Obj:
        """``POST /v1/subscriptions``: charges the card on file (one is made up if needed)."""
        customer_id = get_str(params, "customer")
        if not customer_id:
            raise missing("customer")
        with self._operation():
            customer = self.get_customer(customer_id, param="customer")
            lines = self._read_line_items(get_list(params, "items"), "items")
            days, end, trial_settings = self._read_trial(params)
            trial_end = self._trial_end(days, end)
            discounts = self._read_discounts(params.get("discounts"), customer_id)
            automatic_tax = bool(get_bool(get_dict(params, "automatic_tax"), "enabled"))
            if automatic_tax:
                self._tax_country(customer)
            pm_id = get_str(params, "default_payment_method")
            if pm_id:
                self._get(self.payment_methods, "pm", pm_id, param="default_payment_method")
            else:
                pm_id = customer["invoice_settings"]["default_payment_method"]
                if pm_id is None:
                    owned = self.pms_by_customer.get(customer_id)
                    if owned:
                        pm_id = owned[-1]
                    elif trial_end is None:  # a trial needs no card up front
                        pm_id = self._new_payment_method(customer)["id"]
            declined = trial_end is None and self._take_decline()
            if declined and get_str(params, "payment_behavior") == "error_if_incomplete":
                raise _card_declined()
            sub, _ = self._start_subscription(
                customer,
                lines,
                metadata=apply_metadata({}, params.get("metadata")),
                description=get_str(params, "description"),
                payment_method=pm_id,
                livemode=livemode,
                declined=declined,
                trial_end=trial_end,
                trial_settings=trial_settings,
                discounts=discounts,
                automatic_tax=automatic_tax,
            )
            return sub

    def _read_trial(
        self, params: Obj, *, where: str | None = None
    ) -> tuple[int | None, int | None, Obj]:
        """``trial_period_days`` or ``trial_end`` (``"now"``: no trial) and ``trial_settings``.

        Returns (days, end timestamp, trial_settings); Checkout (``where`` is
        ``subscription_data``) wants a ``trial_end`` at least 48 hours away, as Stripe does.
        """

        def name(field: str) -> str:
            return f"{where}[{field}]" if where else field

        days = get_int(params, "trial_period_days")
        raw_end = params.get("trial_end")
        if days is not None and raw_end not in (None, ""):
            raise invalid(
                "You may only specify one of these parameters: "
                f"{name('trial_end')}, {name('trial_period_days')}."
            )
        end = None
        if days is not None and not 1 <= days <= 730:
            raise invalid(
                "The trial period must be between 1 and 730 days.",
                param=name("trial_period_days"),
            )
        if raw_end not in (None, "", "now"):
            end = get_int(params, "trial_end")
            assert end is not None
            earliest = self.now() + (48 * 3600 if where else 0)
            if end <= earliest:
                raise invalid(
                    "trial_end must be in the future"
                    + (" and at least 48 hours from now." if where else "."),
                    param=name("trial_end"),
                )
        end_behavior = get_dict(get_dict(params, "trial_settings"), "end_behavior")
        missing_pm = end_behavior.get("missing_payment_method") or "create_invoice"
        if missing_pm not in ("cancel", "pause", "create_invoice"):
            raise invalid(
                "Invalid missing_payment_method: must be one of cancel, pause, or create_invoice",
                param=name("trial_settings[end_behavior][missing_payment_method]"),
            )
        return days, end, {"end_behavior": {"missing_payment_method": missing_pm}}

    def _trial_end(self, days: int | None, end: int | None) -> int | None:
        return self.now() + days * 86400 if days else end

    # -- subscriptions: reads ------------------------------------------------------------

    def list_subscriptions(self, params: Obj, **paging: Any) -> tuple[list[Obj], bool]:
        status = get_str(params, "status")
        if status and status not in SUBSCRIPTION_STATUSES | {"all", "ended"}:
            raise invalid(
                f"Invalid status: must be one of {sorted(SUBSCRIPTION_STATUSES)}, all or ended",
                param="status",
            )
        customer_id = get_str(params, "customer")
        price_id = get_str(params, "price")
        created = created_filter(params)
        subset = None
        if customer_id:
            subset = self.subs_by_customer.get(customer_id, [])

        def status_ok(obj: Obj) -> bool:
            if status == "all":
                return True
            if status == "ended":
                return obj["status"] in ("canceled", "incomplete_expired")
            if status is None:  # Stripe's default hides canceled subscriptions
                return obj["status"] != "canceled"
            return obj["status"] == status

        def match(obj: Obj) -> bool:
            if not status_ok(obj) or not created(obj):
                return False
            return price_id is None or any(
                item["price"]["id"] == price_id for item in obj["items"]["data"]
            )

        plain = status == "all" and price_id is None and created is _any
        return self.subscriptions.page(
            match=None if plain else match, subset=subset, kind="subscription", **paging
        )

    def get_subscription_item(self, item_id: str) -> Obj:
        return self._get(self.subscription_items, "si", item_id)

    # -- subscriptions: changes ------------------------------------------------------------

    def update_subscription(self, sub_id: str, params: Obj) -> Obj:
        """``POST /v1/subscriptions/{id}``: metadata, cancellation, discounts and plan changes.

        Plan changes (``items[]``: a new ``price`` and/or ``quantity`` for an item, a new item,
        ``deleted``) are prorated by ``proration_behavior``: ``create_prorations`` (default:
        pending invoice items the next invoice bills), ``always_invoice`` (an immediate
        ``subscription_update`` invoice of them) or ``none``. With ``f`` = the unused share of
        the current period, ``(period_end − now) / (period_end − period_start)``:

        * a quantity change of one price: one item of ``round(unit × (new − old qty) × f)``;
        * a new price of the same interval: ``−round(old unit × qty × f)`` ("Unused time on")
          and ``+round(new unit × qty × f)`` ("Remaining time on"), the period unchanged;
        * an added item ``+round(unit × qty × f)``, a removed one ``−round(unit × qty × f)``.

        A new price of another interval (monthly → yearly), or ``billing_cycle_anchor=now``,
        resets the billing cycle as Stripe does: every item's period starts now, the
        subscription's ``billing_cycle_anchor`` is now, and an immediate invoice
        (``subscription_update``) bills each item's full new period less the unused time of
        the old items (``−round(old unit × qty × f)``, unless ``proration_behavior=none``)
        plus any pending prorations. Every pending item is billed once: invoices claim them.
        The next renewal bills the new period only. During a trial there is nothing to
        prorate: the items change and the trial goes on.
        """
        with self._operation():
            sub = self.get_subscription(sub_id)
            before = snapshot(sub)
            behaviour = get_str(params, "proration_behavior") or "create_prorations"
            if behaviour not in ("create_prorations", "none", "always_invoice"):
                raise invalid("Invalid proration_behavior", param="proration_behavior")
            anchor = get_str(params, "billing_cycle_anchor") or "unchanged"
            if anchor not in ("now", "unchanged"):
                raise invalid(
                    "Invalid billing_cycle_anchor: must be one of now or unchanged",
                    param="billing_cycle_anchor",
                )
            raw_items = get_list(params, "items")
            trialing = sub["status"] == "trialing"
            if trialing:
                behaviour = "none"
            reset = not trialing and (
                anchor == "now" or (bool(raw_items) and self._changes_cycle(sub, raw_items))
            )
            payment_behavior = get_str(params, "payment_behavior") or "allow_incomplete"
            ended = sub["status"] in ("canceled", "incomplete_expired")
            if ended and (raw_items or "cancel_at_period_end" in params):
                raise invalid(
                    "A canceled subscription can only update its cancellation_details and metadata."
                )
            sub["metadata"] = apply_metadata(sub["metadata"], params.get("metadata"))
            if "description" in params:
                sub["description"] = get_str(params, "description") or None
            if "default_payment_method" in params:
                pm_id = get_str(params, "default_payment_method") or None
                if pm_id:
                    self._get(self.payment_methods, "pm", pm_id, param="default_payment_method")
                sub["default_payment_method"] = pm_id
            if "cancel_at_period_end" in params:
                self._set_cancel_at_period_end(sub, bool(get_bool(params, "cancel_at_period_end")))
            new_discounts: list[str] = []
            if "discounts" in params:  # replaces them; ``discounts=`` removes them all
                sources = self._read_discounts(params.get("discounts"), sub["customer"])
                new_discounts = self._redeem(sub, sources)
                sub["discounts"] = new_discounts
            details = get_dict(params, "cancellation_details")
            if details:
                sub["cancellation_details"] = {
                    **sub["cancellation_details"],
                    **{k: v or None for k, v in details.items() if k in ("comment", "feedback")},
                }
            # A change that would charge a declining card with error_if_incomplete is refused
            # before anything changes (Stripe answers 402 and leaves the subscription alone).
            charging = (behaviour == "always_invoice" and bool(raw_items)) or reset
            if charging and payment_behavior == "error_if_incomplete" and self.declines > 0:
                self._take_decline()
                raise _card_declined()
            prorations = self._apply_item_changes(sub, raw_items) if raw_items else []
            previous = changes(before, sub)
            proration_items = []
            if reset:
                proration_items = self._reset_cycle(sub, before, behaviour)
            elif behaviour != "none" and prorations:
                proration_items = [self._new_proration_item(sub, *p) for p in prorations]
            invoice = None
            declined = False
            if reset:
                invoice = self._build_cycle_invoice(
                    sub,
                    billing_reason="subscription_update",
                    period_start=self.now(),
                    period_end=self.now(),
                )
            elif behaviour == "always_invoice" and proration_items:
                invoice_id = new_id("in")
                invoice = self._build_invoice(
                    sub,
                    invoice_id,
                    self._claim_pending_items(sub, invoice_id),
                    billing_reason="subscription_update",
                    period_start=self.now(),
                    period_end=self.now(),
                )
            if invoice is not None:
                sub["latest_invoice"] = invoice["id"]
                declined = invoice["total"] > 0 and self._take_decline()
                if declined and sub["status"] in ("active", "trialing"):
                    sub["status"] = "past_due"  # allow_incomplete: the change stays, unpaid
                previous = changes(before, sub)
            if previous:
                self._emit("customer.subscription.updated", sub, previous)
            for discount_id in new_discounts:
                self._emit("customer.discount.created", self.discounts.objects[discount_id])
            for item in proration_items:
                self._emit("invoiceitem.created", item)
            if invoice is not None:
                self._finalize_and_collect(invoice, succeed=not declined)
            return sub

    def _changes_cycle(self, sub: Obj, raw_items: list[Any]) -> bool:
        """Whether ``items[]`` bring in a price billed at another interval than the items'."""
        current = {_cycle(item["price"]) for item in sub["items"]["data"]}
        for raw in raw_items:
            price = self.prices.get(raw.get("price") or "") if isinstance(raw, dict) else None
            if price is not None and price["recurring"] and _cycle(price) not in current:
                return True
        return False

    def _reset_cycle(self, sub: Obj, before: Obj, behaviour: str) -> list[Obj]:
        """Start every item's period now; credit the old items' unused time (see above)."""
        now = self.now()
        credits = []
        if behaviour != "none":
            credits = [
                self._new_proration_item(
                    sub,
                    old["price"],
                    None,
                    old["quantity"],
                    0,
                    period=(old["current_period_start"], old["current_period_end"]),
                    si_id=old["id"],
                )
                for old in before["items"]["data"]
            ]
        items = []
        for item in sub["items"]["data"]:
            recurring = item["price"]["recurring"]
            item["current_period_start"] = now
            item["current_period_end"] = add_interval(
                now, recurring["interval"], recurring["interval_count"]
            )
            items.append(item)
        sub["items"] = objects.items_list(sub["id"], items)
        sub["billing_cycle_anchor"] = now
        return credits

    def _set_cancel_at_period_end(self, sub: Obj, value: bool) -> None:
        if value == sub["cancel_at_period_end"]:
            return
        if value:
            sub.update(
                cancel_at_period_end=True,
                cancel_at=self.period_end(sub),
                canceled_at=self.now(),
                cancellation_details={
                    **sub["cancellation_details"],
                    "reason": "cancellation_requested",
                },
            )
        else:
            sub.update(
                cancel_at_period_end=False,
                cancel_at=None,
                canceled_at=None,
                cancellation_details=objects._CANCELLATION_NONE,
            )

    def period_end(self, sub: Obj) -> int:
        return max(item["current_period_end"] for item in sub["items"]["data"])

    def period_start(self, sub: Obj) -> int:
        return min(item["current_period_start"] for item in sub["items"]["data"])

    def _apply_item_changes(
        self, sub: Obj, raw_items: list[Any]
    ) -> list[tuple[Obj | None, Obj | None, int, int]]:
        """Apply ``items[]``; returns what to prorate: (old price, new price, old qty, new qty)."""
        items: list[Obj] = list(sub["items"]["data"])
        by_id = {item["id"]: item for item in items}
        prorations: list[tuple[Obj | None, Obj | None, int, int]] = []
        now = self.now()
        for index, raw in enumerate(raw_items):
            param = f"items[{index}]"
            if not isinstance(raw, dict):
                raise invalid("Invalid hash", param=param)
            item_id = get_str(raw, "id")
            price_id = get_str(raw, "price")
            quantity = get_int(raw, "quantity")
            if quantity is not None and quantity < 0:
                raise invalid("Invalid quantity: must be at least 0", param=f"{param}[quantity]")
            if item_id:
                item = by_id.get(item_id)
                if item is None:
                    raise invalid(
                        f"Subscription item {item_id} does not belong to this subscription.",
                        param=f"{param}[id]",
                    )
                old_price, old_quantity = item["price"], item["quantity"]
                if get_bool(raw, "deleted"):
                    items.remove(item)
                    del by_id[item_id]
                    self.subscription_items.objects.pop(item_id, None)
                    prorations.append((old_price, None, old_quantity, 0))
                    continue
                new_price = (
                    self.get_price(price_id, param=f"{param}[price]") if price_id else old_price
                )
                new_quantity = old_quantity if quantity is None else quantity
                if new_price["id"] != old_price["id"]:
                    item["price"] = new_price
                    item["plan"] = self.plans.get(new_price["id"]) or objects.plan_from_price(
                        new_price
                    )
                item["quantity"] = new_quantity
                item["metadata"] = apply_metadata(item["metadata"], raw.get("metadata"))
                if new_price["id"] != old_price["id"]:
                    # A new price: unused time on the old one back, remaining time on the new.
                    prorations.append((old_price, None, old_quantity, 0))
                    prorations.append((None, new_price, 0, new_quantity))
                elif new_quantity != old_quantity:
                    prorations.append((old_price, new_price, old_quantity, new_quantity))
                continue
            if not price_id:
                raise missing(f"{param}[price]")
            price = self.get_price(price_id, param=f"{param}[price]")
            if any(existing["price"]["id"] == price_id for existing in items):
                raise invalid(
                    f"Cannot add multiple subscription items with the same price: {price_id}",
                    param=f"{param}[price]",
                )
            new_quantity = 1 if quantity is None else quantity
            start = self.period_start(sub) if items else now
            item = self._new_item(sub["id"], price, new_quantity, now, start)
            if items:
                item["current_period_end"] = self.period_end(sub)  # items share one cycle
            item["metadata"] = apply_metadata({}, raw.get("metadata"))
            items.append(item)
            by_id[item["id"]] = item
            self.subscription_items.add(item)
            prorations.append((None, price, 0, new_quantity))
        if not items:
            raise invalid("A subscription must have at least one active item.", param="items")
        sub["items"] = objects.items_list(sub["id"], items)
        return prorations

    def _new_proration_item(
        self,
        sub: Obj,
        old_price: Obj | None,
        new_price: Obj | None,
        old_qty: int,
        new_qty: int,
        *,
        period: tuple[int, int] | None = None,
        si_id: str | None = None,
    ) -> Obj:
        """One invoice item with the net proration of a change, for the rest of the period.

        ``period`` is the item's (start, end), by default the subscription's current one;
        ``si_id`` names the subscription item, by default the one with the item's price.
        """
        now = self.now()
        start, end = period or (self.period_start(sub), self.period_end(sub))
        remaining = 0.0 if end <= start else min(max((end - now) / (end - start), 0.0), 1.0)
        old_amount = old_price["unit_amount"] * old_qty if old_price else 0
        new_amount = new_price["unit_amount"] * new_qty if new_price else 0
        amount = round((new_amount - old_amount) * remaining)
        price = new_price or old_price
        assert price is not None
        # A quantity change of one price is prorated on the difference; a price change on
        # the new (or, when removed, the old) quantity.
        if old_price and new_price and old_price["id"] == new_price["id"]:
            quantity = abs(new_qty - old_qty)
        else:
            quantity = new_qty or old_qty
        name = self.product_name(price["product"])
        when = time.strftime("%d %b %Y", time.gmtime(now))
        if amount >= 0:
            description = f"Remaining time on {new_qty} × {name} after {when}"
        else:
            description = f"Unused time on {old_qty} × {name} after {when}"
        si_id = si_id or next(
            (item["id"] for item in sub["items"]["data"] if item["price"]["id"] == price["id"]),
            None,
        )
        item = objects.invoice_item(
            new_id("ii"),
            customer_id=sub["customer"],
            subscription_id=sub["id"],
            subscription_item_id=si_id,
            price_obj=price,
            quantity=quantity,
            amount=amount,
            created=now,
            period_start=now,
            period_end=end,
            livemode=sub["livemode"],
            description=description,
            proration=True,
        )
        self.invoice_items.add(item)
        return item

    def cancel_subscription(self, sub_id: str, params: Obj | None = None) -> Obj:
        """``DELETE /v1/subscriptions/{id}``: ends it now."""
        params = params or {}
        with self._operation():
            sub = self.get_subscription(sub_id)
            if sub["status"] in ("canceled", "incomplete_expired"):
                raise no_such("sub", sub_id)
            details = get_dict(params, "cancellation_details")
            self._end_subscription(
                sub,
                reason="cancellation_requested",
                comment=details.get("comment") or None,
                feedback=details.get("feedback") or None,
            )
            return sub

    def _end_subscription(
        self,
        sub: Obj,
        *,
        reason: str,
        comment: str | None = None,
        feedback: str | None = None,
        at: int | None = None,
    ) -> None:
        now = self.now()
        sub.update(
            status="canceled",
            canceled_at=sub["canceled_at"] or now,
            ended_at=at or now,
            cancel_at_period_end=False if at is None else sub["cancel_at_period_end"],
            cancellation_details={"comment": comment, "feedback": feedback, "reason": reason},
        )
        self._emit("customer.subscription.deleted", sub)

    # -- subscription items ----------------------------------------------------------------

    def create_subscription_item(self, params: Obj) -> Obj:
        sub_id = get_str(params, "subscription")
        if not sub_id:
            raise missing("subscription")
        with self._operation():
            sub = self.get_subscription(sub_id, param="subscription")
            before = {item["id"] for item in sub["items"]["data"]}
            raw = {k: params[k] for k in ("price", "quantity", "metadata") if k in params}
            update = {"items": [raw]}
            for key in ("proration_behavior", "payment_behavior"):
                if key in params:
                    update[key] = params[key]
            self.update_subscription(sub_id, update)
            return next(item for item in sub["items"]["data"] if item["id"] not in before)

    def update_subscription_item(self, item_id: str, params: Obj) -> Obj:
        with self._operation():
            item = self.get_subscription_item(item_id)
            raw = {
                "id": item_id,
                **{k: params[k] for k in ("price", "quantity", "metadata") if k in params},
            }
            update: Obj = {"items": [raw]}
            for key in ("proration_behavior", "payment_behavior"):
                if key in params:
                    update[key] = params[key]
            self.update_subscription(item["subscription"], update)
            return self.get_subscription_item(item_id)

    def delete_subscription_item(self, item_id: str, params: Obj) -> Obj:
        with self._operation():
            item = self.get_subscription_item(item_id)
            update: Obj = {"items": [{"id": item_id, "deleted": "true"}]}
            if "proration_behavior" in params:
                update["proration_behavior"] = params["proration_behavior"]
            self.update_subscription(item["subscription"], update)
            return {"id": item_id, "object": "subscription_item", "deleted": True}

    def list_subscription_items(self, params: Obj, **paging: Any) -> tuple[list[Obj], bool]:
        sub_id = get_str(params, "subscription")
        if not sub_id:
            raise missing("subscription")
        sub = self.get_subscription(sub_id, param="subscription")
        subset = [item["id"] for item in sub["items"]["data"]]
        return self.subscription_items.page(subset=subset, kind="subscription item", **paging)

    # -- invoices --------------------------------------------------------------------------

    def list_invoices(self, params: Obj, **paging: Any) -> tuple[list[Obj], bool]:
        customer_id = get_str(params, "customer")
        sub_id = get_str(params, "subscription")
        status = get_str(params, "status")
        created = created_filter(params)
        subset = None
        if sub_id:
            subset = self.invoices_by_subscription.get(sub_id, [])
        elif customer_id:
            subset = self.invoices_by_customer.get(customer_id, [])

        def match(obj: Obj) -> bool:
            return (
                (customer_id is None or obj["customer"] == customer_id)
                and (status is None or obj["status"] == status)
                and created(obj)
            )

        return self.invoices.page(match=match, subset=subset, kind="invoice", **paging)

    def invoice_subscription_id(self, invoice: Obj) -> str | None:
        parent = invoice.get("parent") or {}
        details = parent.get("subscription_details") or {}
        return details.get("subscription")

    def pay_invoice(self, invoice_id: str) -> Obj:
        """``POST /v1/invoices/{id}/pay``: the card works this time."""
        with self._operation():
            invoice = self.get_invoice(invoice_id)
            if invoice["status"] == "paid":
                raise invalid("Invoice is already paid", code="invoice_already_paid")
            if invoice["status"] != "open":
                raise invalid(f"You cannot pay an invoice with status {invoice['status']}.")
            if self._take_decline():
                self._fail_invoice(invoice)  # the event goes out; the caller gets a 402
                raise _card_declined()
            self._pay_invoice(invoice)
            sub_id = self.invoice_subscription_id(invoice)
            if sub_id:
                self._reactivate_if_settled(self.subscriptions.objects[sub_id])
            return invoice

    def _open_invoices(self, sub: Obj) -> list[Obj]:
        ids = self.invoices_by_subscription.get(sub["id"], [])
        return [
            self.invoices.objects[i] for i in ids if self.invoices.objects[i]["status"] == "open"
        ]

    def _reactivate_if_settled(self, sub: Obj) -> None:
        if sub["status"] in ("past_due", "unpaid") and not self._open_invoices(sub):
            before = snapshot(sub)
            sub["status"] = "active"
            self._emit("customer.subscription.updated", sub, changes(before, sub))

    # -- lifecycle controls (control API and sandbox buttons) -------------------------------

    def _advance_period(self, sub: Obj) -> tuple[int, int]:
        """Move every item to its next period; returns the period that just ended."""
        old_start, old_end = self.period_start(sub), self.period_end(sub)
        items = []
        for item in sub["items"]["data"]:
            recurring = item["price"]["recurring"]
            start = item["current_period_end"]
            item["current_period_start"] = start
            item["current_period_end"] = add_interval(
                start, recurring["interval"], recurring["interval_count"]
            )
            items.append(item)
        # A new list object, so ``previous_attributes.items`` keeps the old periods.
        sub["items"] = objects.items_list(sub["id"], items)
        return old_start, old_end

    def _outcome(self, sub: Obj, invoice: Obj | None = None) -> Obj:
        """What a lifecycle control returns: frozen copies, safe to read from any thread."""
        return {"subscription": snapshot(sub), "invoice": snapshot(invoice) if invoice else None}

    def _require_live(self, sub: Obj, action: str) -> None:
        if sub["status"] in ("canceled", "incomplete_expired"):
            raise invalid(f"Cannot {action} subscription {sub['id']}: it is {sub['status']}.")

    def _end_at_period_end(self, sub: Obj) -> None:
        """The period of a subscription set to cancel at period end is over: no renewal."""
        self._end_subscription(
            sub,
            reason="cancellation_requested",
            at=self.period_end(sub),
            comment=sub["cancellation_details"].get("comment"),
            feedback=sub["cancellation_details"].get("feedback"),
        )

    def _bill_next_period(self, sub: Obj) -> tuple[Obj, Obj]:
        """Advance to the next period and draft its ``subscription_cycle`` invoice.

        Returns the subscription as it was (for ``previous_attributes``) and the invoice.
        """
        before = snapshot(sub)
        old_start, old_end = self._advance_period(sub)
        invoice = self._build_cycle_invoice(
            sub, billing_reason="subscription_cycle", period_start=old_start, period_end=old_end
        )
        sub["latest_invoice"] = invoice["id"]
        return before, invoice

    def renew(self, sub_id: str) -> Obj:
        """The period ends and the renewal is paid (or, if cancelling, the subscription ends).

        For a ``trialing`` subscription the period that ends is the trial: see
        :meth:`end_trial`.
        """
        with self._operation():
            sub = self.get_subscription(sub_id)
            self._require_live(sub, "renew")
            if sub["status"] == "trialing":
                return self._end_trial(sub)
            return self._renew(sub)

    def _renew(self, sub: Obj) -> Obj:
        if sub["cancel_at_period_end"]:
            self._end_at_period_end(sub)
            return self._outcome(sub)
        before, invoice = self._bill_next_period(sub)
        if sub["status"] in ("past_due", "unpaid", "incomplete", "trialing"):
            sub["status"] = "active"
        self._emit("customer.subscription.updated", sub, changes(before, sub))
        self._finalize_and_collect(invoice, succeed=True)
        return self._outcome(sub, invoice)

    def fail_renewal(self, sub_id: str) -> Obj:
        """The renewal payment fails: open invoice, subscription past_due.

        Called again while that invoice is still open, it is Stripe's next automatic retry
        failing: another ``invoice.payment_failed`` for the same invoice, nothing else.
        """
        with self._operation():
            sub = self.get_subscription(sub_id)
            self._require_live(sub, "fail the renewal of")
            if sub["cancel_at_period_end"]:
                self._end_at_period_end(sub)  # nothing to charge: it just ends
                return self._outcome(sub)
            latest = self.invoices.get(sub["latest_invoice"] or "")
            if (
                latest is not None
                and latest["status"] == "open"
                and latest["billing_reason"] == "subscription_cycle"
            ):
                self._fail_invoice(latest)
                return self._outcome(sub, latest)
            return self._fail_renewal(sub)

    def _fail_renewal(self, sub: Obj) -> Obj:
        before, invoice = self._bill_next_period(sub)
        self._finalize_and_collect(invoice, succeed=False)
        if sub["status"] in ("active", "trialing"):
            sub["status"] = "past_due"
        self._emit("customer.subscription.updated", sub, changes(before, sub))
        return self._outcome(sub, invoice)

    # -- trials ------------------------------------------------------------------------------

    def _trialing(self, sub_id: str) -> Obj:
        sub = self.get_subscription(sub_id)
        if sub["status"] != "trialing":
            raise invalid(f"Subscription {sub_id} is not trialing; it is {sub['status']}.")
        return sub

    def payment_method_of(self, sub: Obj) -> str | None:
        """The card Stripe would charge: the subscription's default, else the customer's."""
        customer = self.customers.objects.get(sub["customer"]) or {}
        settings = customer.get("invoice_settings") or {}
        return sub["default_payment_method"] or settings.get("default_payment_method")

    def end_trial(self, sub_id: str) -> Obj:
        """The trial is over (its period ends, as :meth:`renew` ends a period).

        With a card: ``active`` and a paid ``subscription_cycle`` invoice. Without one,
        ``trial_settings.end_behavior.missing_payment_method`` decides: ``cancel`` (the
        subscription ends, ``customer.subscription.deleted``), ``pause`` (status ``paused``,
        ``customer.subscription.paused``, no invoice) or ``create_invoice`` (the default: the
        invoice cannot be paid, so it stays open and the subscription is ``past_due``, the
        normal failure timeline from there).
        """
        with self._operation():
            return self._end_trial(self._trialing(sub_id))

    def _end_trial(self, sub: Obj) -> Obj:
        if sub["cancel_at_period_end"] or self.payment_method_of(sub):
            return self._renew(sub)
        behaviour = sub["trial_settings"]["end_behavior"]["missing_payment_method"]
        if behaviour == "cancel":
            self._end_subscription(sub, reason="cancellation_requested", at=self.period_end(sub))
        elif behaviour == "pause":
            before = snapshot(sub)
            sub["status"] = "paused"
            self._emit("customer.subscription.updated", sub, changes(before, sub))
            self._emit("customer.subscription.paused", sub)
        else:
            return self._fail_renewal(sub)
        return self._outcome(sub)

    def trial_will_end(self, sub_id: str) -> Obj:
        """``customer.subscription.trial_will_end``, which Stripe sends 3 days before the end."""
        with self._operation():
            sub = self._trialing(sub_id)
            self._emit("customer.subscription.trial_will_end", sub)
            return self._outcome(sub)

    def recover(self, sub_id: str) -> Obj:
        """The customer fixes the card: every open invoice is paid, the subscription is active."""
        with self._operation():
            sub = self.get_subscription(sub_id)
            self._require_live(sub, "recover")
            open_invoices = self._open_invoices(sub)
            if not open_invoices:
                raise invalid(f"Subscription {sub_id} has no open invoice to pay.")
            for invoice in open_invoices:
                self._pay_invoice(invoice)
            self._reactivate_if_settled(sub)
            return self._outcome(sub, open_invoices[-1])

    def set_cancel_at_period_end(self, sub_id: str, value: bool = True) -> Obj:
        with self._operation():
            sub = self.update_subscription(
                sub_id, {"cancel_at_period_end": "true" if value else "false"}
            )
            return self._outcome(sub)

    def cancel(self, sub_id: str) -> Obj:
        with self._operation():
            return self._outcome(self.cancel_subscription(sub_id))

    def set_status(self, sub_id: str, status: str) -> Obj:
        """Force a status (``unpaid`` after dunning, ``incomplete_expired``, …)."""
        if status not in SUBSCRIPTION_STATUSES:
            raise invalid(f"Unknown subscription status {status!r}", param="status")
        with self._operation():
            sub = self.get_subscription(sub_id)
            if status == "canceled":
                self._require_live(sub, "cancel")
                self._end_subscription(sub, reason="payment_failed")
                return self._outcome(sub)
            before = snapshot(sub)
            sub["status"] = status
            if status == "incomplete_expired":
                sub["ended_at"] = self.now()
            previous = changes(before, sub)
            if previous:
                self._emit("customer.subscription.updated", sub, previous)
            return self._outcome(sub)

    # -- billing portal ----------------------------------------------------------------------

    # -- charges, invoice payments, disputes and refunds ------------------------------------

    def get_charge(self, charge_id: str) -> Obj:
        return self._get(self.charges, "charge", charge_id)

    def get_dispute(self, dispute_id: str) -> Obj:
        return self._get(self.disputes, "dispute", dispute_id)

    def get_invoice_payment(self, payment_id: str) -> Obj:
        return self._get(self.invoice_payments, "invoice_payment", payment_id)

    def list_invoice_payments(self, params: Obj, **paging: Any) -> tuple[list[Obj], bool]:
        """``GET /v1/invoice_payments``: by ``invoice`` or by ``payment[payment_intent]``."""
        invoice_id = get_str(params, "invoice")
        payment = get_dict(params, "payment") or {}
        intent = payment.get("payment_intent")

        def match(obj: Obj) -> bool:
            return (invoice_id is None or obj["invoice"] == invoice_id) and (
                intent is None or obj["payment"]["payment_intent"] == intent
            )

        return self.invoice_payments.page(match=match, kind="invoice_payment", **paging)

    def list_charges(self, params: Obj, **paging: Any) -> tuple[list[Obj], bool]:
        """``GET /v1/charges``: all, or by ``payment_intent`` / ``customer``."""
        intent, customer = get_str(params, "payment_intent"), get_str(params, "customer")

        def match(obj: Obj) -> bool:
            return (intent is None or obj["payment_intent"] == intent) and (
                customer is None or obj["customer"] == customer
            )

        return self.charges.page(match=match, kind="charge", **paging)

    def list_disputes(self, params: Obj, **paging: Any) -> tuple[list[Obj], bool]:
        charge_id = get_str(params, "charge")

        def match(obj: Obj) -> bool:
            return charge_id is None or obj["charge"] == charge_id

        return self.disputes.page(match=match, kind="dispute", **paging)

    def _latest_charge(self, sub_id: str) -> Obj:
        sub = self.get_subscription(sub_id)
        for invoice_id in reversed(self.invoices_by_subscription.get(sub["id"], [])):
            charge_id = self.charge_by_invoice.get(invoice_id)
            if charge_id:
                return self.charges.objects[charge_id]
        raise invalid(f"Subscription {sub_id} has no paid charge.")

    def open_dispute(self, sub_id: str, *, reason: str = "fraudulent") -> Obj:
        """The customer's bank disputes the latest paid charge of the subscription."""
        with self._operation():
            charge = self._latest_charge(sub_id)
            if charge["disputed"]:
                raise invalid(f"Charge {charge['id']} is already disputed.")
            charge["disputed"] = True
            dispute = objects.dispute(
                new_id("dp"), charge=charge, reason=reason, created=self.now()
            )
            self.disputes.add(dispute)
            self._emit("charge.dispute.created", dispute)
            return snapshot(dispute)

    def submit_dispute_evidence(self, dispute_id: str) -> Obj:
        """The merchant answers: the dispute is under review (``charge.dispute.updated``)."""
        with self._operation():
            dispute = self.get_dispute(dispute_id)
            before = snapshot(dispute)
            dispute["status"] = "under_review"
            dispute["evidence_details"] = {
                **dispute["evidence_details"],
                "has_evidence": True,
                "submission_count": dispute["evidence_details"]["submission_count"] + 1,
            }
            self._emit("charge.dispute.updated", dispute, changes(before, dispute))
            return snapshot(dispute)

    def close_dispute(self, dispute_id: str, *, won: bool) -> Obj:
        """The bank decides: ``won`` (funds back) or ``lost`` (``charge.dispute.closed``)."""
        with self._operation():
            dispute = self.get_dispute(dispute_id)
            if dispute["status"] in ("won", "lost"):
                raise invalid(f"Dispute {dispute_id} is already closed.")
            before = snapshot(dispute)
            dispute["status"] = "won" if won else "lost"
            self._emit("charge.dispute.closed", dispute, changes(before, dispute))
            return snapshot(dispute)

    def refund(self, sub_id: str, *, amount: int | None = None) -> Obj:
        """Refund (part of) the latest paid charge of the subscription (``charge.refunded``)."""
        with self._operation():
            charge = self._latest_charge(sub_id)
            self._charge_refund(charge, amount)
            return snapshot(charge)

    def _charge_refund(
        self,
        charge: Obj,
        amount: int | None,
        *,
        metadata: Obj | None = None,
        reason: str | None = None,
    ) -> Obj:
        """Refund ``amount`` (all that is left when None) of ``charge``; returns the refund."""
        before = snapshot(charge)
        left = charge["amount"] - charge["amount_refunded"]
        refunded = min(left, amount if amount is not None else left)
        charge["amount_refunded"] += refunded
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        self._emit("charge.refunded", charge, changes(before, charge))
        return self.refunds.add(
            objects.refund(
                new_id("re"),
                charge=charge,
                amount=refunded,
                metadata=metadata or {},
                reason=reason,
                created=self.now(),
            )
        )

    def create_refund(self, params: Obj, *, livemode: bool = False) -> Obj:
        """``POST /v1/refunds``: a refund of a charge, named or found by its payment intent."""
        charge_id, intent = get_str(params, "charge"), get_str(params, "payment_intent")
        if not charge_id and not intent:
            raise missing("charge")
        amount = get_int(params, "amount")
        with self._operation():
            if charge_id:
                charge = self.get_charge(charge_id)
            else:
                found = [c for c in self.charges.objects.values() if c["payment_intent"] == intent]
                if not found:
                    raise invalid(f"No such payment_intent: '{intent}'", param="payment_intent")
                charge = found[-1]
            left = charge["amount"] - charge["amount_refunded"]
            if left <= 0:
                raise invalid(
                    f"Charge {charge['id']} has already been refunded.",
                    code="charge_already_refunded",
                )
            if amount is not None and not 0 < amount <= left:
                raise invalid(
                    f"Refund amount ({amount}) is greater than unrefunded amount on charge "
                    f"({left})",
                    param="amount",
                )
            refund = self._charge_refund(
                charge,
                amount,
                metadata=get_dict(params, "metadata"),
                reason=get_str(params, "reason"),
            )
            return snapshot(refund)

    def list_refunds(self, params: Obj, **paging: Any) -> tuple[list[Obj], bool]:
        """``GET /v1/refunds``: all, or by ``charge`` / ``payment_intent``."""
        charge_id, intent = get_str(params, "charge"), get_str(params, "payment_intent")

        def match(obj: Obj) -> bool:
            return (charge_id is None or obj["charge"] == charge_id) and (
                intent is None or obj["payment_intent"] == intent
            )

        return self.refunds.page(match=match, kind="refund", **paging)

    def create_portal_session(self, params: Obj, *, livemode: bool = False) -> Obj:
        customer_id = get_str(params, "customer")
        if not customer_id:
            raise missing("customer")
        with self._operation():
            self.get_customer(customer_id, param="customer")
            session_id = new_id("bps")
            session = objects.portal_session(
                session_id,
                customer_id=customer_id,
                return_url=get_str(params, "return_url"),
                created=self.now(),
                livemode=livemode,
                url=f"{self.public_url}/portal/{session_id}",
            )
            self.portal_sessions.add(session)
            return session

    def portal_update_card(self, session_id: str, *, card_number: str = "4242424242424242") -> Obj:
        """A new default card; past-due subscriptions of the customer are paid up with it."""
        with self._operation():
            session = self.get_portal_session(session_id)
            customer = self.get_customer(session["customer"])
            card = "".join(ch for ch in card_number if ch.isdigit()) or "4242424242424242"
            if card in DECLINED_CARDS:
                raise _card_declined()
            pm = self._new_payment_method(customer, last4=card[-4:])
            self.update_customer(
                customer["id"], {"invoice_settings": {"default_payment_method": pm["id"]}}
            )
            for sub_id in self.subs_by_customer.get(customer["id"], []):
                sub = self.subscriptions.objects[sub_id]
                if sub["status"] in ("canceled", "incomplete_expired"):
                    continue
                self.update_subscription(sub_id, {"default_payment_method": pm["id"]})
                if self._open_invoices(sub):
                    self.recover(sub_id)
            return pm

    def portal_subscription(self, session_id: str, sub_id: str) -> Obj:
        session = self.get_portal_session(session_id)
        sub = self.get_subscription(sub_id)
        if sub["customer"] != session["customer"]:
            raise no_such("sub", sub_id)
        return sub

    # -- bulk seeding --------------------------------------------------------------------------

    def seed(
        self,
        count: int,
        *,
        price: str | None = None,
        quantity: int = 1,
        status: str = "active",
        metadata_key: str | None = None,
        metadata: dict[str, str] | None = None,
        email_domain: str = "example.test",
        livemode: bool = False,
    ) -> list[str]:
        """Create ``count`` customers, each with one subscription, fast and without events.

        This is for benchmarks that need a large account to page through, not for exercising
        business flows: no invoices, no events. Each object is a shallow copy of a template
        (nested parts are shared; the state replaces them rather than mutating them), and the
        cyclic GC is paused meanwhile: with it, 100k subscriptions take three times as long.
        """
        if status not in SUBSCRIPTION_STATUSES:
            raise invalid(f"Unknown subscription status {status!r}", param="status")
        with self.lock:
            price_obj = self.get_price(price or self.catalogue[0]["prices"][0]["id"])
            plan_obj = self.plans.get(price_obj["id"]) or objects.plan_from_price(price_obj)
            recurring = price_obj["recurring"] or {"interval": "month", "interval_count": 1}
            now = self.now()
            period_end = add_interval(now, recurring["interval"], recurring["interval_count"])
            customer_template = objects.customer("", created=now, livemode=livemode)
            item_template = objects.subscription_item(
                "",
                subscription_id="",
                price_obj=price_obj,
                plan_obj=plan_obj,
                quantity=quantity,
                created=now,
                period_start=now,
                period_end=period_end,
            )
            sub_template = objects.subscription(
                "",
                customer_id="",
                items=[],
                created=now,
                livemode=livemode,
                currency=price_obj["currency"],
                status=status,
            )
            customer_ids = objects.fast_ids("cus", count)
            sub_ids = objects.fast_ids("sub", count)
            item_ids = objects.fast_ids("si", count)
            base = len(self.subscriptions)
            gc_was_enabled = gc.isenabled()
            gc.disable()
            try:
                for n in range(count):
                    customer_id, sub_id = customer_ids[n], sub_ids[n]
                    customer = customer_template.copy()
                    customer["id"] = customer_id
                    customer["email"] = f"seed{base + n}@{email_domain}"
                    customer["invoice_prefix"] = f"S{base + n:07X}"[-8:]
                    self.customers.add(customer)
                    item = item_template.copy()
                    item["id"] = item_ids[n]
                    item["subscription"] = sub_id
                    sub_metadata = dict(metadata) if metadata else {}
                    if metadata_key:
                        sub_metadata[metadata_key] = str(base + n)
                    sub = sub_template.copy()
                    sub["id"] = sub_id
                    sub["customer"] = customer_id
                    sub["items"] = objects.items_list(sub_id, [item])
                    sub["metadata"] = sub_metadata
                    self.subscriptions.add(sub)
                    self.subscription_items.add(item)
                    self.subs_by_customer[customer_id] = [sub_id]
            finally:
                if gc_was_enabled:
                    gc.enable()
            return sub_ids

    # -- requests and faults (used by the HTTP layer) -------------------------------------------

    def add_fault(
        self, path_prefix: str, *, status: int = 500, count: int = 1, method: str | None = None
    ) -> Obj:
        fault = {
            "path_prefix": path_prefix,
            "status": int(status),
            "count": int(count),
            "method": method.upper() if method else None,
        }
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def take_fault(self, method: str, path: str) -> Obj | None:
        """The first armed fault matching this call, consuming one of its shots."""
        with self.lock:
            for fault in self.faults:
                if (
                    fault["count"] > 0
                    and path.startswith(fault["path_prefix"])
                    and (fault["method"] in (None, method.upper()))
                ):
                    fault["count"] -= 1
                    if fault["count"] == 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def log_request(self, entry: Obj) -> None:
        with self.lock:
            self.requests.append(entry)

    def request_log(self) -> list[Obj]:
        with self.lock:
            return list(self.requests)

    def clear_requests(self) -> None:
        with self.lock:
            self.requests.clear()

    # -- events ------------------------------------------------------------------------------

    def list_events(self, params: Obj, **paging: Any) -> tuple[list[Obj], bool]:
        types = set(get_list(params, "types"))
        single = get_str(params, "type")
        if single:
            types.add(single)
        created = created_filter(params)

        def type_ok(event_type: str) -> bool:
            if not types:
                return True
            return any(
                event_type == t or (t.endswith("*") and event_type.startswith(t[:-1]))
                for t in types
            )

        return self.events.page(
            match=lambda e: type_ok(e["type"]) and created(e), kind="event", **paging
        )

    def events_of(self, event_type: str | None = None) -> list[Obj]:
        """All events (oldest first), optionally of one type; for tests."""
        with self.lock:
            return [e for e in self.events.values() if event_type in (None, e["type"])]

    # -- dumps -----------------------------------------------------------------------------

    STORES = (
        "customers",
        "products",
        "prices",
        "subscriptions",
        "invoices",
        "invoice_items",
        "checkout_sessions",
        "portal_sessions",
        "payment_methods",
        "charges",
        "invoice_payments",
        "disputes",
        "coupons",
        "promotion_codes",
        "events",
    )

    def dump(self, kinds: Sequence[str] | None = None, limit: int | None = None) -> Obj:
        with self.lock:
            result: Obj = {"account": self.account}
            for name in kinds or self.STORES:
                if name not in self.STORES:
                    raise invalid(f"Unknown kind {name!r}; one of {', '.join(self.STORES)}")
                store: Store = getattr(self, name)
                values = list(store.values())
                result[name] = values[-limit:] if limit else values
            return snapshot(result)


# ``automatic_tax`` of a subscription with Stripe Tax on (invoices add provider and status).
_AUTOMATIC_TAX_ON = {
    "disabled_reason": None,
    "enabled": True,
    "liability": {"account": None, "type": "self"},
}

# Stripe's longest billing interval is three years: 3 years, 36 months, 156 weeks, 1095 days.
MAX_INTERVAL_COUNT = {"day": 1095, "week": 156, "month": 36, "year": 3}


def _check_interval(interval: Any, count: int | None) -> None:
    if interval not in MAX_INTERVAL_COUNT:
        raise invalid(
            f"Invalid recurring[interval]: must be one of day, week, month, or year; got "
            f"{interval!r}",
            param="recurring[interval]",
        )
    if count is None or not 1 <= count <= MAX_INTERVAL_COUNT[interval]:
        raise invalid(
            "The maximum billing interval is 3 years (3 years, 36 months, 156 weeks or 1095 "
            "days), and interval_count must be at least 1.",
            param="recurring[interval_count]",
        )


_ADDRESS_FIELDS = ("city", "country", "line1", "line2", "postal_code", "state")


def _address(raw: Obj) -> Obj:
    """A Stripe address from ``address[...]`` params (the country upper-cased)."""
    address: Obj = {field: (str(raw.get(field) or "") or None) for field in _ADDRESS_FIELDS}
    if address["country"]:
        address["country"] = address["country"].upper()
    return address


def _cycle(price: Obj) -> tuple[str, int]:
    recurring = price["recurring"] or {"interval": "month", "interval_count": 1}
    return recurring["interval"], recurring["interval_count"]


def _session_discounts(sources: Sequence[tuple[Obj, Obj | None]]) -> list[Obj]:
    """A Checkout Session's ``discounts``: the coupon and promotion code of each."""
    return [
        {"coupon": coupon["id"], "promotion_code": promo["id"] if promo else None}
        for coupon, promo in sources
    ]


def _card_declined() -> StripeError:
    return StripeError(
        402,
        "Your card was declined.",
        type="card_error",
        code="card_declined",
        decline_code="generic_decline",
    )


def _any(_: Obj) -> bool:
    return True


def created_filter(params: Obj) -> Callable[[Obj], bool]:
    """``created=ts`` or ``created[gte|gt|lte|lt]=ts`` as a predicate on ``obj["created"]``."""
    raw = params.get("created")
    if raw is None or raw == "":
        return _any
    if isinstance(raw, str):
        exact = get_int(params, "created")
        return lambda obj: obj["created"] == exact
    if not isinstance(raw, dict):
        raise invalid("Invalid created filter", param="created")
    bounds = {op: get_int(raw, op) for op in ("gt", "gte", "lt", "lte") if op in raw}

    def match(obj: Obj) -> bool:
        ts = obj["created"]
        return (
            ("gt" not in bounds or ts > bounds["gt"])
            and ("gte" not in bounds or ts >= bounds["gte"])
            and ("lt" not in bounds or ts < bounds["lt"])
            and ("lte" not in bounds or ts <= bounds["lte"])
        )

    return match
