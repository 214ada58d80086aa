"""The dashboard under load: 10 sessions at once against one `panel serve` on 127.0.0.1.

Every session opens the app and switches tabs; five of them also upload an image to
Predict, at the same moment. One session is a page in chromium; the other nine are
websocket clients (tests/dashboard_client.py), which give the server the same work without
a browser each: ten browsers on two cores measured the browsers, not the server. Each
session must get its tables, figures and prediction, the page with no error in its console
and no failed request to the server (Panel's stylesheets on its CDN are out of reach here
and left out), and the server's log must hold no traceback.
The same load runs twice. The first round warms the server up: the imports, the models
and Grad-CAM caches load once per process, and its allocators grow to ten sessions at
once and keep those arenas (about 60 to 90 MiB here, which stay whether or not anything leaks).
The server's memory (VmRSS of the `panel serve` process, from /proc) is read once that
round has closed, during the second round, and after it closes: it must come back to the
first reading within MEMORY_MARGIN. Figures are printed (`-s`) and recorded in README.md.
"""
from __future__ import annotations

import asyncio
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests import test_dashboard_browser as browser  # skips this module without playwright or chromium
from tests.dashboard_client import AppClient
from tests.sweep_fixture import build_smoke_sweep

pytestmark = browser.pytestmark
async_api = pytest.importorskip("playwright.async_api")

SESSIONS = 10
UPLOADS = 5  # of the sessions; the first of them is the page in chromium
# Unused sessions are discarded within about 2 s of their page closing (Bokeh's default is 15 to 17 s).
SESSION_OPTIONS = ("--check-unused-sessions", "1000", "--unused-session-lifetime", "1000")
# Measured here (2 cores, smoke models, 2026-12-01 with ten pages, 2026-12-02 with one and nine clients):
# 1018 to 1035 MiB idle, 1096 to 1110 after a first round of ten, then 4 to 18 MiB more after a second.
# A leak of what a session holds (its document, figures and prediction: the first round's 6 to 8 MiB a
# session) would add about 60 to 85 MiB a round; 48 MiB allows the allocators' noise and still catches that.
MEMORY_MARGIN = 48 * 2**20
SETTLE_S = 45  # the longest wait for memory to come back
WAIT_MS = 120_000  # per element, while ten sessions share two cores

# The tabs each session visits, and the element that shows each rendered: a table, the figures
# (as a CSS selector in the page, as a model's class and whether it is a table with rows for a client).
TABS = {"Melanoma threshold": (".op-chosen-on-val .tabulator-row", "op-chosen-on-val", True),
        "Grad-CAM": (".gallery-card", "gallery-card", False),
        "Sweep": (".summary-table .tabulator-row", "summary-table", True)}


def rss(pid: int) -> int:
    """Resident memory of process `pid` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def server_pid(url: str) -> int:
    """The `panel serve` process listening on `url`'s port."""
    port = url.rsplit(":", 1)[1].split("/")[0]
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"panel" in args and b"--port" in args and args[args.index(b"--port") + 1] == port.encode():
            return int(cmdline.parent.name)
    raise AssertionError(f"no panel serve process on port {port}")


def off_host(resource: str, app: str) -> bool:
    """A resource from elsewhere than the app's server: Panel's CSS on its CDN, unreachable from this sandbox."""
    return resource.startswith("http") and not resource.startswith(app.rsplit("/", 1)[0])


