"""``semansys-auth demo``: the whole job, step by step, against an in-process emulator."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import requests

from ._auth import SemansysAuth
from .testing import RecordedRequest, SemansysEmulator


class _Checker:
    def __init__(self, emulator: SemansysEmulator) -> None:
        self.emulator = emulator
        self.failures = 0
        self._seen = 0

    def new_requests(self) -> list[RecordedRequest]:
        log = self.emulator.requests
        fresh, self._seen = log[self._seen :], len(log)
        return fresh

    def step(self, number: int, text: str, status: int, expected: list[str]) -> None:
        """Print what the server saw for this step, and check it is ``expected``."""
        seen = self.new_requests()
        shown = [
            f"token({r.grant_type})->{r.status}"
            if r.kind == "token"
            else f"{r.method} {r.path}->{r.status}"
            for r in seen
        ]
        ok = status == 200 and shown == expected
        self.failures += not ok
        mark = "ok" if ok else f"UNEXPECTED (wanted {', '.join(expected)})"
        print(f"  {number}. {text}")
        print(f"     the server saw: {', '.join(shown)}  [{mark}]")


def _walk(
    label: str,
    checker: _Checker,
    get: Callable[[str], int],
) -> None:
    api = checker.emulator.api_url + "/reports"
    print(f"\n== {label} ==")
    checker.step(
        1,
        "first request: no token yet, so the password grant runs first",
        get(api),
        ["token(password)->200", "GET /api/reports->200"],
    )
    checker.step(2, "second request: the token is reused", get(api), ["GET /api/reports->200"])
    checker.emulator.expire_access_tokens()
    print("  -- the server now expires every access token it issued --")
    checker.step(
        3,
        "third request: 401, one refresh, the same request resent once",
        get(api),
        ["GET /api/reports->401", "token(refresh_token)->200", "GET /api/reports->200"],
    )


def _niquests(checker: _Checker, new_auth: Callable[[], SemansysAuth]) -> None:
    try:
        import niquests
    except ImportError:
        print("\n== niquests: not installed (pip install 'semansys-auth[niquests]') ==")
        return
    with niquests.Session() as session:
        session.auth = new_auth()
        _walk("niquests", checker, lambda url: int(session.get(url, timeout=10).status_code or 0))

    async_auth = new_auth()

    def async_get(url: str) -> int:
        async def go() -> int:
            async with niquests.AsyncSession(timeout=10) as session:
                session.auth = async_auth
                return int((await session.get(url)).status_code or 0)

        return asyncio.run(go())

    _walk("niquests async", checker, async_get)


def run_demo() -> int:
    with SemansysEmulator() as emulator:
        print(f"Semansys emulator on {emulator.base_url} (demo credentials, offline)")
        checker = _Checker(emulator)

        def new_auth() -> SemansysAuth:
            return emulator.auth()

        with requests.Session() as session:
            session.auth = new_auth()
            _walk("requests", checker, lambda url: session.get(url, timeout=10).status_code)

        with httpx.Client(auth=new_auth(), timeout=10) as client:
            _walk("httpx", checker, lambda url: client.get(url).status_code)

        async_auth = new_auth()

        def async_get(url: str) -> int:
            async def go() -> int:
                async with httpx.AsyncClient(auth=async_auth, timeout=10) as client:
                    return (await client.get(url)).status_code

            return asyncio.run(go())

        _walk("httpx async", checker, async_get)

        try:
            import aiohttp
        except ImportError:
            print("\n== aiohttp: not installed (pip install 'semansys-auth[aiohttp]') ==")
        else:
            middleware = new_auth()

            def aiohttp_get(url: str) -> int:
                async def go() -> int:
                    timeout = aiohttp.ClientTimeout(total=10)
                    async with (
                        aiohttp.ClientSession(
                            middlewares=(middleware,), timeout=timeout
                        ) as session,
                        session.get(url) as response,
                    ):
                        return response.status

                return asyncio.run(go())

            _walk("aiohttp", checker, aiohttp_get)

        _niquests(checker, new_auth)

    if checker.failures:
        print(f"\n{checker.failures} step(s) did not behave as expected.")
        return 1
    print("\nAll steps behaved as expected: one token fetch per object, reuse, and one")
    print("refresh-and-resend on a 401. Point SemansysAuth at the real endpoint next (README).")
    return 0
