"""Staff views of the outbox, the message templates and the audit log.

The outbox and the audit log are read-only: history is evidence. The only outbox write is
"retry now", which goes through a service and is audited like template edits and resets.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template import TemplateSyntaxError
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from ops import notifications
from ops.admin_guard import GuardedModelAdmin, ReadOnlyAdmin
from ops.flags import KNOWN_FLAGS, flag_set
from ops.models import (
    AuditAction,
    AuditLog,
    FeatureFlag,
    GatewayConfig,
    Heartbeat,
    MessageTemplate,
    Notification,
)
from ops.services import (
    audit_actor,
    audit_record,
    message_template_reset,
    message_template_save,
    notification_retry_now,
)
from ops.templates_registry import KINDS, UnknownKindError, get_kind


def _unreadable_template_says_why(
    column: Callable[[Any, MessageTemplate], str],
) -> Callable[[Any, MessageTemplate], str]:
    """A column computed from a stored template shows why the template cannot be read (an
    unknown kind, a syntax error) instead of failing the page."""

    @functools.wraps(column)
    def shown(admin_: Any, obj: MessageTemplate) -> str:
        try:
            return column(admin_, obj)
        except (UnknownKindError, TemplateSyntaxError) as exc:
            return str(exc)

    return shown


def _kind_choices() -> list[tuple[str, list[tuple[str, str]]]]:
    groups: dict[str, list[tuple[str, str]]] = {}
    for kind in KINDS.values():
        groups.setdefault(kind.group, []).append((kind.kind, f"{kind.kind} — {kind.description}"))
    return list(groups.items())


class MessageTemplateForm(forms.ModelForm):
    kind = forms.ChoiceField(choices=_kind_choices)

    class Meta:
        model = MessageTemplate
        fields = ["kind", "subject", "body"]
        widgets = {"body": forms.Textarea(attrs={"rows": 18, "cols": 100})}

    def _compiled(self, field: str) -> str:
        source = self.cleaned_data.get(field, "")
        try:
            notifications.compile_template(source)
        except TemplateSyntaxError as exc:
            raise forms.ValidationError(f"Template error: {exc}") from exc
        return source

    def clean_subject(self) -> str:
        return self._compiled("subject")

    def clean_body(self) -> str:
        return self._compiled("body")


@admin.register(MessageTemplate)
class MessageTemplateAdmin(GuardedModelAdmin):
    """Edits of message wording. No row for a kind means the default file is used."""

    form = MessageTemplateForm
    change_list_template = "admin/ops/messagetemplate/change_list.html"
    list_display = ["kind", "channels", "subject", "unknown_variables_flag", "updated_at"]
    list_display_links = ["kind"]
    search_fields = ["kind", "subject", "body"]
    actions = ["reset_to_default"]
    readonly_fields = ["available_variables", "preview", "updated_by", "updated_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = list(self.readonly_fields)
        return ["kind", *fields] if obj else fields

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return ["kind", "subject", "body"]
        return ["kind", "subject", "body", "available_variables", "preview", "updated_by"]

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        # Deleting an edit *is* the reset; one audited path for it.
        actions.pop("delete_selected", None)
        return actions

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, str]:
        initial = super().get_changeform_initial_data(request)
        kind = request.GET.get("kind", "")
        if kind in KINDS:
            subject, body = notifications.default_sources(KINDS[kind])
            initial.update(kind=kind, subject=subject.strip(), body=body)
        return initial

    def save_model(self, request: HttpRequest, obj: MessageTemplate, form: Any, change: bool):
        template, unknown = message_template_save(
            kind=obj.kind, subject=obj.subject, body=obj.body, actor=request.user
        )
        obj.pk = template.pk
        if unknown:
            messages.warning(
                request,
                f"These variables are not provided for {obj.kind} and will render empty: "
                f"{', '.join(unknown)}.",
            )

    def delete_model(self, request: HttpRequest, obj: MessageTemplate) -> None:
        message_template_reset(template=obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for template in queryset:
            message_template_reset(template=template, actor=request.user)

    @admin.action(description="Reset selected messages to the default wording")
    def reset_to_default(self, request: HttpRequest, queryset: QuerySet) -> None:
        if not self.has_delete_permission(request):
            raise Http404
        kinds = [template.kind for template in queryset]
        self.delete_queryset(request, queryset)
        self.message_user(request, f"Reset to default: {', '.join(kinds)}.", messages.SUCCESS)

    @admin.display(description="Channels")
    def channels(self, obj: MessageTemplate) -> str:
        kind = KINDS.get(obj.kind)
        return ", ".join(kind.channels) if kind else "unknown kind"

    @admin.display(description="Unknown variables")
    @_unreadable_template_says_why
    def unknown_variables_flag(self, obj: MessageTemplate) -> str:
        unknown = notifications.unknown_variables(obj.kind, obj.subject, obj.body)
        return ", ".join(unknown) or "—"

    @admin.display(description="Variables this message provides")
    def available_variables(self, obj: MessageTemplate) -> str:
        kind = KINDS.get(obj.kind)
        if kind is None:
            return "—"
        unknown = self.unknown_variables_flag(obj)
        rows = format_html_join(
            "\n", "<li><code>{}</code>: {}</li>", sorted(kind.all_variables.items())
        )
        return format_html(
            "<p><strong>Unknown variables used here:</strong> {}</p><ul>{}</ul>", unknown, rows
        )

    @admin.display(description="Preview (sample values)")
    @_unreadable_template_says_why
    def preview(self, obj: MessageTemplate) -> str:
        rendered = notifications.render_preview(obj.kind, obj.subject, obj.body)
        return format_html(
            "<p><strong>Subject:</strong> {}</p><pre>{}</pre>", rendered.subject, rendered.text
        )

    def get_urls(self) -> list:
        preview = self.admin_site.admin_view(self.preview_view)
        return [
            path("preview/<str:kind>/", preview, name="ops_messagetemplate_preview"),
            *super().get_urls(),
        ]

    def preview_view(self, request: HttpRequest, kind: str) -> HttpResponse:
        """The message as it goes out now (the edit, else the default) with sample values."""
        if not self.has_view_permission(request):
            raise Http404
        try:
            message_kind = get_kind(kind)
        except UnknownKindError as exc:
            raise Http404(str(exc)) from exc
        subject, body = notifications.template_sources(message_kind)
        rendered = notifications.render_preview(kind, subject, body)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Preview: {kind}",
            "kind": message_kind,
            "rendered": rendered,
            "edited": MessageTemplate.objects.filter(kind=kind).exists(),
            "unknown": notifications.unknown_variables(kind, subject, body),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/ops/messagetemplate/preview.html", context)

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        edits = {t.kind: t for t in MessageTemplate.objects.all()}
        catalogue = [
            {
                "kind": kind,
                "edit": edits.get(kind.kind),
                "preview_url": reverse("admin:ops_messagetemplate_preview", args=[kind.kind]),
                "customise_url": reverse("admin:ops_messagetemplate_add") + f"?kind={kind.kind}",
            }
            for kind in KINDS.values()
        ]
        return super().changelist_view(request, {**(extra_context or {}), "catalogue": catalogue})


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    """The outbox, read-only; "retry now" asks for another attempt of failed messages."""

    list_display = [
        "created_at",
        "kind",
        "channel",
        "recipient",
        "status",
        "attempts",
        "retry_state",
        "sent_at",
        "short_error",
    ]
    list_filter = ["status", "channel", "kind"]
    search_fields = ["recipient", "episode", "kind"]
    date_hierarchy = "created_at"
    actions = ["retry_now"]
    fields = [
        "kind",
        "channel",
        "recipient",
        "episode",
        "member",
        "status",
        "attempts",
        "next_attempt_at",
        "sent_at",
        "created_at",
        "last_error",
        "visible_context",
    ]
    readonly_fields = fields

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("ops.change_notification")

    @admin.display(description="Retry")
    def retry_state(self, obj: Notification) -> str:
        if obj.status == Notification.Status.FAILED:
            if obj.next_attempt_at is None:
                return "gave up"
            return f"next at {obj.next_attempt_at:%Y-%m-%d %H:%M}"
        return "—"

    @admin.display(description="Last error")
    def short_error(self, obj: Notification) -> str:
        return obj.last_error[:80]

    def get_object(self, request: HttpRequest, object_id: str, from_field: Any = None):
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            # Read by ``visible_context``, which is not given the request.
            obj.shown_to_superuser = request.user.is_superuser
        return obj

    @admin.display(description="Context")
    def visible_context(self, obj: Notification) -> str:
        superuser = getattr(obj, "shown_to_superuser", False)
        masked = notifications.masked_context(obj, superuser=superuser)
        return format_html("<pre>{}</pre>", json.dumps(masked, indent=2, sort_keys=True))

    @admin.action(description="Retry now", permissions=["retry"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        rows = list(queryset)
        retried = [n for n in rows if notification_retry_now(notification=n, actor=request.user)]
        skipped = len(rows) - len(retried)
        self.message_user(request, f"Queued {len(retried)} message(s) for another attempt.")
        if skipped:
            self.message_user(
                request,
                f"{skipped} message(s) skipped: only failed or undeliverable ones are retried.",
                messages.WARNING,
            )


class TargetTypeFilter(admin.SimpleListFilter):
    """Filter by what an entry is about; entries about no object (a catalogue sync, an export)
    get a name of their own instead of an empty link."""

    title = "target type"
    parameter_name = "target_type"
    NONE = "-"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        kinds = (
            model_admin.get_queryset(request)
            .order_by("target_type")
            .values_list("target_type", flat=True)
            .distinct()
        )
        return [(kind or self.NONE, kind or "(no target)") for kind in kinds]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        return queryset.filter(target_type="" if value == self.NONE else value)


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    """Who did what, to which object, and why. Never edited, never deleted from here."""

    list_display = [
        "created_at",
        "actor_type",
        "actor_label",
        "action",
        "target_type",
        "target_id",
        "reason",
    ]
    list_filter = ["actor_type", "action", TargetTypeFilter]
    search_fields = ["action", "target_id", "actor_label", "reason", "request_id"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "created_at",
        "actor_type",
        "actor_id",
        "actor_label",
        "action",
        "target_type",
        "target_id",
        "details",
        "reason",
        "request_id",
    ]


class FeatureFlagForm(forms.ModelForm):
    key = forms.ChoiceField(choices=[(key, key) for key in KNOWN_FLAGS])

    class Meta:
        model = FeatureFlag
        fields = ["key", "enabled"]


@admin.register(FeatureFlag)
class FeatureFlagAdmin(GuardedModelAdmin):
    """Only flags the code reads can exist; a flag without a row uses its default."""

    form = FeatureFlagForm
    list_display = ["key", "enabled", "default", "consumer", "updated_at"]
    readonly_fields = ["default", "consumer", "explanation", "updated_at"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["key", "enabled", "default", "explanation", "consumer", "updated_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["key", *self.readonly_fields] if obj else list(self.readonly_fields)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # switch it off instead; the audit keeps the history

    def save_model(self, request: HttpRequest, obj: FeatureFlag, form: Any, change: bool):
        flag = flag_set(key=obj.key, enabled=obj.enabled, actor=request.user)
        obj.pk = flag.pk

    @admin.display(description="Default (no row)", boolean=True)
    def default(self, obj: FeatureFlag) -> bool | None:
        spec = KNOWN_FLAGS.get(obj.key)
        return spec.default if spec else None

    @admin.display(description="Read by")
    def consumer(self, obj: FeatureFlag) -> str:
        spec = KNOWN_FLAGS.get(obj.key)
        return spec.consumer if spec else "nothing — unknown flag, has no effect"

    @admin.display(description="What it does")
    def explanation(self, obj: FeatureFlag) -> str:
        spec = KNOWN_FLAGS.get(obj.key)
        return spec.description if spec else "—"


@admin.register(GatewayConfig)
class GatewayConfigAdmin(GuardedModelAdmin):
    """The one row of database settings: timings, auto-fix and pause. Edits are audited."""

    readonly_fields = ["updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        config = GatewayConfig.load()
        return HttpResponseRedirect(reverse("admin:ops_gatewayconfig_change", args=[config.pk]))

    def save_model(self, request: HttpRequest, obj: GatewayConfig, form: Any, change: bool):
        changes = {
            name: {"previous": form.initial.get(name), "new": form.cleaned_data.get(name)}
            for name in form.changed_data
        }
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            if changes:
                audit_record(
                    **audit_actor(request.user),
                    action=AuditAction.GATEWAY_CONFIG_UPDATED,
                    target=obj,
                    details={"changes": changes},
                )


@admin.register(Heartbeat)
class HeartbeatAdmin(GuardedModelAdmin):
    """Signs of life of the worker and the bot, as readiness sees them."""

    list_display = ["name", "beat_at", "age"]
    readonly_fields = ["name", "beat_at", "age", "details"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Age")
    def age(self, obj: Heartbeat) -> str:
        seconds = int((timezone.now() - obj.beat_at).total_seconds())
        return f"{seconds} s"