async def page_session(browser_, url: str, image: Path | None, start: asyncio.Event) -> dict:
    """One user in chromium: open the app, visit every tab, and (with `image`) predict it. Returns its timings
    and the page's errors."""
    context = await browser_.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" and not off_host(message.location.get("url", ""), url) else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("requestfailed", lambda request: errors.append(f"{request.url}: {request.failure}")
            if not off_host(request.url, url) else None)
    await start.wait()
    began = time.perf_counter()
    await page.goto(url, timeout=WAIT_MS)
    await page.locator(TABS["Sweep"][0]).first.wait_for()  # the first tab
    first_render = time.perf_counter() - began
    for tab, (shown, _, _) in TABS.items():
        await page.locator(".bk-tab", has_text=tab).first.click()
        await page.locator(shown).first.wait_for()
    predicted = None
    if image is not None:
        await page.locator(".bk-tab", has_text="Predict").first.click()
        await page.locator(".upload input[type=file]").set_input_files(image)
        await page.locator(".gradcam img").wait_for()
        predicted = await page.locator(".probabilities .tabulator-row").count()
    await context.close()
    return {"first_render_s": first_render, "total_s": time.perf_counter() - began, "errors": errors,
            "predicted_rows": predicted}


def client_session(url: str, image: Path | None, start: threading.Event) -> dict:
    """The same user as a websocket client. Returns its timings."""
    start.wait()
    began = time.perf_counter()
    client = AppClient(url, WAIT_MS / 1000)

    def shown(css_class: str, table: bool):
        return lambda: client.rows(css_class) > 0 if table else client.in_open_tab(css_class)

    client.wait_for(shown("summary-table", True), "sweep table")  # the first tab
    first_render = time.perf_counter() - began
    for tab, (_, css_class, table) in TABS.items():
        client.open_tab(tab)
        client.wait_for(shown(css_class, table), f"{tab} tab")
    predicted = None
    if image is not None:
        client.open_tab("Predict")
        client.wait_for(shown("upload", False), "upload box")
        client.upload("upload", image)
        client.wait_for(lambda: client.in_open_tab("gradcam") and client.rows("probabilities"), "prediction")
        predicted = client.rows("probabilities")
    client.close()
    return {"first_render_s": first_render, "total_s": time.perf_counter() - began, "errors": None,
            "predicted_rows": predicted}


async def load(url: str, image: Path, pid: int) -> dict:
    async with async_api.async_playwright() as playwright:
        browser_ = await playwright.chromium.launch(executable_path=str(browser.CHROMIUM), headless=True,
                                                    args=browser.LAUNCH_ARGS)
        idle = rss(pid)  # after the page the server's start-up check loaded
        warm = await sessions_at_once(browser_, url, image)
        before = await settle(pid, time.monotonic() + SETTLE_S, None)
        peak = Peak(pid)
        watching = asyncio.create_task(peak.watch())
        results = await sessions_at_once(browser_, url, image)
        watching.cancel()
        await browser_.close()
    after = await settle(pid, time.monotonic() + SETTLE_S, before + MEMORY_MARGIN)
    return {"idle": idle, "warm": warm, "sessions": results, "before": before, "peak": peak.value, "after": after}


async def sessions_at_once(browser_, url: str, image: Path) -> list[dict]:
    """SESSIONS users released together, the first UPLOADS of them predicting `image`: the first in chromium."""
    page_start, client_start = asyncio.Event(), threading.Event()
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(SESSIONS - 1) as threads:
        users = [asyncio.create_task(page_session(browser_, url, image, page_start))]
        users += [loop.run_in_executor(threads, client_session, url, image if i < UPLOADS else None, client_start)
                  for i in range(1, SESSIONS)]
        page_start.set()
        client_start.set()
        return await asyncio.gather(*users)


async def settle(pid: int, deadline: float, target: int | None) -> int:
    """RSS once it has stopped falling for 3 s (and is under `target`, if given), or at the deadline."""
    last = rss(pid)
    while time.monotonic() < deadline:
        await asyncio.sleep(3)
        now = rss(pid)
        if now >= last - 2**20 and (target is None or now <= target):
            return now
        last = now
    return rss(pid)


class Peak:
    def __init__(self, pid: int):
        self.pid, self.value = pid, rss(pid)

    async def watch(self) -> None:
        while True:
            self.value = max(self.value, rss(self.pid))
            await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
