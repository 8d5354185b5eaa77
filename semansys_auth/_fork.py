"""State that must not cross ``os.fork()``: one hook for the whole package.

A fork copies only the thread that called it. A ``threading.Lock`` that another
thread held at that moment stays held in the child forever (that thread does not
exist there), and a note that a renewal runs in some thread describes a thread
the child does not have. This happens with gunicorn ``--preload``, Celery and
``multiprocessing`` with the fork start method, whenever the parent had a
request under way.

Every object that keeps such state calls :func:`reset_after_fork` once, in its
constructor, and defines ``_after_fork()``, which re-creates its locks and
forgets what belonged to other threads. One ``os.register_at_fork`` hook runs
them all in the child, before ``fork()`` returns there; the registry is a
``WeakSet``, so registering keeps nothing alive.
"""

from __future__ import annotations

import os
import weakref

# typing is not imported at run time: it costs 7 ms of the command's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    class ForkAware(Protocol):
        def _after_fork(self) -> None: ...


_REGISTERED: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def reset_after_fork(obj: ForkAware) -> None:
    """Have ``obj._after_fork()`` called in the child of every later fork."""
    _REGISTERED.add(obj)


def _after_fork_in_child() -> None:
    for obj in list(_REGISTERED):
        obj._after_fork()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)
