"""What the server refuses around Gradio's own request handling, before or beside the handlers.

    guards.install(demo)           # after demo.queue(): error messages, choice checks, queue
    launch(app_kwargs={"middleware": guards.middleware()})   # the request-size limit

- **Error messages**: Gradio's own refusals (a file payload that fails its checks, a choice not
  in a Radio's list) echo what the client sent: up to megabytes of it, into the answer and, with
  their tracebacks, into the log. Every error message leaves the server through
  :func:`error_payload`: a refused file payload becomes the one message of :mod:`.uploads` (it
  must not depend on what lies at the path), any run of more than ECHO_MAX_CHARS characters
  without a space is cut, and the whole message to MESSAGE_MAX_CHARS.
- **Choices**: a Radio, Dropdown or CheckboxGroup value not among the choices is refused with
  the value cut to ECHO_MAX_CHARS, and no traceback is logged.
- **Queue admission** (:mod:`.admission`): heavy jobs never fill the interactive queue.
- **Request size**: :class:`BodyLimit` answers 413 to a request body over REQUEST_MAX_MB (an
  upload: over the upload limit) before Gradio reads it.
"""
from __future__ import annotations

import re

import gradio as gr

from . import limits

# longer than an echo() of a value with its "... (N characters)" note: cut again
_LONG_RUN = re.compile(rf"\S{{{limits.ECHO_MAX_CHARS + 41},}}")
_FILE_MODELS = ("FileData", "ImageData", "ListFiles", "FileMessage")


def _cut_runs(text: str) -> str:
    """Every run of more than ECHO_MAX_CHARS non-space characters cut to that many, then the
    whole text to MESSAGE_MAX_CHARS."""
    text = _LONG_RUN.sub(lambda m: m.group(0)[:limits.ECHO_MAX_CHARS]
                         + f"... ({len(m.group(0))} characters)", text)
    if len(text) > limits.MESSAGE_MAX_CHARS:
        text = text[:limits.MESSAGE_MAX_CHARS] + " ... (cut)"
    return text


def is_refused_file(error: BaseException | None) -> bool:
    """Whether ``error`` is Gradio refusing a file payload before the handler ran (a path not
    uploaded by a user, a payload that is not a file object)."""
    from gradio.exceptions import InvalidPathError
    if isinstance(error, InvalidPathError):
        return True
    try:
        from pydantic import ValidationError
    except ImportError:  # pragma: no cover - Gradio depends on pydantic
        return False
    return isinstance(error, ValidationError) and any(m in str(getattr(error, "title", ""))
                                                      for m in _FILE_MODELS)


def _wrap_error_payload(original):
    def error_payload(error, show_error):
        from .uploads import refused
        if is_refused_file(error):
            error = refused()
        content = original(error, show_error)
        if isinstance(content.get("error"), str):
            content["error"] = _cut_runs(content["error"])
        if isinstance(content.get("title"), str):
            content["title"] = _cut_runs(content["title"])[:200]
        return content
    error_payload._attnviz = True
    return error_payload


def _install_error_payload() -> None:
    from gradio import queueing, utils  # routes calls utils.error_payload
    for module in (queueing, utils):
        if not getattr(module.error_payload, "_attnviz", False):
            module.error_payload = _wrap_error_payload(module.error_payload)


_CHOICE = re.compile(r"Value: (.*?) (?:\(type: [^)]*\) )?is not in the list of choices: (.*)$",
                     re.DOTALL)


def choice_message(message: str) -> str:
    """Gradio's "Value: ... is not in the list of choices: [...]" with the value cut to
    ECHO_MAX_CHARS (any other message: long runs cut)."""
    m = _CHOICE.match(message)
    if not m:
        return _cut_runs(message)
    value, choices = m.groups()
    if len(value) > limits.ECHO_MAX_CHARS:
        value = value[:limits.ECHO_MAX_CHARS] + f"... ({len(value)} characters)"
    return _cut_runs(f"{value} is not one of the choices: {choices}")


def _guard_choices(component) -> None:
    """A choice component whose refusal of an unknown value echoes it cut, without a
    traceback in the log."""
    original = component.preprocess

    def preprocess(payload):
        try:
            return original(payload)
        except gr.Error as e:
            raise gr.Error(choice_message(str(e.message)), title="Not one of the choices",
                           print_exception=False) from None
    component.preprocess = preprocess


def install(demo: gr.Blocks) -> None:
    """Every guard that works inside Gradio (idempotent for the error messages)."""
    _install_error_payload()
    for block in demo.blocks.values():
        if isinstance(block, (gr.Radio, gr.Dropdown, gr.CheckboxGroup)):
            _guard_choices(block)


# ------------------------------------------------------------------------------ request size
class BodyLimit:
    """ASGI middleware: a request whose body is over ``max_bytes`` (``upload_max_bytes`` for
    Gradio's upload route) is answered 413 with a message saying the limit, before the body is
    read when it declares its length, as soon as the limit is passed when it does not."""

    def __init__(self, app, max_bytes: int, upload_max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes
        self.upload_max_bytes = upload_max_bytes

    def _limit(self, path: str) -> int:
        return self.upload_max_bytes if path.rstrip("/").endswith("/upload") \
            else self.max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self._limit(scope.get("path", ""))
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > limit
            except ValueError:
                too_large = True
            if too_large:
                return await _too_large(send, limit)
        received = 0
        started = False

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message.get("type") == "http.request":
                received += len(message.get("body") or b"")
                if received > limit:
                    from starlette.exceptions import HTTPException
                    raise HTTPException(413, detail=too_large_message(limit))
            return message

        async def watched_send(message):
            nonlocal started
            if message.get("type") == "http.response.start":
                started = True
            await send(message)

        from starlette.exceptions import HTTPException
        try:
            await self.app(scope, counted_receive, watched_send)
        except HTTPException as e:
            if e.status_code != 413 or started:
                raise
            await _too_large(send, limit)


def too_large_message(limit: int) -> str:
    return (f"The request is larger than {limit / 2**20:.0f} MB, the limit of this server; "
            "send a smaller image (or upload it as a file).")


async def _too_large(send, limit: int) -> None:
    import json
    body = json.dumps({"error": too_large_message(limit),
                       "detail": too_large_message(limit)}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def middleware() -> list:
    """The request-size limit, for ``launch(app_kwargs={"middleware": middleware()})``."""
    from starlette.middleware import Middleware
    return [Middleware(BodyLimit, max_bytes=limits.REQUEST_MAX_BYTES,
                       upload_max_bytes=limits.UPLOAD_REQUEST_MAX_BYTES)]

