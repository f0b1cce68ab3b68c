"""``manage.py sandbox``: serve the fake Stripe and fake Discord for a local run.

Both fakes run in this one process (one asyncio loop) on the ports the sandbox settings point
at; the fake Stripe delivers signed webhooks to this gateway's ``/stripe/webhook/``. The demo
catalogue (monthly and yearly prices, and the promotion code ``WELCOME20``) is mirrored into
dj-stripe so the landing page shows real prices; the plans imported from the price settings
sell the monthly ones, and staff add the yearly ones in the admin (the README walkthrough).
SIGTERM or Ctrl+C stops both servers cleanly.
"""

from __future__ import annotations

import asyncio
import signal
import threading

import structlog
from aiohttp import web
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from billing.catalogue import CatalogueError, prices_sync
from billing.stripe_client import configure_stripe
from fakes.discord.app import create_app as create_discord_app
from fakes.discord.seed import Seed
from fakes.discord.state import FakeDiscordState
from fakes.stripe.app import build_app as build_stripe_app
from fakes.stripe.catalogue import DEMO_PROMOTION
from fakes.stripe.state import StripeState
from fakes.stripe.webhooks import DeliveryOptions, WebhookDispatcher, WebhookEndpoint

log = structlog.get_logger(__name__)


class Command(BaseCommand):
    help = "Run the fake Stripe and fake Discord servers with demo data (sandbox mode)."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument(
            "--auto-consent",
            action="store_true",
            help="Discord OAuth consents as the first demo user instead of asking who you are",
        )

    def handle(self, *args: object, **options: object) -> None:
        if not (settings.SANDBOX or settings.DISCORD_SANDBOX):
            raise CommandError("Stripe and Discord credentials are configured: not a sandbox.")
        asyncio.run(self.serve(auto_consent=bool(options["auto_consent"])))

    async def serve(self, *, auto_consent: bool) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)

        runners: list[web.AppRunner] = []
        if settings.SANDBOX:
            port = settings.SANDBOX_STRIPE_PORT
            state = StripeState(public_url=f"http://127.0.0.1:{port}")
            state.seed_promotion(DEMO_PROMOTION)  # before the dispatcher: no webhooks for it
            dispatcher = WebhookDispatcher(
                state,
                [
                    WebhookEndpoint(
                        f"{settings.APP_URL}/stripe/webhook/", settings.STRIPE_WEBHOOK_SECRET
                    )
                ],
                # The gateway may still be starting: keep retrying like Stripe would.
                DeliveryOptions(attempts=8, backoff=1.0),
            )
            runners.append(await self.start(build_stripe_app(state, dispatcher), port))
            log.info("sandbox_stripe_listening", url=f"http://127.0.0.1:{port}/")
            threading.Thread(target=self.mirror_catalogue, daemon=True).start()
        if settings.DISCORD_SANDBOX:
            seed = Seed() if auto_consent else Seed().replace(oauth_current_user=None)
            port = settings.SANDBOX_DISCORD_PORT
            runners.append(await self.start(create_discord_app(FakeDiscordState(seed)), port))
            log.info("sandbox_discord_listening", url=f"http://127.0.0.1:{port}/")

        await stop.wait()
        log.info("sandbox_stopping")
        for runner in reversed(runners):
            await runner.cleanup()

    @staticmethod
    async def start(app: web.Application, port: int) -> web.AppRunner:
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    @staticmethod
    def mirror_catalogue() -> None:
        """Mirror the fake's prices into dj-stripe (what staff do with "Sync prices from
        Stripe"), so the pages show amounts from the start."""
        configure_stripe()
        try:
            prices_sync(actor=None)
        except CatalogueError as exc:  # the demo still works without amounts on the pages
            log.warning("sandbox_price_sync_failed", error=str(exc))
