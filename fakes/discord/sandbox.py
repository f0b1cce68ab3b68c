"""The sandbox page (`GET /`): a person's window into the fake guild.

Shows the guild's members and roles, the DMs the bot sent each user and recent channel
messages, and lets the person post in a channel as a user (MESSAGE_CREATE reaches the bot),
join or leave the guild, and choose who consents on the OAuth page. Plain forms with
post-redirect-get; no scripts at all, so any CSP is satisfied.
"""

from __future__ import annotations

from html import escape
from urllib.parse import urlencode

from aiohttp import web

from .calls import STATE
from .models import CHANNEL_GUILD_TEXT, CHANNEL_PUBLIC_THREAD, DiscordError
from .state import FakeDiscordState

MEMBERS_SHOWN = 200
CSS = """
body { font-family: system-ui, sans-serif; margin: 0; background: #f4f4f6; color: #1e1f22; }
main { max-width: 64rem; margin: 0 auto; padding: 1rem 1.5rem 3rem; }
section { background: #fff; border-radius: 8px; padding: 1rem 1.25rem; margin: 1rem 0; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid #e3e5e8; }
label { display: block; font-weight: 600; margin-top: .5rem; }
textarea, select { width: 100%; font: inherit; padding: .4rem; box-sizing: border-box; }
button { font: inherit; padding: .35rem .9rem; margin-top: .5rem; cursor: pointer; }
.role { display: inline-block; border-radius: 4px; padding: 0 .4rem; margin-right: .25rem;
        background: #e3e5e8; }
.notice { padding: .6rem 1rem; border-radius: 6px; background: #dff5e3; }
.error { padding: .6rem 1rem; border-radius: 6px; background: #fde2e1; }
.message { white-space: pre-wrap; }
ul.choices { list-style: none; padding: 0; }
form.inline { display: inline; }
"""