def sweep(demo_root, tmp_path_factory) -> Path:
    return build_smoke_sweep(tmp_path_factory.mktemp("results") / "smoke", demo_root, arms=["baseline"])


@pytest.fixture(scope="module")
def loaded(sweep, demo_root, tmp_path_factory) -> dict:
    log = tmp_path_factory.mktemp("panel") / "serve.log"
    with browser.serving(sweep.parent, log, *SESSION_OPTIONS) as url:
        figures = asyncio.run(load(url, browser.lesion_image(demo_root), server_pid(url)))
    figures["log"] = log.read_text()
    renders = sorted(s["first_render_s"] for s in figures["sessions"])
    done = max(s["total_s"] for s in figures["sessions"])
    print(f"\n{SESSIONS} sessions ({UPLOADS} uploading): first render {renders[0]:.1f} to {renders[-1]:.1f} s "
          f"(median {renders[len(renders) // 2]:.1f}); all tabs {done:.1f} s; "
          f"RSS MiB idle {figures['idle'] / 2**20:.0f}, after the warm-up round {figures['before'] / 2**20:.0f}, "
          f"peak {figures['peak'] / 2**20:.0f}, after {figures['after'] / 2**20:.0f}")
    return figures


def test_every_session_gets_its_tabs_and_predictions(loaded):
    for round_ in (loaded["warm"], loaded["sessions"]):
        assert [s["predicted_rows"] for s in round_] == [7] * UPLOADS + [None] * (SESSIONS - UPLOADS)


def test_the_page_sees_no_error(loaded):
    assert [round_[0]["errors"] for round_ in (loaded["warm"], loaded["sessions"])] == [[], []]


# A browser that closes while the server is still writing to it, or before its session was made, leaves
# tornado's or bokeh's own traceback behind (WebSocketClosedError; bokeh asserting that a closed connection still
# has its session, in notify_connection_lost on the close or on a message that was in flight): disconnect races in
# the transport, not errors of the app, so those records are set aside, and only those.
DISCONNECT = ("WebSocketClosedError", "StreamClosedError", "assert self._session is not None")


def app_errors(log: str) -> list[str]:
    """The server log's records (each starts with its date) that hold a traceback or an ERROR, less tornado's
    reports of a client that went away."""
    records = re.split(r"\n(?=\d{4}-\d{2}-\d{2} )", log)
    return [record for record in records if ("Traceback" in record or "ERROR" in record)
            and not any(name in record for name in DISCONNECT)]


def test_the_server_logs_no_error(loaded):
    assert app_errors(loaded["log"]) == [], loaded["log"][-3000:]


def test_a_disconnect_traceback_is_set_aside_but_an_app_error_is_not():
    disconnect = ("2026-12-01 16:11:54,094 Task exception was never retrieved\nTraceback (most recent call last):\n"
                  "  File \"tornado/websocket.py\"\ntornado.websocket.WebSocketClosedError")
    in_flight = ("2026-12-02 01:20:59,655 error handling message\n message: Message 'PATCH-DOC'\n"
                 "Traceback (most recent call last):\n  File \"bokeh/server/connection.py\", line 65, in session\n"
                 "    assert self._session is not None\nAssertionError")
    app = "2026-12-01 16:11:55,000 ERROR: callback failed\nTraceback (most recent call last):\nKeyError: 'arm'"
    opened = "2026-12-01 16:11:53,000 WebSocket connection opened"
    assert app_errors("\n".join([opened, disconnect, in_flight, opened])) == []
    assert app_errors("\n".join([opened, disconnect, app, opened])) == [app]


def test_memory_returns_after_the_sessions_close(loaded):
    assert loaded["after"] <= loaded["before"] + MEMORY_MARGIN, (
        f"RSS {loaded['before'] / 2**20:.0f} MiB before, {loaded['after'] / 2**20:.0f} MiB after the sessions closed")
