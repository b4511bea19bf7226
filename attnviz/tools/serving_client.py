"""A light raw-HTTP client of the app's Gradio API (no gradio_client): what the serving benchmark
drives the server with, so that the clients' own CPU stays small beside the server's.

    c = RawClient("http://127.0.0.1:7860/")
    path = c.upload("photo.png")                       # a path inside the server's upload cache
    out = c.call("inspect", [c.file(path), "lite_cbam", "gradcam", "per map"])
    c.fetch_files(out)                                 # the images the answer names, as a browser
    c.lean("inspect", {"image": path, "model": "lite_cbam"})   # the lean JSON route: one exchange

One call is Gradio's two requests: ``POST /gradio_api/call/<api>`` (returns an event id), then
``GET /gradio_api/call/<api>/<event_id>`` (a server-sent-events stream ending with ``complete``
and the outputs, or ``error``). Each client keeps one HTTP/1.1 connection alive.
"""
from __future__ import annotations

import http.client
import json
import mimetypes
import os
import uuid
from urllib.parse import urlparse


class CallError(RuntimeError):
    """The server answered an event with ``error`` (its message) or an HTTP error."""


class RawClient:
    def __init__(self, url: str, timeout: float = 120.0):
        u = urlparse(url)
        self.host, self.port = u.hostname, u.port or 80
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self.received = 0  # bytes of bodies read (answers and files)

    # -- one connection, kept alive ---------------------------------------------------------
    def _request(self, method: str, path: str, body=None, headers=None) -> tuple[int, bytes]:
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self._conn.request(method, path, body=body, headers=headers or {})
                r = self._conn.getresponse()
                data = r.read()
                self.received += len(data)
                return r.status, data
            except (http.client.HTTPException, ConnectionError, OSError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- the API -----------------------------------------------------------------------------
    @staticmethod
    def file(path: str) -> dict:
        """A file argument (a path the server already holds: an upload or an example)."""
        return {"path": str(path), "meta": {"_type": "gradio.FileData"}}

    def upload(self, path) -> str:
        """Upload a file; the server-side path to pass with :meth:`file`."""
        boundary = uuid.uuid4().hex
        name = os.path.basename(str(path))
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        with open(path, "rb") as f:
            payload = f.read()
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
                f"filename=\"{name}\"\r\nContent-Type: {ctype}\r\n\r\n").encode() + payload + \
            f"\r\n--{boundary}--\r\n".encode()
        status, data = self._request("POST", "/gradio_api/upload", body,
                                     {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        if status != 200:
            raise CallError(f"upload: HTTP {status}: {data[:200]!r}")
        return json.loads(data)[0]

    def call(self, api: str, data: list):
        """Run ``/api`` with ``data``; its outputs (a list) or CallError."""
        status, body = self._request("POST", f"/gradio_api/call/{api}",
                                     json.dumps({"data": data}),
                                     {"Content-Type": "application/json"})
        if status != 200:
            raise CallError(f"{api}: HTTP {status}: {body[:200]!r}")
        event = json.loads(body)["event_id"]
        status, body = self._request("GET", f"/gradio_api/call/{api}/{event}")
        if status != 200:
            raise CallError(f"{api}: HTTP {status}: {body[:200]!r}")
        kind = None
        for line in body.decode("utf-8", "replace").splitlines():
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:") and kind in ("complete", "error"):
                payload = line[5:].strip()
                if kind == "error":
                    raise CallError(f"{api}: {payload[:300]}")
                return json.loads(payload)
        raise CallError(f"{api}: the stream ended without a result")

    def lean(self, route: str, body: dict | None = None):
        """The app's lean JSON route (``/attnviz/api/<route>``: POST ``body``, or GET when
        None); its answer, or CallError with the server's message."""
        if body is None:
            status, data = self._request("GET", f"/attnviz/api/{route}")
        else:
            status, data = self._request("POST", f"/attnviz/api/{route}", json.dumps(body),
                                         {"Content-Type": "application/json"})
        if status != 200:
            raise CallError(f"{route}: HTTP {status}: {data[:300]!r}")
        return json.loads(data)

    def fetch_files(self, outputs) -> int:
        """GET every file an answer names (as a browser shows them); their bytes in all."""
        n = 0
        for url in file_urls(outputs):
            u = urlparse(url)
            status, data = self._request("GET", u.path + (f"?{u.query}" if u.query else ""))
            if status != 200:
                raise CallError(f"file {u.path}: HTTP {status}")
            n += len(data)
        return n


def file_urls(o) -> list[str]:
    """The ``url`` of every FileData in an answer (images, gallery tiles)."""
    out = []
    if isinstance(o, dict):
        if o.get("url") and isinstance(o.get("url"), str) and "path" in o:
            out.append(o["url"])
        for v in o.values():
            out += file_urls(v)
    elif isinstance(o, (list, tuple)):
        for v in o:
            out += file_urls(v)
    return out
