"""``make run``: migrate, create a staff login, and run web, worker and bot (plus the fake
Stripe and Discord servers in sandbox mode) until Ctrl+C or SIGTERM.

Each child is started in its own process group and stopped with SIGTERM, so every process
shuts down the same graceful way it does under systemd.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STOP_TIMEOUT = 30


def manage(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "manage.py"), *args]


def staff_login() -> tuple[str, str]:
    """Create (once) and return the sandbox staff login; the password is kept in var/."""
    # Imported here: this launcher runs before Django is configured (``main`` sets it up).
    from django.contrib.auth import get_user_model

    email = os.environ.get("STAFF_EMAIL", "staff@example.org")
    password_file = ROOT / "var" / "staff-password.txt"
    password_file.parent.mkdir(exist_ok=True)
    if not password_file.exists():
        password_file.write_text(secrets.token_urlsafe(12))
        password_file.chmod(0o600)
    password = password_file.read_text().strip()
    user_model = get_user_model()
    user = user_model.objects.filter(email=email).first()
    if user is None:
        user_model.objects.create_superuser(email, password)
    elif not user.check_password(password):
        user.set_password(password)
        user.save(update_fields=["password"])
    return email, password


def stop_all(processes: list[subprocess.Popen[bytes]]) -> int:
    """SIGTERM each process, wait up to STOP_TIMEOUT, kill stragglers; 1 if any was killed."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    exit_code = 0
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            exit_code = 1
    return exit_code


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
    # Imported once the settings module is chosen; settings are read after django.setup().
    import django

    django.setup()
    from django.conf import settings

    print("Preparing the database (the first run takes a minute or two)...", flush=True)
    subprocess.run(manage("migrate", "--noinput", "-v", "0"), check=True, cwd=ROOT)
    subprocess.run(manage("setup_schedules"), check=True, cwd=ROOT)
    email, password = staff_login()

    commands: dict[str, list[str]] = {}
    if settings.SANDBOX or settings.DISCORD_SANDBOX:
        commands["sandbox"] = manage("sandbox")
    commands["web"] = [
        sys.executable,
        "-m",
        "gunicorn",
        "gateway.wsgi",
        "--config",
        str(ROOT / "gunicorn.conf.py"),
    ]
    commands["worker"] = manage("qcluster")
    commands["bot"] = manage("runbot")

    children: dict[str, subprocess.Popen[bytes]] = {}
    for name, command in commands.items():
        children[name] = subprocess.Popen(command, cwd=ROOT, start_new_session=True)
        if name == "sandbox":
            time.sleep(2)  # let the fakes listen before the bot connects to them

    print(
        f"\nMembership Gateway running at {settings.APP_URL}/\n"
        f"  staff login: {email} / {password}  (admin at {settings.APP_URL}/{settings.ADMIN_URL})\n"
        + (
            f"  sandbox: fake Stripe at {settings.STRIPE_API_BASE}/, "
            f"fake Discord at http://127.0.0.1:{settings.SANDBOX_DISCORD_PORT}/\n"
            if "sandbox" in children
            else ""
        )
        + "Press Ctrl+C to stop.\n",
        flush=True,
    )

    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    exit_code = 0
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None:
                print(f"{name} exited with status {child.returncode}; stopping.", flush=True)
                stopping, exit_code = True, 1
        time.sleep(0.5)

    # The fakes go last, so the bot and the worker never see Discord or Stripe vanish.
    fakes = children.pop("sandbox", None)
    exit_code = max(exit_code, stop_all(list(children.values())))
    if fakes is not None:
        exit_code = max(exit_code, stop_all([fakes]))
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
