"""The bot process (``manage.py runbot``): one discord.py gateway connection per deployment.

Modules: ``lease`` (exactly one bot), ``services`` (guild join/leave, heartbeat), ``selfcheck``
(hierarchy, permissions, channels, intents), ``client`` (the discord.py client and its event
handlers) and ``runner`` (lease, signals, graceful shutdown).
"""
