"""Rendering and sending outbox messages: templates, channels and the retry policy.

Templates are plain text rendered by a dedicated Django template engine with autoescape off
(an email body or a DM is not HTML); the HTML part of an email is derived from the rendered
text, escaped, so an edited template can never inject markup.
"""

from __future__ import annotations

import re
import smtplib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Any

from anymail.exceptions import AnymailRecipientsRefused
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template import Context, Engine, Template, TemplateSyntaxError
from django.template.base import FilterExpression, Node, VariableNode
from django.template.defaulttags import ForNode, IfNode, TemplateLiteral, WithNode
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.utils.html import urlize

from ops.models import MessageTemplate, Notification
from ops.templates_registry import (
    DM,
    EMAIL,
    MessageKind,
    get_kind,
    sample_context,
)

# A row in "sending" longer than this belongs to a worker that died mid-send.
SENDING_TIMEOUT = timedelta(minutes=10)
# A pending row older than this lost its immediate task (broker down, process killed).
LOST_TASK_AFTER = timedelta(minutes=2)
# Context values that grant access; masked in the admin and wiped once delivered.
SENSITIVE_VARIABLES = frozenset({"link"})
SENSITIVE_KINDS = frozenset({"magic_link", "password_reset"})


class DeliveryError(Exception):
    """A send failed. ``permanent`` means retrying cannot help (closed DMs, refused address)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Undeliverable(DeliveryError):
    """The recipient cannot receive this message (DMs closed, address refused): no retry."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    text: str
    html: str


@cache
def engine() -> Engine:
    return Engine(dirs=[str(settings.BASE_DIR / "templates")], autoescape=False)


def compile_template(source: str) -> Template:
    """Compile an edited template; raises TemplateSyntaxError with Django's message."""
    return engine().from_string(source)


# --- variables ------------------------------------------------------------------------


def _expression_names(expression: FilterExpression) -> set[str]:
    names: set[str] = set()
    variables = [expression.var] + [arg for _, args in expression.filters for _, arg in args]
    for variable in variables:
        lookups = getattr(variable, "lookups", None)
        if lookups:
            names.add(lookups[0])
    return names


def _condition_names(condition: Any) -> set[str]:
    if isinstance(condition, TemplateLiteral):
        return _expression_names(condition.value)
    names: set[str] = set()
    for part in (getattr(condition, "first", None), getattr(condition, "second", None)):
        if part is not None:
            names |= _condition_names(part)
    return names


def _node_names(node: Node, used: set[str], defined: set[str]) -> None:
    if isinstance(node, VariableNode):
        used |= _expression_names(node.filter_expression)
    elif isinstance(node, IfNode):
        for condition, _ in node.conditions_nodelists:
            if condition is not None:
                used |= _condition_names(condition)
    elif isinstance(node, ForNode):
        used |= _expression_names(node.sequence)
        defined.update(node.loopvars)
        defined.add("forloop")
    elif isinstance(node, WithNode):
        for expression in node.extra_context.values():
            used |= _expression_names(expression)
        defined.update(node.extra_context)
    for attr in node.child_nodelists:
        for child in getattr(node, attr, None) or ():
            _node_names(child, used, defined)


def template_variables(source: str) -> set[str]:
    """Top-level variable names a template reads, found with Django's own parser."""
    used: set[str] = set()
    defined: set[str] = set()
    for node in compile_template(source).nodelist:
        _node_names(node, used, defined)
    return used - defined


def unknown_variables(kind: str, *sources: str) -> list[str]:
    """Variables used in ``sources`` that the kind does not provide (they would render empty)."""
    known = get_kind(kind).all_variables
    used: set[str] = set()
    for source in sources:
        used |= template_variables(source)
    return sorted(used - set(known))


# --- rendering ------------------------------------------------------------------------


def _link(name: str, fallback: str) -> str:
    """Absolute link to a named page; the fallback path keeps rendering alive if the page's
    name changes (the link test catches that)."""
    try:
        path = reverse(name)
    except Exception:  # noqa: BLE001 — NoReverseMatch or an import error in a urls module
        path = fallback
    return f"{settings.APP_URL}{path}"


def base_context(member: Any = None, channel: str = DM) -> dict[str, Any]:
    context: dict[str, Any] = {
        "community_name": settings.COMMUNITY_NAME,
        "app_url": settings.APP_URL,
        "member_name": "",
        "team_name": "",
        "dashboard_link": _link("billing:dashboard", "/dashboard/"),
        "portal_link": _link("billing:billing", "/billing/"),
        "claim_link": _link("discordsync:claim_start", "/claim/"),
        "login_link": _link("members:login", "/login/"),
        "team_link": _link("billing:team", "/team/"),
        "support_email": settings.EMAIL_REPLY_TO,
        "introductions_channel": _channel_mention(
            channel, settings.DISCORD_INTRODUCTIONS_CHANNEL_ID, "#introductions"
        ),
        "billing_support_channel": _channel_mention(
            channel, settings.DISCORD_BILLING_SUPPORT_CHANNEL_ID, "#billing-support"
        ),
        "expires_minutes": settings.SESAME_MAX_AGE // 60,
        "min_length": settings.INTRODUCTION_MIN_LENGTH,
    }
    if member is not None:
        email = member.user.email or ""
        context["member_name"] = member.discord_username or email.split("@")[0]
        context["team_name"] = member.team.name if member.team_id else ""
    return context


