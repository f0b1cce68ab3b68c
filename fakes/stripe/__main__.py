"""``python -m fakes.stripe``: run the fake Stripe server in the foreground.

    python -m fakes.stripe --port 12111 \\
        --webhook-url http://127.0.0.1:8000/stripe/webhook/ --webhook-secret whsec_sandbox

Stops cleanly on SIGTERM / Ctrl-C (aiohttp's ``run_app`` handles both).
"""

from __future__ import annotations

import argparse
import logging
import sys

from aiohttp import web

from ..latency import Latency, add_arguments
from .app import build_app
from .catalogue import DEMO_PROMOTION, load_catalogue
from .state import StripeState
from .webhooks import DeliveryOptions, WebhookDispatcher, WebhookEndpoint


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m fakes.stripe",
        description="A fake Stripe API server with hosted Checkout, portal and signed webhooks.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument(
        "--public-url",
        help="base URL browsers use to reach this server (default http://HOST:PORT)",
    )
    parser.add_argument(
        "--webhook-url", action="append", default=[], help="where to POST events (repeatable)"
    )
    parser.add_argument("--webhook-secret", default="whsec_sandbox", help="signing secret")
    parser.add_argument(
        "--seed-file",
        help="JSON catalogue of products and prices (replaces the demo one and its promotion code)",
    )
    parser.add_argument(
        "--api-key",
        action="append",
        default=[],
        help="accept only these keys (default: any sk_test_/sk_live_ key)",
    )
    parser.add_argument("--webhook-attempts", type=int, default=3)
    parser.add_argument("--webhook-backoff", type=float, default=0.5)
    add_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s fake-stripe %(message)s")
    catalogue = load_catalogue(args.seed_file) if args.seed_file else None
    public_url = args.public_url or f"http://{args.host}:{args.port}"
    state = StripeState(catalogue=catalogue, public_url=public_url)
    if catalogue is None:
        state.seed_promotion(DEMO_PROMOTION)  # before the dispatcher: no webhooks for it
    dispatcher = WebhookDispatcher(
        state,
        [WebhookEndpoint(url, args.webhook_secret) for url in args.webhook_url],
        DeliveryOptions(attempts=args.webhook_attempts, backoff=args.webhook_backoff),
    )
    app = build_app(
        state,
        dispatcher,
        api_keys=frozenset(args.api_key),
        latency=Latency(args.latency_ms, args.latency_jitter_ms),
    )
    print(f"fake Stripe listening on {public_url} (dashboard at {public_url}/)", flush=True)
    web.run_app(app, host=args.host, port=args.port, print=None, shutdown_timeout=5.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
