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

Imports on first use are the other hazard: Python holds a lock per module while
it imports it, and a fork in the middle leaves that lock held in the child,
whose first import of the module then waits forever. The package imports on
first use (an adapter and its HTTP library, anyio, ``logging``, the names of
``semansys_auth``, and what a renewal needs: :func:`preload_for_renewal`) under
:data:`IMPORTING`, and a fork waits until none is under way (at most
:data:`IMPORT_WAIT` seconds).
"""

from __future__ import annotations

import os
import threading
import weakref

# typing is not imported at run time: it costs 7 ms of the command's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    class ForkAware(Protocol):
        def _after_fork(self) -> None: ...


_REGISTERED: weakref.WeakSet[ForkAware] = weakref.WeakSet()


IMPORT_WAIT = 10.0


class _Importing:
    """``with IMPORTING:`` around an import on first use (re-entrant)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._forking = threading.local()  # whether this thread's fork holds the lock
        self._hooked = False

    def __enter__(self) -> None:
        self._lock.acquire()
        if not self._hooked:
            self._hook()

    def _hook(self) -> None:
        """Register the fork hooks, on first use, after logging's.

        At-fork "before" hooks run newest first, and logging's takes logging's
        module lock. Were ours older, a fork would take that lock first and then
        wait for an import under way here, which needs it (``getLogger`` in
        urllib3, oauthlib...): the fork would stall for ``IMPORT_WAIT`` and the
        child inherit a half-done import. Imported here, logging's hook is older
        than ours whatever the application imported first. (Nothing waits for an
        import before the first one starts, so registering late misses nothing.)
        """
        import logging  # noqa: F401 (for its at-fork hook; see above)

        self._hooked = True
        if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
            os.register_at_fork(
                before=self.before_fork,
                after_in_parent=self.after_fork_in_parent,
                after_in_child=self.after_fork_in_child,
            )

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()

    def before_fork(self) -> None:
        # Bounded: should a fork happen inside an import that waits for another
        # thread's import, the fork goes on (as it would without this) after a while.
        self._forking.held = self._lock.acquire(timeout=IMPORT_WAIT)

    def after_fork_in_parent(self) -> None:
        if getattr(self._forking, "held", False):
            self._lock.release()

    def after_fork_in_child(self) -> None:
        self._lock = threading.RLock()  # whoever held it, the child has only this thread
        self._forking = threading.local()


IMPORTING = _Importing()

# What a renewal may import on first use, in the token core's modules (which stay
# import-light for the command's start-up): imported at once, under IMPORTING,
# when the first renewal starts, so that no fork can fall in the middle of one.
_RENEWAL_MODULES = (
    "html",
    "json",
    "random",
    "secrets",
    "urllib.parse",
    "zlib",
    "oauthlib.oauth2.rfc6749.parameters",
)
_preloaded = False


def preload_for_renewal() -> None:
    """Import what a renewal imports on first use (once per process)."""
    global _preloaded
    if _preloaded:
        return
    import importlib

    with IMPORTING:
        for name in _RENEWAL_MODULES:
            importlib.import_module(name)
    _preloaded = True


def reset_after_fork(obj: ForkAware) -> None:
    """Have ``obj._after_fork()`` called in the child of every later fork."""
    _REGISTERED.add(obj)


def _after_fork_in_child() -> None:
    for obj in list(_REGISTERED):
        obj._after_fork()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)
