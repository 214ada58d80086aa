"""A dashboard session over Bokeh's websocket protocol, as a browser holds one, without the browser.

`bokeh.client` pulls the session's document from `panel serve` and keeps it in sync both
ways: a tab set active here is sent to the server, whose callbacks render the tab, and the
models they add arrive in this copy. An upload is sent as Panel's FileDropper sends it, one
`upload_event` with the file in one chunk. The server does the same work as for a page in
a browser (the session, its callbacks, the prediction and Grad-CAM); the page's own
rendering is left to the browser tests.
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path

import panel.models
from bokeh.client import pull_session
from bokeh.events import DocumentReady
from bokeh.model import Model
from panel.models.file_dropper import UploadEvent

# Panel loads some of its models (Tabulator, FileDropper) only when an app uses them: the client needs them all.
for _module in pkgutil.iter_modules(panel.models.__path__):
    importlib.import_module(f"panel.models.{_module.name}")


class SentUpload(UploadEvent):
    """Panel's upload event with its data serialised, as the page sends it (Panel's own class only receives it)."""

    def event_values(self) -> dict:
        return {**super().event_values(), "data": self.data}


class AppClient:
    """One session of the app at `url`, opened and marked ready as a page does once it has loaded."""

    def __init__(self, url: str, timeout_s: float):
        self.timeout_s = timeout_s
        self.session = pull_session(url=url)
        self.document = self.session.document
        self.document.callbacks.send_event(DocumentReady())  # runs the app's onload callbacks

    def _tabs(self) -> Model:
        (tabs,) = [m for m in list(self.document.models) if type(m).__name__ == "Tabs"]
        return tabs

    def in_open_tab(self, css_class: str) -> list[Model]:
        """The models with `css_class` in the open tab (a closed tab's models may stay in the document)."""
        tabs = self._tabs()
        child = tabs.tabs[tabs.active].child
        return [m for m in [child, *child.references()] if css_class in (getattr(m, "css_classes", None) or [])]

    def rows(self, css_class: str) -> int:
        """Rows of the open tab's first table with `css_class`, 0 while there is none."""
        tables = [m for m in self.in_open_tab(css_class) if hasattr(m, "source")]
        data = tables[0].source.data if tables else {}
        return len(next(iter(data.values()), []))

    def wait_for(self, shown: Callable[[], object], what: str) -> None:
        """Send what is queued and handle the server's messages until `shown()` holds; AssertionError after
        timeout_s."""
        self._run_until(shown)
        assert shown(), f"no {what} after {self.timeout_s:.0f} s"

    def _run_until(self, condition: Callable[[], object]) -> None:
        # bokeh.client's loop runs only while it waits on a condition; it checks it after each message
        connection = self.session._connection
        if condition():
            return
        timer = connection.io_loop.call_later(self.timeout_s, connection.io_loop.stop)
        try:
            connection._loop_until(lambda: bool(condition()))
        finally:
            connection.io_loop.remove_timeout(timer)

    def open_tab(self, title: str) -> None:
        tabs = self._tabs()
        tabs.active = [panel.title for panel in tabs.tabs].index(title)

    def upload(self, css_class: str, path: Path, mime_type: str = "image/jpeg") -> None:
        (dropper,) = self.in_open_tab(css_class)
        data = {"name": path.name, "chunk": 1, "total_chunks": 1, "type": mime_type, "data": path.read_bytes()}
        self.document.callbacks.send_event(SentUpload(dropper, data=data))

    def close(self) -> None:
        """Close the websocket and wait for the server to see it go, as a closed page does."""
        self.session.close()
        self._run_until(lambda: not self.session.connected)
