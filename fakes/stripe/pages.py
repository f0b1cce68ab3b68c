"""The fake's HTML pages: hosted Checkout, the billing portal, invoices and the sandbox dashboard.

Plain server-rendered forms (no scripts), labelled inputs and real buttons, so a person can
walk the journey in a browser and a browser test can find everything by role and name.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from html import escape
from typing import Any

from .objects import describe_interval, format_amount
from .tax import COUNTRIES, TAX_RATES

Obj = dict[str, Any]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#f6f8fa;color:#1a1f36}
main{max-width:54rem;margin:2rem auto;padding:0 1rem}
.card{background:#fff;border:1px solid #d8dee4;border-radius:8px;padding:1.25rem;margin:1rem 0}
.banner{background:#fff3cd;border:1px solid #e0c36c;border-radius:6px;padding:.5rem .75rem}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.4rem;
border-bottom:1px solid #eee;vertical-align:top}
label{display:block;margin:.75rem 0 .25rem;font-weight:600}
input{font:inherit;padding:.4rem;width:100%;max-width:24rem;box-sizing:border-box}
button{font:inherit;padding:.45rem 1rem;border-radius:6px;border:1px solid #635bff;
background:#635bff;color:#fff;cursor:pointer}
button.secondary{background:#fff;color:#635bff}
form.inline{display:inline}
.error{color:#b00020;font-weight:600}.ok{color:#0a7a3a;font-weight:600}
.muted{color:#5c6370;font-size:.9em}code{font-size:.9em}
"""


def _date(ts: int | None) -> str:
    if not ts:
        return "—"
    return time.strftime("%d %b %Y %H:%M UTC", time.gmtime(ts))


def _layout(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )


def _button_form(action: str, label: str, *, secondary: bool = False) -> str:
    css = ' class="secondary"' if secondary else ""
    return (
        f'<form class="inline" method="post" action="{escape(action)}">'
        f'<button type="submit"{css}>{escape(label)}</button></form>'
    )


def message(title: str, text: str, link: tuple[str, str] | None = None) -> str:
    body = f"<h1>{escape(title)}</h1><p>{escape(text)}</p>"
    if link:
        body += f'<p><a href="{escape(link[0])}">{escape(link[1])}</a></p>'
    return _layout(title, body)


# -- Checkout -------------------------------------------------------------------------------