def _channel_mention(channel: str, channel_id: str, name: str) -> str:
    """A clickable mention inside Discord; an email client would show ``<#id>`` literally."""
    return f"<#{channel_id}>" if channel_id and channel != EMAIL else name


def _parse_dates(context: dict[str, Any]) -> dict[str, Any]:
    """``*_at`` values arrive as ISO strings (the context is JSON); templates get datetimes."""
    parsed = dict(context)
    for key, value in context.items():
        if key.endswith("_at") and isinstance(value, str):
            try:
                parsed[key] = parse_datetime(value) or value
            except ValueError:
                parsed[key] = value
    return parsed


def template_sources(kind: MessageKind) -> tuple[str, str]:
    """(subject, body) source: the admin edit if there is one, else the default files."""
    edit = MessageTemplate.objects.filter(kind=kind.kind).first()
    if edit is not None:
        return edit.subject, edit.body
    return default_sources(kind)


def default_sources(kind: MessageKind) -> tuple[str, str]:
    loader = engine()
    return (
        loader.get_template(kind.subject_template).source,
        loader.get_template(kind.body_template).source,
    )


def text_to_html(text: str) -> str:
    """A simple HTML part: escaped paragraphs with clickable links."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    body = "".join(
        "<p>" + urlize(p, autoescape=True).replace("\n", "<br>\n") + "</p>\n" for p in paragraphs
    )
    return (
        '<!doctype html>\n<html><body style="font-family: sans-serif; line-height: 1.5; '
        f'max-width: 40em;">\n{body}</body></html>\n'
    )


def render_sources(subject: str, body: str, context: dict[str, Any]) -> RenderedMessage:
    ctx = Context(_parse_dates(context), autoescape=False)
    rendered_subject = " ".join(compile_template(subject).render(ctx).split())
    text = compile_template(body).render(ctx).strip() + "\n"
    text = re.sub(r"\n{3,}", "\n\n", text)
    return RenderedMessage(subject=rendered_subject, text=text, html=text_to_html(text))


def render_message(
    kind: str, context: dict[str, Any] | None = None, member: Any = None, channel: str = EMAIL
) -> RenderedMessage:
    """Render a kind with the common variables, the member's details and ``context``."""
    message_kind = get_kind(kind)
    subject, body = template_sources(message_kind)
    return render_sources(subject, body, {**base_context(member, channel), **(context or {})})


def render_preview(kind: str, subject: str, body: str, channel: str = "") -> RenderedMessage:
    """Render ``subject``/``body`` as ``kind`` with the sample context (admin preview)."""
    channel = channel or get_kind(kind).channels[0]
    return render_sources(subject, body, {**base_context(None, channel), **sample_context(kind)})


# --- channels -------------------------------------------------------------------------
#
# The outbox knows channels only by name. Each channel's sender is registered by the app that
# owns the transport: email here, Discord DMs and the admin channel by ``discordsync`` in its
# ``AppConfig.ready()`` (the same shape as the health check registry).

Sender = Callable[[str, RenderedMessage], None]
SENDERS: dict[str, Sender] = {}


def register_channel(channel: str) -> Callable[[Sender], Sender]:
    """Register the function that delivers a rendered message to a recipient of ``channel``;
    it raises DeliveryError (Undeliverable when retrying cannot help)."""

    def decorator(sender: Sender) -> Sender:
        SENDERS[channel] = sender
        return sender

    return decorator


def redact(message: str) -> str:
    """Strip configured secrets from an error message before it is stored or logged."""
    for name in ("DISCORD_BOT_TOKEN", "RESEND_API_KEY", "STRIPE_SECRET_KEY", "EMAIL_HOST_PASSWORD"):
        secret = getattr(settings, name, "")
        if secret and len(secret) >= 6:
            message = message.replace(secret, "[redacted]")
    return message[:1000]


@register_channel(EMAIL)
def send_email(recipient: str, message: RenderedMessage) -> None:
    email = EmailMultiAlternatives(
        subject=message.subject,
        body=message.text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[recipient],
        reply_to=[settings.EMAIL_REPLY_TO] if settings.EMAIL_REPLY_TO else None,
    )
    email.attach_alternative(message.html, "text/html")
    try:
        email.send(fail_silently=False)
    except (smtplib.SMTPRecipientsRefused, AnymailRecipientsRefused) as exc:
        raise Undeliverable(f"address refused: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 — any provider error is retried with backoff
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc


def send(notification: Notification) -> None:
    """Render and send one outbox row; raises DeliveryError."""
    kind = get_kind(notification.kind)
    if notification.channel not in kind.channels:
        raise DeliveryError(
            f"kind {kind.kind} is not sent by {notification.channel}", permanent=True
        )
    sender = SENDERS.get(notification.channel)
    if sender is None:
        raise DeliveryError(f"unknown channel {notification.channel}", permanent=True)
    try:
        message = render_message(
            kind.kind, notification.context, notification.member, notification.channel
        )
    except TemplateSyntaxError as exc:
        raise DeliveryError(f"template error: {exc}", permanent=True) from exc
    sender(notification.recipient, message)


def masked_context(notification: Notification, *, superuser: bool) -> dict[str, Any]:
    """The context as staff may see it. Login and reset links are hidden from everyone (they
    sign in as the member); every other access link (a seat invite) only superusers see."""

    def hidden(key: str) -> bool:
        return key in SENSITIVE_VARIABLES and (
            notification.kind in SENSITIVE_KINDS or not superuser
        )

    return {key: "••••" if hidden(key) else v for key, v in (notification.context or {}).items()}
