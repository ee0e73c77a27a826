"""Headless Chromium for tests: load a page, collect console errors and network requests, run JavaScript.

Talks the DevTools protocol over ``--remote-debugging-pipe`` (file descriptors 3 and 4,
NUL-separated JSON), so it needs nothing but the ``chromium`` binary.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def find_chromium() -> str | None:
    """Path of a Chromium (or Chrome) binary, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


#: Flags for a page that draws with WebGL: headless Chromium then renders it in software
#: (SwiftShader), which recent versions allow only when asked to.
WEBGL_ARGS = ("--use-angle=swiftshader", "--enable-unsafe-swiftshader")


class ChromiumError(RuntimeError):
    """Chromium did not answer or answered with an error."""


class HeadlessPage:
    """One headless Chromium with one page; use as a context manager.

    Attributes
    ----------
    console_errors
        Text of every console message of level error, uncaught exception and browser log
        entry of level error seen so far.
    requests
        URL of every network request the page made.
    dialogs
        Message of every ``alert``/``confirm``/``prompt`` the page opened (each is dismissed
        at once, so a page that opens one cannot hang the test).

    ``extra_args`` go on Chromium's command line after the defaults (e.g. :data:`WEBGL_ARGS`).
    """

    def __init__(
        self,
        binary: str,
        width: int = 1400,
        height: int = 2000,
        timeout: float = 60.0,
        extra_args: tuple[str, ...] = (),
    ):
        self.timeout = timeout
        self.console_errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self._profile = tempfile.mkdtemp(prefix="vscreen-chromium-")
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        # the child's ends go above 4 (close-on-exec) so that the dup2 onto 3 and 4 in the child cannot
        # clobber one another; only 3 and 4 are inherited (Python opens every other fd close-on-exec)
        high_r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD_CLOEXEC, 10)
        high_w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_child_r)
        os.close(from_child_w)

        def wire() -> None:
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self._proc = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--hide-scrollbars",
                f"--user-data-dir={self._profile}",
                f"--window-size={width},{height}",
                "--remote-debugging-pipe",
                *extra_args,
                "about:blank",
            ],
            close_fds=False,
            preexec_fn=wire,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(high_r)
        os.close(high_w)
        self._out = os.fdopen(to_child_w, "wb", buffering=0)
        self._in = os.fdopen(from_child_r, "rb", buffering=0)
        self._next_id = 0
        self._send_lock = threading.Lock()  # the reader thread sends too (dismissing dialogs)
        self._responses: dict[int, dict] = {}
        self._events: list[dict] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        target = self._call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self._call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")

    # ------------------------------------------------------------------ protocol
    def _read_loop(self) -> None:
        buffer = b""
        while True:
            chunk = self._in.read(65536)
            if not chunk:
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                with self._cond:
                    if "id" in message:
                        self._responses[message["id"]] = message
                    else:
                        self._events.append(message)
                        self._record(message)
                    self._cond.notify_all()

    def _record(self, event: dict) -> None:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.console_errors.append(
                " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            )
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.console_errors.append(
                details.get("exception", {}).get("description") or details.get("text", "exception")
            )
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            self.console_errors.append(params["entry"].get("text", "log error"))
        elif method == "Network.requestWillBeSent":
            self.requests.append(params.get("request", {}).get("url", ""))
        elif method == "Page.javascriptDialogOpening":
            self.dialogs.append(params.get("message", ""))
            # answered without waiting: this runs on the reader thread, which reads the answer
            self._send("Page.handleJavaScriptDialog", {"accept": False}, event.get("sessionId"))

    def _send(self, method: str, params: dict, session: str | None) -> int:
        with self._send_lock:
            self._next_id += 1
            ident = self._next_id
            message = {"id": ident, "method": method, "params": params}
            if session:
                message["sessionId"] = session
            self._out.write(json.dumps(message).encode() + b"\0")
        return ident

    def _wait_response(self, ident: int) -> dict:
        deadline = time.time() + self.timeout
        with self._cond:
            while ident not in self._responses:
                if not self._cond.wait(timeout=max(0.0, deadline - time.time())):
                    raise ChromiumError(f"no answer from Chromium within {self.timeout} s")
            message = self._responses.pop(ident)
        if "error" in message:
            raise ChromiumError(str(message["error"]))
        return message.get("result", {})

    def _call(self, method: str, **params: Any) -> dict:
        return self._wait_response(self._send(method, params, None))

    def call(self, method: str, **params: Any) -> dict:
        """Send a DevTools command to the page and return its result."""
        return self._wait_response(self._send(method, params, self._session))

    # ------------------------------------------------------------------ page
    def load(self, url: str) -> None:
        """Navigate to ``url`` and wait for the load event (and a short settle for late errors)."""
        with self._cond:
            start = len(self._events)
        self.call("Page.navigate", url=url)
        deadline = time.time() + self.timeout
        with self._cond:
            while not any(e.get("method") == "Page.loadEventFired" for e in self._events[start:]):
                if not self._cond.wait(timeout=max(0.0, deadline - time.time())):
                    raise ChromiumError(f"{url} did not finish loading within {self.timeout} s")
        time.sleep(0.5)

    def evaluate(self, expression: str) -> Any:
        """Run JavaScript in the page and return its (JSON-serialisable) value."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise ChromiumError(f"JavaScript error: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: str | Path) -> None:
        """Save a PNG of the whole page."""
        import base64

        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        Path(path).write_bytes(base64.b64decode(data))

    def screenshot_png(self, clip: dict[str, float] | None = None) -> bytes:
        """PNG bytes of the viewport, or of ``clip`` (``x, y, width, height`` in CSS pixels of the page)."""
        import base64

        params: dict[str, Any] = {"format": "png"}
        if clip is not None:
            params["clip"] = {**clip, "scale": 1}
        return base64.b64decode(self.call("Page.captureScreenshot", **params)["data"])

    def close(self) -> None:
        try:
            self._out.close()
        except OSError:
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> HeadlessPage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
