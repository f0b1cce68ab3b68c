from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_POST
from djstripe.models import APIKey, WebhookEndpoint

from billing.catalogue import (
    CatalogueError,
    plan_prices_problems,
    price_choices,
    prices_mirrored,
    prices_sync,
)
from billing.drain import mode_mismatch_reason, replay_request
from billing.models import Dispute, FailureEpisode, Plan, PlanPrice, StripeEventInbox
from ops.admin_guard import GuardedModelAdmin, ReadOnlyAdmin, mask_secret
from ops.models import AuditAction
from ops.services import audit_actor, audit_record


@admin.register(StripeEventInbox)
class StripeEventInboxAdmin(GuardedModelAdmin):
    list_display = ("event_id", "type", "status", "attempts", "received_at", "processed_at")
    list_filter = ("status", "type", "livemode")
    search_fields = ("event_id", "object_id")
    date_hierarchy = "received_at"
    actions = ["reprocess"]
    readonly_fields = [field.name for field in StripeEventInbox._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.action(description="Reprocess the selected Stripe events", permissions=["change"])
    def reprocess(self, request: HttpRequest, queryset: QuerySet[StripeEventInbox]) -> None:
        # An event stored as from the other Stripe mode (a live event at a test gateway, or the
        # reverse) is never applied: it describes objects this gateway does not bill.
        ignored = queryset.filter(status=StripeEventInbox.Status.IGNORED)
        if ignored.exists():
            self.message_user(
                request,
                f"{ignored.count()} event(s) not reprocessed: {mode_mismatch_reason()}.",
                messages.ERROR,
            )
        rows = list(queryset.exclude(status=StripeEventInbox.Status.IGNORED).only("pk", "event_id"))
        for row in rows:
            audit_record(
                **audit_actor(request.user),
                action=AuditAction.STRIPE_EVENT_REPROCESS_REQUESTED,
                target=row,
                details={"event_id": row.event_id},
            )
        # Through the worker, like every other delivery (same claim, same retries), in the
        # people lane: a staff member waits for it.
        queued = replay_request([row.pk for row in rows])
        if queued:
            self.message_user(
                request, f"{queued} event(s) queued for reprocessing.", messages.SUCCESS
            )
        if len(rows) > queued:
            self.message_user(
                request,
                f"{len(rows) - queued} event(s) are being processed right now; "
                "try again in a moment.",
                messages.WARNING,
            )


@admin.register(FailureEpisode)
class FailureEpisodeAdmin(GuardedModelAdmin):
    list_display = (
        "subscription_id",
        "member",
        "team",
        "opened_at",
        "grace_ends_at",
        "debtor_at",
        "closed_at",
        "close_reason",
    )
    list_filter = ("close_reason",)
    search_fields = ("subscription_id", "invoice_id")
    raw_id_fields = ("member", "team")


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyAdmin):
    """Chargebacks as Stripe last reported them; answered in Stripe, never edited here."""

    list_display = (
        "dispute_id",
        "subscription_id",
        "status",
        "outcome",
        "amount",
        "currency",
        "reason",
        "opened_at",
        "closed_at",
    )
    list_filter = ("status", "outcome")
    search_fields = ("dispute_id", "subscription_id", "charge_id", "invoice_id")
    readonly_fields = [field.name for field in Dispute._meta.fields]


# --- the plan catalogue -------------------------------------------------------------------


class PlanPriceForm(forms.ModelForm):
    """A plan's price, picked from the prices dj-stripe mirrored (never typed by hand)."""

    stripe_price_id = forms.ChoiceField(label="Stripe price")

    class Meta:
        model = PlanPrice
        fields = ("role", "stripe_price_id", "active")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        keep = [self.instance.stripe_price_id] if self.instance.stripe_price_id else []
        self.fields["stripe_price_id"].choices = [("", "---------"), *price_choices(keep=keep)]
        # A tabular row has column headings, not labels: name each input for screen readers.
        of = f"price {self.instance.stripe_price_id}" if keep else "the new price"
        for field in self.fields.values():
            field.widget.attrs["aria-label"] = f"{field.label} of {of}"


