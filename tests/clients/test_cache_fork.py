"""Workers forked after the parent used a shared token cache (the file
cache and Redis) make one token request per renewal between them, and none of
them warns about locks inherited across the fork (real forks, a real
redis-server)."""

from __future__ import annotations

import logging
import multiprocessing
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest
import redis

from helpers import send
from redis_server import RedisServer
from semansys_auth import FileTokenCache, RedisTokenCache, SemansysAuth
from semansys_auth.testing import SemansysEmulator

pytestmark = [
    pytest.mark.timeout(60),
    # Python 3.12+ warns about fork() in a process with threads (the emulator's);
    # the workers touch nothing of those threads.
    pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning"),
]

WORKERS = 4
LIFETIME = 2


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def worker(auth: SemansysAuth, url: str, out: Connection) -> None:
    recorder = Recorder()
    logging.getLogger("semansys_auth").addHandler(recorder)
    try:
        statuses = [send("requests", auth, "GET", f"{url}/{i}").status for i in range(3)]
        out.send((statuses, recorder.messages))
    except BaseException as exc:  # reported to the parent, which fails the test
        out.send(([], [f"{type(exc).__name__}: {exc}"]))
    finally:
        out.close()


def run_forked_workers(auth: SemansysAuth, url: str) -> list[tuple[list[int], list[str]]]:
    context = multiprocessing.get_context("fork")
    results = []
    processes = []
    pipes = []
    for _ in range(WORKERS):
        receive, send_end = context.Pipe(duplex=False)
        process = context.Process(target=worker, args=(auth, url, send_end))
        process.start()
        send_end.close()
        processes.append(process)
        pipes.append(receive)
    try:
        for receive in pipes:
            assert receive.poll(40), "a worker did not answer within 40 s"
            results.append(receive.recv())
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join(timeout=10)
        for receive in pipes:
            receive.close()
    return results


def check_one_renewal(emulator: SemansysEmulator, cache: Any) -> None:
    emulator.access_token_lifetime = LIFETIME
    auth = emulator.auth(token_cache=cache, leeway=0)
    assert send("requests", auth, "GET", emulator.api_url + "/parent").status == 200
    assert [r.grant_type for r in emulator.token_requests()] == ["password"]
    time.sleep(LIFETIME + 0.3)  # the parent's token is now due in every worker
    results = run_forked_workers(auth, emulator.api_url)
    for statuses, messages in results:
        assert statuses == [200, 200, 200], messages
        assert messages == [], "no warning, about inherited locks or anything else"
    grants = [r.grant_type for r in emulator.token_requests()]
    assert grants == ["password", "refresh_token"], "one renewal between the workers"


def test_forked_workers_share_one_renewal_through_the_file_cache(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    check_one_renewal(semansys_emulator, FileTokenCache(tmp_path / "tokens"))


def test_forked_workers_share_one_renewal_through_redis(
    semansys_emulator: SemansysEmulator, redis_server: RedisServer
) -> None:
    with redis.Redis.from_url(redis_server.url, socket_timeout=2) as client:
        client.flushall()
    cache = RedisTokenCache.from_url(redis_server.url)
    try:
        check_one_renewal(semansys_emulator, cache)
    finally:
        cache.client.close()  # its pooled sockets: no ResourceWarning at exit


def test_a_forked_child_never_releases_the_parents_redis_lease(
    redis_server: RedisServer,
) -> None:
    """A child forked while the parent holds the renewal lease leaves it alone:
    releasing it there would free the lease the parent still relies on."""
    with redis.Redis.from_url(redis_server.url, socket_timeout=2) as client:
        client.flushall()
        cache = RedisTokenCache.from_url(redis_server.url, lock_lease=5)
        lock = cache.lock("ab" * 32)
        assert lock.acquire(1)
        try:
            context = multiprocessing.get_context("fork")
            receive, send_end = context.Pipe(duplex=False)

            def child(out: Connection) -> None:
                lock.release()  # a no-op in the child
                out.send(lock.acquire(0))  # the parent's lease is still there
                out.close()

            process = context.Process(target=child, args=(send_end,))
            process.start()
            send_end.close()
            assert receive.poll(20)
            assert receive.recv() is False, "the child could not take the parent's lease"
            process.join(timeout=10)
            receive.close()
            assert client.exists("semansys-auth:lock:" + "ab" * 32) == 1
        finally:
            lock.release()
            cache.client.close()
        assert client.exists("semansys-auth:lock:" + "ab" * 32) == 0


def test_a_file_cache_guard_held_at_the_fork_does_not_block_the_child(tmp_path: Path) -> None:
    """A thread inside ``lock()`` at the moment of the fork holds the cache's guard;
    in the child, where that thread does not exist, the guard is a new one."""
    cache = FileTokenCache(tmp_path / "tokens")
    parents = cache.lock("ab" * 32)
    context = multiprocessing.get_context("fork")
    receive, send_end = context.Pipe(duplex=False)

    def child(out: Connection) -> None:
        lock = cache.lock("ab" * 32)
        got = lock.acquire(1)
        lock.release()
        out.send((got, lock is not parents))
        out.close()

    with cache._guard:  # as if another thread were inside lock() at the fork
        process = context.Process(target=child, args=(send_end,))
        process.start()
    send_end.close()
    try:
        assert receive.poll(20), "the child is stuck on the inherited guard"
        assert receive.recv() == (True, True), "a new lock object of the child's own"
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join(timeout=10)
        receive.close()
