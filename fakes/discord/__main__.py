"""`python -m fakes.discord --port 12112 [--seed-file world.json]`: serve the fake Discord.

Prints the DISCORD_* settings that point the project at it, then serves until SIGINT or
SIGTERM (aiohttp's `run_app` turns both into a graceful shutdown).
"""

from __future__ import annotations

import argparse
import logging

from aiohttp import web

from ..latency import Latency, add_arguments
from .app import create_app
from .seed import Seed
from .state import FakeDiscordState


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fakes.discord", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12112)
    parser.add_argument("--seed-file", help="JSON object of Seed fields overriding the defaults")
    parser.add_argument(
        "--heartbeat-ms", type=int, help="gateway heartbeat interval (default 41250)"
    )
    parser.add_argument(
        "--oauth-chooser",
        action="store_true",
        help="show a 'who are you?' page on /oauth2/authorize instead of auto-consenting",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)

    seed = Seed.from_file(args.seed_file) if args.seed_file else Seed()
    if args.heartbeat_ms:
        seed = seed.replace(heartbeat_interval_ms=args.heartbeat_ms)
    if args.oauth_chooser:
        seed = seed.replace(oauth_current_user=None)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s fake-discord %(message)s")
    base_url = f"http://{args.host}:{args.port}"
    print(f"Fake Discord on {base_url}/ (sandbox page); settings for the project:", flush=True)
    for name, value in seed.settings(base_url).items():
        print(f"  {name}={value}", flush=True)
    app = create_app(FakeDiscordState(seed), Latency(args.latency_ms, args.latency_jitter_ms))
    web.run_app(app, host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