class PlanListForm(forms.ModelForm):
    """A row of the Plans list: its editable order and visibility, named after the plan."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.widget.attrs["aria-label"] = f"{field.label} of {self.instance.name}"


class PlanPriceFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        rows = [
            (
                form.cleaned_data["role"],
                form.cleaned_data["stripe_price_id"],
                form.cleaned_data["active"],
            )
            for form in self.forms
            if form.cleaned_data
            and not form.cleaned_data.get("DELETE")
            and form.cleaned_data.get("stripe_price_id")
        ]
        problems = plan_prices_problems(self.instance.kind, rows)
        if problems:
            raise ValidationError(problems)


class PlanPriceInline(admin.TabularInline):
    model = PlanPrice
    form = PlanPriceForm
    formset = PlanPriceFormSet
    extra = 1
    # Subscriptions keep billing a price after it is taken off sale, and their seats are counted
    # by its role: deactivate a price instead of deleting it.
    can_delete = False
    readonly_fields = ("amount",)
    fields = ("role", "stripe_price_id", "amount", "active")

    @admin.display(description="Amount")
    def amount(self, obj: PlanPrice) -> str:
        if not obj.stripe_price_id:
            return ""  # the empty row for a new price
        facts = prices_mirrored([obj.stripe_price_id]).get(obj.stripe_price_id)
        return facts.label if facts else "not synced from Stripe yet"


@admin.register(Plan)
class PlanAdmin(GuardedModelAdmin):
    """The catalogue the site sells; prices come from Stripe ("Sync prices from Stripe")."""

    change_list_template = "admin/billing/plan/change_list.html"
    list_display = ("name", "kind", "order", "visible", "trial_days", "allow_promotion_codes")
    list_editable = ("order", "visible")
    list_filter = ("kind", "visible")
    inlines = [PlanPriceInline]

    def get_changelist_form(self, request: HttpRequest, **kwargs: Any) -> type[forms.ModelForm]:
        return super().get_changelist_form(request, form=PlanListForm, **kwargs)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Hide a plan instead: its prices still tell which seats its subscribers pay for.
        return False

    def get_urls(self) -> list:
        view = self.admin_site.admin_view(self.sync_prices_view)
        return [
            path("sync-prices/", view, name="billing_plan_sync_prices"),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        extra = {**(extra_context or {}), "can_sync": self.has_change_permission(request)}
        return super().changelist_view(request, extra)

    @method_decorator(require_POST)
    def sync_prices_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_change_permission(request):
            raise PermissionDenied
        try:
            count = prices_sync(actor=request.user)
        except CatalogueError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, f"{count} price(s) synced from Stripe.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:billing_plan_changelist"))


# --- dj-stripe's key and endpoint tables, read-only and masked --------------------------------
# dj-stripe's own admins let a superuser add keys (a secret stored in the database) and create
# endpoints pointing at its /stripe/webhook/<uuid>/ route, which this gateway does not mount.
# The Stripe key comes from STRIPE_SECRET_KEY and the one webhook endpoint is configured in
# the Stripe Dashboard (docs/DEPLOYMENT.md), so these pages only show what is there.
admin.site.unregister(APIKey)
admin.site.unregister(WebhookEndpoint)


@admin.register(APIKey)
class StripeAPIKeyAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "type", "livemode", "key_hint")
    search_fields = ("name",)
    fields = ("name", "type", "livemode", "key_hint", "djstripe_owner_account")
    readonly_fields = fields

    @admin.display(description="Key")
    def key_hint(self, obj: APIKey) -> str:
        return mask_secret(obj.secret)

    def get_queryset(self, request: HttpRequest) -> QuerySet[APIKey]:
        return super().get_queryset(request).select_related("djstripe_owner_account")


@admin.register(WebhookEndpoint)
class StripeWebhookEndpointAdmin(ReadOnlyAdmin):
    list_display = ("id", "url", "livemode", "status", "signing_key_hint")
    search_fields = ("id", "url")
    fields = ("id", "url", "livemode", "status", "enabled_events", "signing_key_hint")
    readonly_fields = fields

    @admin.display(description="Signing secret")
    def signing_key_hint(self, obj: WebhookEndpoint) -> str:
        return mask_secret(obj.secret)