def checkout(
    session: Obj, line_items: list[Obj], *, trial_days: int | None = None, error: str | None = None
) -> str:
    """The hosted Checkout page; ``trial_days``: the subscription starts with a free trial."""
    currency = session["currency"]
    rows = "".join(
        f"<tr><td>{escape(item['description'])}</td><td>{item['quantity']}</td>"
        f"<td>{format_amount(item['price']['unit_amount'], currency)}</td>"
        f"<td>{format_amount(item['amount_total'], currency)}</td></tr>"
        for item in line_items
    )
    interval = describe_interval(line_items[0]["price"].get("recurring"))
    recurring_total = sum(item["amount_total"] for item in line_items)
    then = f"{trial_days} days free, then" if trial_days else "Then"
    card_optional = trial_days is not None and session["payment_method_collection"] == "if_required"
    parts = [
        '<p class="banner">Test mode: this is the fake Stripe server. No real card is charged.</p>',
        "<h1>Checkout</h1>",
        '<section class="card" aria-labelledby="summary">',
        '<h2 id="summary">Order summary</h2><table>',
        '<thead><tr><th scope="col">Item</th><th scope="col">Qty</th>'
        '<th scope="col">Unit price</th><th scope="col">Amount</th></tr></thead>',
        f"<tbody>{rows}</tbody><tfoot>",
        *(
            f'<tr><th scope="row" colspan="3">{escape(label)}</th>'
            f"<td>{format_amount(amount, currency)}</td></tr>"
            for label, amount in (
                ("Discount", -session["total_details"]["amount_discount"]),
                ("Tax", session["total_details"]["amount_tax"]),
            )
            if amount
        ),
        f'<tr><th scope="row" colspan="3">Total due today</th>'
        f"<td><strong>{format_amount(session['amount_total'], currency)}</strong></td></tr>"
        "</tfoot></table>",
        f'<p class="muted">{then} {format_amount(recurring_total, currency)} every '
        f"{escape(interval)}.</p></section>",
        f'<form class="card" method="post" action="/checkout/{escape(session["id"])}">',
    ]
    if error:
        parts.append(f'<p class="error" role="alert">{escape(error)}</p>')
    if session["customer"] or session["customer_email"]:
        if session["customer_email"]:
            parts.append(f"<p>Paying as <strong>{escape(session['customer_email'])}</strong></p>")
    else:
        parts.append(
            '<label for="email">Email</label>'
            '<input id="email" name="email" type="email" autocomplete="email" required>'
        )
    for field in session["custom_fields"]:
        key = escape(field["key"])
        required = "" if field["optional"] else " required"
        parts.append(
            f'<label for="cf-{key}">{escape(field["label"]["custom"])}</label>'
            f'<input id="cf-{key}" name="custom_fields[{key}]" type="text"{required}>'
        )
    if session["automatic_tax"]["enabled"] or session["billing_address_collection"] == "required":
        options = "".join(
            f'<option value="{code}">{escape(name)}</option>' for code, name in COUNTRIES.items()
        )
        rates = ", ".join(f"{code} {rate[0]:g}%" for code, rate in TAX_RATES.items())
        parts.append(
            '<fieldset><legend>Billing address</legend><label for="country">Country</label>'
            f'<select id="country" name="country" required><option value="">Choose…</option>'
            f"{options}</select>"
            '<label for="postal-code">Postal code</label>'
            '<input id="postal-code" name="postal_code" autocomplete="postal-code"></fieldset>'
        )
        if session["automatic_tax"]["enabled"]:
            parts.append(f'<p class="muted">Tax is added by country: {escape(rates)}.</p>')
    if session["tax_id_collection"]["enabled"]:
        parts.append(
            '<label for="tax-id">Tax ID (optional, for businesses)</label>'
            '<input id="tax-id" name="tax_id" autocomplete="off">'
        )
    if session["allow_promotion_codes"]:
        parts.append(
            '<label for="promotion-code">Promotion code</label>'
            '<input id="promotion-code" name="promotion_code" autocomplete="off">'
        )
    card_value = "" if card_optional else "4242 4242 4242 4242"
    card_help = "Optional: no card is needed to start the trial. " if card_optional else ""
    parts.append(
        f'<label for="card-number">Card number{" (optional)" if card_optional else ""}</label>'
        '<input id="card-number" name="card_number" inputmode="numeric" '
        f'autocomplete="cc-number" value="{card_value}" aria-describedby="card-help">'
        f'<p id="card-help" class="muted">{card_help}4242 4242 4242 4242 succeeds; '
        "4000 0000 0000 0002 is declined.</p>"
        '<label for="card-name">Name on card</label>'
        '<input id="card-name" name="name" autocomplete="cc-name">'
        f'<p><button type="submit">{"Start trial" if trial_days else "Pay"}</button></p></form>'
    )
    if session["cancel_url"]:
        parts.append(f'<p><a href="{escape(session["cancel_url"])}">Cancel</a></p>')
    return _layout("Checkout", "".join(parts))


# -- Billing portal ---------------------------------------------------------------------------


