"""Open a page in headless Chromium and report what a person would notice: did it load, did
every image load, what did the console complain about; and take a screenshot.

Talks to Chromium over the DevTools protocol (a websocket on 127.0.0.1), so no browser driver
package is needed, only the `chromium` binary.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if found := shutil.which(name):
            return found
    return None


@dataclass
class PageCheck:
    loaded: bool
    title: str
    images: int
    broken_images: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    screenshot: bytes = b""


def check_page(path: Path, width: int = 1280, height: int = 2000) -> PageCheck:
    profile = tempfile.mkdtemp(prefix="ganpipe-chromium-")
    proc = subprocess.Popen(
        [chromium_binary(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            target = next(t for t in json.load(r) if t["type"] == "page")
        return asyncio.run(_drive(target["webSocketDebuggerUrl"], path, width, height))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


async def _drive(ws_url: str, path: Path, width: int, height: int) -> PageCheck:
    import websockets

    errors: list[str] = []
    loaded = asyncio.Event()
    pending: dict[int, asyncio.Future] = {}
    counter = iter(range(1, 1_000_000))

    async with websockets.connect(ws_url, max_size=64 * 2**20) as ws:

        async def reader():
            async for raw in ws:
                msg = json.loads(raw)
                if "id" in msg and msg["id"] in pending:
                    pending.pop(msg["id"]).set_result(msg)
                method, params = msg.get("method"), msg.get("params", {})
                if method == "Page.loadEventFired":
                    loaded.set()
                elif method == "Runtime.exceptionThrown":
                    errors.append(params["exceptionDetails"].get("text", "exception"))
                elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                    errors.append(" ".join(str(a.get("value")) for a in params.get("args", [])))
                elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                    errors.append(params["entry"].get("text", "error"))

        async def call(method: str, **params):
            i = next(counter)
            pending[i] = asyncio.get_running_loop().create_future()
            await ws.send(json.dumps({"id": i, "method": method, "params": params}))
            reply = await asyncio.wait_for(pending[i], timeout=60)
            if "error" in reply:
                raise RuntimeError(f"{method}: {reply['error']}")
            return reply.get("result", {})

        task = asyncio.create_task(reader())
        for domain in ("Page", "Runtime", "Log"):
            await call(f"{domain}.enable")
        await call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                   deviceScaleFactor=1, mobile=False)  # fmt: skip
        await call("Page.navigate", url=path.resolve().as_uri())
        with contextlib.suppress(TimeoutError):  # a page that never loads is reported below
            await asyncio.wait_for(loaded.wait(), timeout=60)
        probe = await call(
            "Runtime.evaluate",
            returnByValue=True,
            expression="JSON.stringify({title: document.title, images: Array.from("
            "document.images).map(i => [i.alt, i.complete && i.naturalWidth > 0])})",
        )
        found = json.loads(probe["result"]["value"])
        shot = await call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        task.cancel()
    return PageCheck(
        loaded=loaded.is_set(),
        title=found["title"],
        images=len(found["images"]),
        broken_images=[alt for alt, ok in found["images"] if not ok],
        console_errors=errors,
        screenshot=base64.b64decode(shot["data"]),
    )


class Session:
    """One page in headless Chromium that a test drives step by step: open a URL, press keys,
    evaluate JavaScript, take screenshots, and read the console errors so far.

        with Session() as page:
            page.open("http://127.0.0.1:8000/studio")
            page.press("a")
    """

    def __init__(self, width: int = 1280, height: int = 900):
        self.width, self.height = width, height
        self.errors: list[str] = []

    def __enter__(self) -> Session:
        self.profile = tempfile.mkdtemp(prefix="ganpipe-chromium-")
        self.proc = subprocess.Popen(
            [chromium_binary(), *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            target = next(t for t in json.load(r) if t["type"] == "page")
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self._connect(target["webSocketDebuggerUrl"]))
        return self

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(Exception):
            self.loop.run_until_complete(self.ws.close())
        self.loop.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)

    async def _connect(self, url: str) -> None:
        import websockets

        self.ws = await websockets.connect(url, max_size=64 * 2**20)
        self.pending: dict[int, asyncio.Future] = {}
        self.counter = iter(range(1, 1_000_000))
        self.loaded = asyncio.Event()
        self.reader = asyncio.ensure_future(self._read())
        for domain in ("Page", "Runtime", "Log"):
            await self._call(f"{domain}.enable")
        await self._call("Emulation.setDeviceMetricsOverride", width=self.width,
                         height=self.height, deviceScaleFactor=1, mobile=False)  # fmt: skip

    async def _read(self) -> None:
        async for raw in self.ws:
            msg = json.loads(raw)
            if "id" in msg and msg["id"] in self.pending:
                self.pending.pop(msg["id"]).set_result(msg)
            method, params = msg.get("method"), msg.get("params", {})
            if method == "Page.loadEventFired":
                self.loaded.set()
            elif method == "Runtime.exceptionThrown":
                self.errors.append(params["exceptionDetails"].get("text", "exception"))
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                self.errors.append(" ".join(str(a.get("value")) for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                self.errors.append(params["entry"].get("text", "error"))

    async def _call(self, method: str, **params):
        i = next(self.counter)
        self.pending[i] = asyncio.get_running_loop().create_future()
        await self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        reply = await asyncio.wait_for(self.pending[i], timeout=60)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def call(self, method: str, **params):
        return self.loop.run_until_complete(self._call(method, **params))

    def open(self, url: str) -> None:
        self.loaded.clear()
        self.call("Page.navigate", url=url)
        with contextlib.suppress(TimeoutError):
            self.loop.run_until_complete(asyncio.wait_for(self.loaded.wait(), timeout=60))

    def evaluate(self, expression: str, wait: bool = True):
        found = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                          awaitPromise=wait)  # fmt: skip
        return found.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 60) -> None:
        """Until ``expression`` is true in the page (images loaded, a request answered)."""
        deadline = time.monotonic() + timeout
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page never made {expression!r} true")
            self.loop.run_until_complete(asyncio.sleep(0.2))

    def press(self, key: str) -> None:
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key=key, text=key if kind ==
                      "keyDown" else "", code=f"Key{key.upper()}")  # fmt: skip

    def images_loaded(self) -> str:
        return (
            "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0"
            " || i.loading === 'lazy' && i.getBoundingClientRect().top > innerHeight)"
        )

    def screenshot(self) -> bytes:
        shot = self.call("Page.captureScreenshot", format="png")
        return base64.b64decode(shot["data"])
