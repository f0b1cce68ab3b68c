from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from djstripe.models import APIKey, WebhookEndpoint

from billing.drain import mode_mismatch_reason, replay_request
from billing.models import Dispute, FailureEpisode, StripeEventInbox
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