def _back(**params: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther("/?" + urlencode(params) if params else "/")


def _page(state: FakeDiscordState, notice: str | None, error: str | None) -> str:
    with state.lock:
        roles = state.roles
        text_channels = sorted(
            (c for c in state.channels.values() if c.type == CHANNEL_GUILD_TEXT),
            key=lambda c: c.position,
        )
        threads = [c for c in state.channels.values() if c.type == CHANNEL_PUBLIC_THREAD]
        members = [state.members[str(i)] for i in state._member_ids[:MEMBERS_SHOWN]]
        humans = [m for m in members if not m.user.bot]
        outsiders = [u for u in state.users.values() if not u.bot and u.id not in state.members]
        intro_id = next((c.id for c in text_channels if c.name == "introductions"), None)

        def role_badges(role_ids: list[str]) -> str:
            names = [roles[r].name for r in role_ids if r in roles]
            return "".join(f"<span class='role'>{escape(n)}</span>" for n in names) or "—"

        def name(user_id: str) -> str:
            user = state.users.get(user_id)
            return escape(user.global_name or user.username) if user else escape(user_id)

        parts: list[str] = [
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
            "<meta name='viewport' content='width=device-width, initial-scale=1'>",
            f"<title>Fake Discord — {escape(state.guild_name)}</title>",
            "<link rel='stylesheet' href='/sandbox.css'></head><body><main>",
            f"<h1>Fake Discord: {escape(state.guild_name)}</h1>",
        ]
        if notice:
            parts.append(f"<p class='notice' role='status'>{escape(notice)}</p>")
        if error:
            parts.append(f"<p class='error' role='alert'>{escape(error)}</p>")
        parts.append(
            f"<p>{len(state.members)} members. Bot: {escape(state.bot.username)}, "
            f"connected sessions: {sum(1 for s in state.sessions.values() if s.connected)}.</p>"
        )

        # Post a message as a user
        author_options = "".join(
            f"<option value='{escape(m.user.id)}'>{name(m.user.id)} (@{escape(m.user.username)})"
            "</option>"
            for m in humans
        )
        channel_options = "".join(
            f"<option value='{escape(c.id)}'{' selected' if c.id == intro_id else ''}>#"
            f"{escape(c.name or '')}</option>"
            for c in text_channels
        ) + "".join(
            f"<option value='{escape(t.id)}'>thread: {escape(t.name or '')}</option>"
            for t in threads
        )
        parts.append(
            "<section aria-labelledby='post-heading'>"
            "<h2 id='post-heading'>Post in #introductions as a user</h2>"
            "<form method='post' action='/_sandbox/post'>"
            f"<label for='author'>Post as</label><select id='author' name='author_id' required>"
            f"{author_options}</select>"
            f"<label for='channel'>Channel</label><select id='channel' name='channel_id'>"
            f"{channel_options}</select>"
            "<label for='content'>Message</label>"
            "<textarea id='content' name='content' rows='5' required></textarea>"
            "<button type='submit'>Post message</button></form>"
            "<p>Only guild members can post; join the guild first if the user is missing.</p>"
            "</section>"
        )

        # Members
        rows = "".join(
            f"<tr><th scope='row'>{name(m.user.id)} <small>@{escape(m.user.username)} · "
            f"{escape(m.user.id)}</small></th><td>{role_badges(m.roles)}</td><td>"
            + (
                ""
                if m.user.bot or m.user.id == state.owner_id
                else "<form class='inline' method='post' action='/_sandbox/leave'>"
                f"<input type='hidden' name='user_id' value='{escape(m.user.id)}'>"
                f"<button type='submit' aria-label='{name(m.user.id)} leaves the guild'>"
                "Leave the guild</button></form>"
            )
            + "</td></tr>"
            for m in members
        )
        more = len(state.members) - len(members)
        parts.append(
            "<section aria-labelledby='members-heading'>"
            "<h2 id='members-heading'>Members and their roles</h2>"
            "<table><thead><tr><th scope='col'>Member</th><th scope='col'>Roles</th>"
            f"<th scope='col'>Action</th></tr></thead><tbody>{rows}</tbody></table>"
            + (f"<p>… and {more} more members.</p>" if more > 0 else "")
            + "</section>"
        )

        # Users outside the guild
        outsider_items = "".join(
            f"<li>{name(u.id)} (@{escape(u.username)} · {escape(u.id)}) "
            "<form class='inline' method='post' action='/_sandbox/join'>"
            f"<input type='hidden' name='user_id' value='{escape(u.id)}'>"
            f"<button type='submit' aria-label='{name(u.id)} joins the guild'>"
            "Join the guild</button></form></li>"
            for u in outsiders[:MEMBERS_SHOWN]
        )
        parts.append(
            "<section aria-labelledby='outside-heading'>"
            "<h2 id='outside-heading'>Users not in the guild</h2>"
            f"<ul>{outsider_items or '<li>Everyone is in the guild.</li>'}</ul></section>"
        )

        # OAuth consent
        current = state.oauth_current_user
        consent_options = "<option value=''>Ask on the consent page</option>" + "".join(
            f"<option value='{escape(u.id)}'{' selected' if u.id == current else ''}>"
            f"{name(u.id)} (@{escape(u.username)})</option>"
            for u in state.users.values()
            if not u.bot
        )
        parts.append(
            "<section aria-labelledby='oauth-heading'>"
            "<h2 id='oauth-heading'>“Link Discord” consent</h2>"
            "<form method='post' action='/_sandbox/oauth_user'>"
            "<label for='oauth-user'>Who clicks “Authorize”</label>"
            f"<select id='oauth-user' name='user_id'>{consent_options}</select>"
            "<button type='submit'>Save</button></form></section>"
        )

        # DMs per user
        dm_blocks = []
        for user_id, channel_id in state.dm_channels.items():
            messages = [state.messages[m] for m in state._channel_messages.get(channel_id, [])]
            items = "".join(
                f"<li><time datetime='{escape(msg.timestamp)}'>{escape(msg.timestamp[:19])}"
                f"</time><div class='message'>{escape(msg.content)}</div></li>"
                for msg in reversed(messages[-50:])
            )
            dm_blocks.append(
                f"<h3>To {name(user_id)}</h3><ol reversed>{items or '<li>None yet.</li>'}</ol>"
            )
        parts.append(
            "<section aria-labelledby='dms-heading'>"
            "<h2 id='dms-heading'>Direct messages from the bot</h2>"
            + ("".join(dm_blocks) or "<p>The bot has not sent any DMs.</p>")
            + "</section>"
        )

        # Recent channel messages
        channel_blocks = []
        for channel in [*text_channels, *threads]:
            ids = state._channel_messages.get(channel.id, [])[-20:]
            if not ids:
                continue
            items = "".join(
                f"<li><strong>{name(state.messages[m].author_id)}</strong>"
                + (" (edited)" if state.messages[m].edited_timestamp else "")
                + "".join(
                    f" <span aria-label='reaction'>{escape(emoji)}</span>"
                    for emoji in state.messages[m].reactions
                )
                + f"<div class='message'>{escape(state.messages[m].content)}</div></li>"
                for m in reversed(ids)
            )
            label = f"#{channel.name}" if channel.type == CHANNEL_GUILD_TEXT else channel.name
            channel_blocks.append(f"<h3>{escape(label or '')}</h3><ol reversed>{items}</ol>")
        parts.append(
            "<section aria-labelledby='channels-heading'>"
            "<h2 id='channels-heading'>Recent channel messages</h2>"
            + ("".join(channel_blocks) or "<p>No messages yet.</p>")
            + "</section></main></body></html>"
        )
    return "".join(parts)


async def index(request: web.Request) -> web.Response:
    state = request.app[STATE]
    html = _page(state, request.query.get("notice"), request.query.get("error"))
    return web.Response(text=html, content_type="text/html")


async def stylesheet(request: web.Request) -> web.Response:
    return web.Response(text=CSS, content_type="text/css")


async def post(request: web.Request) -> web.Response:
    state = request.app[STATE]
    form = await request.post()
    try:
        state.post_message(
            str(form.get("channel_id", "")), str(form.get("author_id", "")), str(form["content"])
        )
    except (DiscordError, KeyError) as exc:
        raise _back(error=f"Could not post: {getattr(exc, 'message', exc)}") from None
    raise _back(notice="Message posted; the bot received MESSAGE_CREATE.")


async def join(request: web.Request) -> web.Response:
    state = request.app[STATE]
    form = await request.post()
    try:
        state.add_member(str(form.get("user_id", "")))
    except DiscordError as exc:
        raise _back(error=f"Could not join: {exc.message}") from None
    raise _back(notice="Joined the guild (GUILD_MEMBER_ADD sent to the bot).")


async def leave(request: web.Request) -> web.Response:
    state = request.app[STATE]
    form = await request.post()
    try:
        state.remove_member(str(form.get("user_id", "")))
    except DiscordError as exc:
        raise _back(error=f"Could not leave: {exc.message}") from None
    raise _back(notice="Left the guild (GUILD_MEMBER_REMOVE sent to the bot).")


async def oauth_user(request: web.Request) -> web.Response:
    state = request.app[STATE]
    form = await request.post()
    user_id = str(form.get("user_id", "")) or None
    try:
        state.set_oauth_user(user_id)
    except DiscordError as exc:
        raise _back(error=exc.message) from None
    raise _back(notice="Consent choice saved.")


async def invite(request: web.Request) -> web.Response:
    """A Discord invite link in sandbox mode lands on the sandbox page."""
    raise web.HTTPFound("/")


def register(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/sandbox.css", stylesheet)
    app.router.add_post("/_sandbox/post", post)
    app.router.add_post("/_sandbox/join", join)
    app.router.add_post("/_sandbox/leave", leave)
    app.router.add_post("/_sandbox/oauth_user", oauth_user)
    app.router.add_get("/invite/{code}", invite)
