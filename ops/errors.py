"""The one base class of user-facing service errors.

A service refuses what it cannot do by raising a ``ServiceError`` whose message is safe to show
the person who asked (a member on a page, staff in the admin). Every such error derives from
it, so views catch this one class and a new kind of refusal is a message, never a 500.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A refusal the user can act on; ``str(error)`` is the message to show."""
