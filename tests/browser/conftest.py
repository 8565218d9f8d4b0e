"""Fixtures of the dashboard's browser tests: the SDK tests' real paid
network (``clients/python/tests/testnet.py``) and a headless Chromium
driven by Playwright. Screenshots go to ``target/dashboard/``."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
ARTEFACTS = ROOT / "target" / "dashboard"


def _testnet() -> Any:
    path = ROOT / "clients" / "python" / "tests" / "testnet.py"
    spec = importlib.util.spec_from_file_location("p2pc_testnet", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["p2pc_testnet"] = module
    spec.loader.exec_module(module)
    return module


testnet = _testnet()


def chromium() -> str:
    exe = os.environ.get("P2PC_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        raise AssertionError(
            "no Chromium: scripts/setup.sh installs Debian's chromium, or set P2PC_CHROMIUM"
        )
    return exe


@pytest.fixture(scope="session")
def network() -> Iterator[Any]:
    with testnet.start_network() as net:
        yield net


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        # Root in a container has no user namespaces for Chromium's sandbox.
        b = p.chromium.launch(executable_path=chromium(), headless=True, args=["--no-sandbox"])
        yield b
        b.close()


class Watched:
    """A page and what went wrong in it: console errors and uncaught
    exceptions."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.console: list[str] = []
        self.exceptions: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.exceptions.append(str(e)))

    def _console(self, m: ConsoleMessage) -> None:
        if m.type == "error":
            self.console.append(m.text)


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(testnet.WAIT * 1000)
    w = Watched(ctx.new_page())
    yield w
    ctx.close()