def portal(
    session: Obj,
    customer: Obj,
    subscriptions: list[Obj],
    invoices: list[Obj],
    card: Obj | None,
    product_names: dict[str, str],
    *,
    notice: str | None = None,
    error: str | None = None,
) -> str:
    base = f"/portal/{escape(session['id'])}"
    parts = [
        '<p class="banner">Test mode: this is the fake Stripe billing portal.</p>',
        "<h1>Billing</h1>",
        f"<p>{escape(customer.get('email') or customer['id'])}</p>",
    ]
    if notice:
        parts.append(f'<p class="ok" role="status">{escape(notice)}</p>')
    if error:
        parts.append(f'<p class="error" role="alert">{escape(error)}</p>')
    card_text = (
        f"{escape(card['card']['brand'].title())} ending in {escape(card['card']['last4'])}"
        if card
        else "No card on file"
    )
    parts.append(
        '<section class="card" aria-labelledby="pm"><h2 id="pm">Payment method</h2>'
        f"<p>{card_text}</p>"
        f'<form method="post" action="{base}/card">'
        '<label for="card-number">New card number</label>'
        '<input id="card-number" name="card_number" inputmode="numeric" '
        'autocomplete="cc-number" value="4242 4242 4242 4242">'
        '<p><button type="submit">Update card</button></p></form>'
        '<p class="muted">A new card pays any overdue invoice straight away.</p></section>'
    )
    for sub in subscriptions:
        items = ", ".join(
            f"{item['quantity']} × {escape(product_names.get(item['price']['product'], ''))}"
            for item in sub["items"]["data"]
        )
        period_end = max(item["current_period_end"] for item in sub["items"]["data"])
        heading = f"sub-{escape(sub['id'])}"
        parts.append(
            f'<section class="card" aria-labelledby="{heading}">'
            f'<h2 id="{heading}">Subscription: {items}</h2>'
            f"<p>Status: <strong>{escape(sub['status'])}</strong></p>"
        )
        if sub["status"] in ("past_due", "unpaid"):
            parts.append(
                '<p class="error">Your last payment failed. Update your card to pay the '
                "overdue invoice.</p>"
            )
        action = f"{base}/subscriptions/{escape(sub['id'])}"
        if sub["status"] in ("canceled", "incomplete_expired"):
            parts.append(f"<p>Ended on {_date(sub['ended_at'])}.</p>")
        elif sub["cancel_at_period_end"]:
            parts.append(f"<p>Cancels on {_date(sub['cancel_at'])}.</p>")
            parts.append(_button_form(f"{action}/reactivate", "Don't cancel"))
        else:
            parts.append(f"<p>Renews on {_date(period_end)}.</p>")
            parts.append(_button_form(f"{action}/cancel", "Cancel at period end", secondary=True))
        parts.append("</section>")
    if invoices:
        rows = "".join(
            f"<tr><td>{escape(inv['number'] or inv['id'])}</td><td>{_date(inv['created'])}</td>"
            f"<td>{format_amount(inv['total'], inv['currency'])}</td>"
            f"<td>{escape(inv['status'])}</td>"
            f'<td><a href="{escape(inv["hosted_invoice_url"])}">View</a></td></tr>'
            for inv in invoices
        )
        parts.append(
            '<section class="card" aria-labelledby="inv"><h2 id="inv">Invoices</h2><table>'
            '<thead><tr><th scope="col">Number</th><th scope="col">Date</th>'
            '<th scope="col">Total</th><th scope="col">Status</th>'
            '<th scope="col">Invoice</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></section>"
        )
    if session["return_url"]:
        parts.append(f'<p><a href="{escape(session["return_url"])}">Return to the site</a></p>')
    return _layout("Billing portal", "".join(parts))


# -- Invoices ---------------------------------------------------------------------------------


def invoice(inv: Obj) -> str:
    rows = "".join(
        f"<tr><td>{escape(line['description'] or '')}</td><td>{line['quantity']}</td>"
        f"<td>{format_amount(line['amount'], line['currency'])}</td></tr>"
        for line in inv["lines"]["data"]
    )
    body = (
        f"<h1>Invoice {escape(inv['number'] or inv['id'])}</h1>"
        f"<p>Status: <strong>{escape(inv['status'])}</strong> · "
        f"billing reason: {escape(inv['billing_reason'] or '')}</p>"
        '<table><thead><tr><th scope="col">Description</th><th scope="col">Qty</th>'
        f'<th scope="col">Amount</th></tr></thead><tbody>{rows}</tbody>'
        f'<tfoot><tr><th scope="row" colspan="2">Total</th>'
        f"<td>{format_amount(inv['total'], inv['currency'])}</td></tr>"
        f'<tr><th scope="row" colspan="2">Amount paid</th>'
        f"<td>{format_amount(inv['amount_paid'], inv['currency'])}</td></tr></tfoot></table>"
        f'<p><a href="{escape(inv["invoice_pdf"])}">Download PDF</a></p>'
    )
    return _layout(f"Invoice {inv['number'] or inv['id']}", body)


def invoice_pdf(inv: Obj) -> bytes:
    """A one-page PDF naming the invoice, so ``invoice_pdf`` links resolve to a real PDF."""
    text = (
        f"Invoice {inv['number'] or inv['id']} - {inv['status']} - "
        f"{format_amount(inv['total'], inv['currency'])}"
    )
    safe = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream = f"BT /F1 14 Tf 72 720 Td ({safe}) Tj ET".encode("latin-1", "replace")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


# -- Sandbox dashboard --------------------------------------------------------------------------

