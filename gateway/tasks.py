"""Carry the request id from the code that enqueues a django-q2 task into the worker.

django-q2 pickles the whole task dict through the broker, so a dedicated key
(``REQUEST_ID_KEY``) travels with the task without touching the task function's arguments.
``pre_enqueue`` stores the current id (or a fresh one when nothing is bound, e.g. for the
scheduler); ``pre_execute`` binds it in the worker before the function runs, and
``post_execute_in_worker`` removes what was bound, so the next task on that worker process
starts clean.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from contextvars import Token
from typing import Any

import structlog
from django_q.signals import post_execute_in_worker, pre_enqueue, pre_execute

REQUEST_ID_KEY = "gateway_request_id"

# Tokens of the variables bound for a running task, by task id, so they can be reset.
_bound: dict[str, Mapping[str, Token[Any]]] = {}


def new_request_id() -> str:
    return str(uuid.uuid4())


def current_request_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get("request_id")
    return str(value) if value else None


def bind_fresh_request_id(**context: Any) -> str:
    """Start a new correlation scope (a bot event, a management command) and return its id.

    Clears whatever a previous unit of work left bound on this thread or task.
    """
    request_id = new_request_id()
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id, **context)
    return request_id


def stash_request_id(sender: Any = None, task: dict[str, Any] | None = None, **_: Any) -> None:
    if task is None:
        return
    task[REQUEST_ID_KEY] = current_request_id() or new_request_id()


def bind_task_context(
    sender: Any = None, func: Any = None, task: dict[str, Any] | None = None, **_: Any
) -> None:
    if task is None:
        return
    if not task.get("sync", False):
        # A worker process runs task after task: nothing of the previous one may leak.
        # An inline (sync) task runs inside its caller, whose context must survive.
        structlog.contextvars.clear_contextvars()
    tokens = structlog.contextvars.bind_contextvars(
        request_id=task.get(REQUEST_ID_KEY) or new_request_id(),
        task_id=str(task.get("id", "")),
        task_name=str(task.get("name", "")),
    )
    _bound[str(task.get("id", ""))] = tokens


def unbind_task_context(
    sender: Any = None, func: Any = None, task: dict[str, Any] | None = None, **_: Any
) -> None:
    if task is None:
        return
    tokens = _bound.pop(str(task.get("id", "")), None)
    if tokens:
        structlog.contextvars.reset_contextvars(**tokens)


def connect() -> None:
    """Connect the handlers (idempotent: ``dispatch_uid`` guards against a second call)."""
    pre_enqueue.connect(stash_request_id, dispatch_uid="gateway.tasks.stash_request_id")
    pre_execute.connect(bind_task_context, dispatch_uid="gateway.tasks.bind_task_context")
    post_execute_in_worker.connect(
        unbind_task_context, dispatch_uid="gateway.tasks.unbind_task_context"
    )
