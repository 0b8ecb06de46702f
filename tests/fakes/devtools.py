"""Headless Chromium driven through the DevTools protocol over a pipe (no extra package):
open a page at a given window size, hear what its console said, run a script in it, take a
screenshot.

Chromium reads commands on fd 3 and writes replies and events on fd 4
(``--remote-debugging-pipe``), each a JSON object ended by a NUL byte.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fakes.availability import require_tool
from tests.fakes.browser import FLAGS

#: The fds Chromium's --remote-debugging-pipe uses: it reads fd 3 and writes fd 4.
COMMANDS_FD, REPLIES_FD = 3, 4


class DevToolsError(Exception):
    """The browser answered a command with an error, died, or did not answer in time."""


@dataclass
class Page:
    """One tab: its session, and what its console reported while it was open."""

    browser: Browser
    target: str
    session: str
    #: Console errors, uncaught exceptions and failed loads, one line each.
    errors: list[str] = field(default_factory=list)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        return self.browser.call(method, params, session=self.session)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable)."""
        reply = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in reply:
            raise DevToolsError(f"script failed: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def screenshot(self, path: Path) -> None:
        """The whole page, as tall as it is, at the window's width."""
        height = int(self.evaluate("document.documentElement.scrollHeight"))
        width = int(self.evaluate("window.innerWidth"))
        shot = self.call(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        )
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        self.browser.call("Target.closeTarget", {"targetId": self.target})
        self.browser.pages.pop(self.session, None)


class Browser:
    """``with Browser(scratch) as browser: page = browser.open(url)``."""

    def __init__(self, scratch: Path, *, width: int = 1280, height: int = 800) -> None:
        self.width, self.height = width, height
        binary = require_tool("chromium")
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()

        def place_pipes() -> None:  # in the child, before exec: the fds Chromium expects
            # Moved above 10 first, so that placing one cannot close the other.
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (commands_read, replies_write)]
            os.dup2(high[0], COMMANDS_FD)
            os.dup2(high[1], REPLIES_FD)

        self.process = subprocess.Popen(
            [
                binary,
                *FLAGS,
                "--remote-debugging-pipe",
                f"--user-data-dir={scratch / 'chromium-profile'}",
                f"--window-size={width},{height}",
                "--hide-scrollbars",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=place_pipes,
            # Popen closes every other fd after preexec_fn: keep the two placed there.
            pass_fds=(COMMANDS_FD, REPLIES_FD),
        )
        os.close(commands_read)
        os.close(replies_write)
        self._buffer = b""
        self._next_id = 0
        self.pages: dict[str, Page] = {}

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.call("Browser.close", {}, timeout=10)
        except DevToolsError:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        os.close(self._replies)

    # -- the protocol ---------------------------------------------------------------------
    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DevToolsError("the browser did not answer in time")
            ready, _, _ = select.select([self._replies], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise DevToolsError(f"the browser closed its pipe (status {self.process.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        decoded: dict[str, Any] = json.loads(message)
        return decoded

    def _dispatch(self, message: dict[str, Any]) -> None:
        """An event: keep what a page's console reported."""
        page = self.pages.get(message.get("sessionId", ""))
        if page is None:
            return
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            page.errors.append(f"uncaught: {text}")
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            page.errors.append(f"console.{params['type']}: {args}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            page.errors.append(f"{entry['source']}: {entry['text']} {entry.get('url', '')}")

    def call(
        self, method: str, params: dict[str, Any], *, session: str = "", timeout: float = 30
    ) -> dict[str, Any]:
        """Send one command and wait for its answer, keeping the events that come first."""
        self._next_id += 1
        command: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            command["sessionId"] = session
        os.write(self._commands, json.dumps(command).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            message = self._read_message(deadline)
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise DevToolsError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self._dispatch(message)

    def wait_until_quiet(self, page: Page, loader: str, *, timeout: float) -> None:
        """Wait until the document ``loader`` loads has had no network request for 0.5 s."""
        deadline = time.monotonic() + timeout
        while True:
            message = self._read_message(deadline)
            self._dispatch(message)
            params = message.get("params", {})
            if (
                message.get("sessionId") == page.session
                and message.get("method") == "Page.lifecycleEvent"
                and params.get("name") == "networkIdle"
                and params.get("loaderId") == loader
            ):
                return

    def open(self, url: str, *, timeout: float = 30) -> Page:
        """A new tab at the window's size, ``url`` loaded and its network quiet."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        page = Page(self, target, session)
        self.pages[session] = page
        for domain in ("Page", "Runtime", "Log"):
            page.call(f"{domain}.enable")
        page.call("Page.setLifecycleEventsEnabled", enabled=True)
        page.call(
            "Emulation.setDeviceMetricsOverride",
            width=self.width,
            height=self.height,
            deviceScaleFactor=1,
            mobile=False,
        )
        navigated = page.call("Page.navigate", url=url)
        if "errorText" in navigated:
            raise DevToolsError(f"{url}: {navigated['errorText']}")
        self.wait_until_quiet(page, navigated["loaderId"], timeout=timeout)
        return page