_ACTIONS = (
    ("renew", "Renew"),
    ("fail_renewal", "Fail renewal"),
    ("recover", "Recover"),
    ("cancel_at_period_end", "Cancel at period end"),
    ("cancel", "Cancel now"),
)
_TRIAL_ACTIONS = (("end_trial", "End trial"), ("trial_will_end", "Send trial_will_end"))


def dashboard(
    *,
    prices: Iterable[tuple[Obj, str]],
    subscriptions: list[tuple[Obj, str]],
    subscription_total: int,
    events: list[Obj],
    endpoints: list[str],
    delivery_counts: dict[str, int],
    notice: str | None = None,
    error: str | None = None,
) -> str:
    parts = ["<h1>Fake Stripe sandbox</h1>"]
    if notice:
        parts.append(f'<p class="ok" role="status">{escape(notice)}</p>')
    if error:
        parts.append(f'<p class="error" role="alert">{escape(error)}</p>')
    price_rows = "".join(
        f"<tr><td>{escape(name)}</td><td><code>{escape(price['id'])}</code></td>"
        f"<td>{format_amount(price['unit_amount'], price['currency'])} / "
        f"{escape((price['recurring'] or {}).get('interval', 'once'))}</td></tr>"
        for price, name in prices
    )
    parts.append(
        '<section class="card" aria-labelledby="cat"><h2 id="cat">Catalogue</h2><table>'
        '<thead><tr><th scope="col">Product</th><th scope="col">Price id</th>'
        f'<th scope="col">Amount</th></tr></thead><tbody>{price_rows}</tbody></table></section>'
    )
    sub_rows = []
    for sub, email in subscriptions:
        items = ", ".join(
            f"{item['quantity']} × <code>{escape(item['price']['id'])}</code>"
            for item in sub["items"]["data"]
        )
        period_end = max(item["current_period_end"] for item in sub["items"]["data"])
        flags = " (cancels at period end)" if sub["cancel_at_period_end"] else ""
        if sub["status"] in ("canceled", "incomplete_expired"):
            buttons = ""
        else:
            buttons = " ".join(
                _button_form(
                    f"/dashboard/subscriptions/{sub['id']}/{action}",
                    label,
                    secondary=action != "renew",
                )
                for action, label in (
                    _TRIAL_ACTIONS + _ACTIONS if sub["status"] == "trialing" else _ACTIONS
                )
            )
        sub_rows.append(
            f"<tr><td><code>{escape(sub['id'])}</code><br>{escape(email)}</td><td>{items}</td>"
            f"<td>{escape(sub['status'])}{flags}</td><td>{_date(period_end)}</td>"
            f"<td>{buttons}</td></tr>"
        )
    shown = len(subscriptions)
    parts.append(
        '<section class="card" aria-labelledby="subs"><h2 id="subs">Subscriptions</h2>'
        f'<p class="muted">Newest {shown} of {subscription_total}.</p><table>'
        '<thead><tr><th scope="col">Subscription</th><th scope="col">Items</th>'
        '<th scope="col">Status</th><th scope="col">Period end</th>'
        '<th scope="col">Actions</th></tr></thead>'
        f"<tbody>{''.join(sub_rows)}</tbody></table></section>"
    )
    hooks = (
        "".join(f"<li><code>{escape(url)}</code></li>" for url in endpoints)
        or "<li>No webhook endpoint configured.</li>"
    )
    counts = ", ".join(f"{status}: {n}" for status, n in sorted(delivery_counts.items())) or "none"
    flush = (
        _button_form("/dashboard/flush", "Deliver held events")
        if delivery_counts.get("held")
        else ""
    )
    event_rows = "".join(
        f"<tr><td>{_date(event['created'])}</td><td>{escape(event['type'])}</td>"
        f"<td><code>{escape(event['id'])}</code></td></tr>"
        for event in events
    )
    parts.append(
        '<section class="card" aria-labelledby="hooks"><h2 id="hooks">Webhooks</h2>'
        f"<ul>{hooks}</ul><p>Deliveries: {escape(counts)}</p>{flush}"
        '<table><thead><tr><th scope="col">When</th><th scope="col">Type</th>'
        f'<th scope="col">Event</th></tr></thead><tbody>{event_rows}</tbody></table></section>'
    )
    return _layout("Fake Stripe sandbox", "".join(parts))
