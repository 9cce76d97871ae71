"""`/media/{path}`: the files of the media folder, as they are on disk.

Unlike the documents, these are not in the snapshot: each request opens its file (off the event
loop, with `open_media`: regular files inside the folder only, no link followed) and sends it
with sendfile, in pieces, so a 50 MB podcast episode is never read into memory. Anything that is
not such a file is 404, whatever the reason (never 403 or 500: a refusal says nothing).

Validators (RFC 9110 §8.8): a strong ETag that is a hash of the bytes, the same on every machine
and after every restart, computed once per version of a file (its device, inode, size and
mtime) in a worker thread; `Last-Modified` the file's mtime, never later than the clock.
Conditionals in the order of RFC 9110 §13.2.2 (If-Match, else If-Unmodified-Since: 412;
If-None-Match, else If-Modified-Since: 304; then If-Range and Range: 206, 416). One range
is served; several get the whole file (200), which §14.2 allows ("a server MAY ignore the
Range header field").
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from urllib.parse import unquote

from aiohttp import web

from feedsvc.httpdates import http_date, parse_http_date
from feedsvc.ingest.mediafiles import media_segments, served_type
from feedsvc.serve.handlers import not_found
from feedsvc.serve.keys import MEDIA, SETTINGS
from feedsvc.serve.mediafolder import MediaFolder, Opened
from feedsvc.serve.negotiation import not_modified

log = logging.getLogger("feedsvc")

ROUTE_PREFIX = "/media/"
#: Sent per sendfile call, each with its deadline.
PIECE_BYTES = 1024 * 1024
# DIGIT is ASCII only (RFC 5234 B.1): `\d` would take any Unicode digit.
_RANGE_RE = re.compile(r"bytes=([0-9]*)-([0-9]*)", re.IGNORECASE)
#: A position with more significant digits than this is past the end of any file: int() of
#: more than 4,300 digits raises (Python's limit), and RFC 9110 §14.1.1 sets no length.
_POSITION_DIGITS = 19
_ENCODED_SEPARATOR_RE = re.compile(r"%(?:2f|5c|00)", re.IGNORECASE)


def request_segments(raw_path: str) -> tuple[str, ...] | None:
    """The media path of a request's raw (still percent-encoded) path, or None for anything
    that must be 404: an encoded `/`, `\\` or NUL (`%2f`, `%5c`, `%00`), bytes that are not
    UTF-8, and whatever `media_segments` refuses once decoded (`%2e%2e` is `..`)."""
    if not raw_path.startswith(ROUTE_PREFIX):
        return None
    rest = raw_path[len(ROUTE_PREFIX):]
    if _ENCODED_SEPARATOR_RE.search(rest):
        return None
    try:
        decoded = unquote(rest, errors="strict")
    except UnicodeDecodeError:
        return None
    return media_segments(decoded)


def _position(digits: str) -> int:
    """A range position of any length: beyond _POSITION_DIGITS, a number past any file."""
    significant = digits.lstrip("0") or "0"
    return int(significant) if len(significant) <= _POSITION_DIGITS else 10 ** _POSITION_DIGITS


def byte_range(value: str | None, size: int) -> tuple[int, int] | bool | None:
    """RFC 9110 §14.1.2: (first, last) of a single satisfiable range; False when the range is
    unsatisfiable (416); None when there is no range to honour (absent, not `bytes=`, several
    ranges, malformed: §14.2 lets a server ignore it and send 200)."""
    if value is None:
        return None
    match = _RANGE_RE.fullmatch(value.strip())
    if match is None:
        return None
    first_text, last_text = match.groups()
    if not first_text:
        if not last_text:
            return None  # "bytes=-": not a range
        suffix = _position(last_text)  # the last N bytes
        if suffix == 0 or size == 0:
            return False  # §14.1.3: a zero-length suffix, or any suffix of an empty file
        return max(0, size - suffix), size - 1
    first = _position(first_text)
    last = _position(last_text) if last_text else size - 1
    if last_text and last < first:
        return None  # invalid: §14.1.1 says such a range-spec is invalid; ignored
    if first >= size:
        return False  # §14.1.1: satisfiable only if first-pos < length
    return first, min(last, size - 1)


def _preconditions_hold(if_match: str | None, if_unmodified_since: str | None,
                        opened: Opened) -> bool:
    """RFC 9110 §13.2.2 steps 1 and 2: If-Match (strong comparison, §13.1.1), else
    If-Unmodified-Since (§13.1.4; an invalid date is ignored). False: 412."""
    if if_match is not None:
        value = if_match.strip()
        return value == "*" or opened.etag in {tag.strip() for tag in value.split(",")}
    if if_unmodified_since is not None:
        since = parse_http_date(if_unmodified_since)
        return since is None or opened.last_modified <= since
    return True


def _if_range_allows(if_range: str | None, opened: Opened) -> bool:
    """§13.1.5: the range applies only if If-Range names the current representation: a strong
    ETag compared strongly, or exactly its Last-Modified date. Otherwise the whole file."""
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith(('"', "W/")):
        return value == opened.etag
    moment = parse_http_date(value)
    return moment is not None and moment == opened.last_modified


async def serve_media(request: web.Request) -> web.StreamResponse:
    media: MediaFolder = request.app[MEDIA]
    segments = request_segments(request.rel_url.raw_path)
    if segments is None:
        raise not_found(request)
    opened = await asyncio.to_thread(media.open, segments)
    if opened is None:
        raise not_found(request)
    try:
        return _respond(request, opened)
    except BaseException:
        os.close(opened.fd)
        raise


def _respond(request: web.Request, opened: Opened) -> web.StreamResponse:
    config = request.app[SETTINGS].current  # cache_max_age: reloaded by SIGHUP
    headers = {
        "ETag": opened.etag,
        "Last-Modified": http_date(opened.last_modified),
        "Cache-Control": f"public, max-age={config.server.cache_max_age}",
        "Accept-Ranges": "bytes",
    }
    asked = request.headers
    if not _preconditions_hold(asked.get("If-Match"), asked.get("If-Unmodified-Since"), opened):
        os.close(opened.fd)
        return web.Response(status=412, headers=headers)
    if not_modified(frozenset((opened.etag,)), opened.last_modified,
                    asked.get("If-None-Match"), asked.get("If-Modified-Since")):
        os.close(opened.fd)
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = served_type(request.rel_url.path)
    # §14.2: Range is defined for GET only; a HEAD gets the whole representation's headers.
    wanted = byte_range(asked.get("Range"), opened.size) if request.method == "GET" else None
    if wanted is not None and not _if_range_allows(asked.get("If-Range"), opened):
        wanted = None
    if wanted is False:
        os.close(opened.fd)
        headers.pop("Content-Type")
        headers["Content-Range"] = f"bytes */{opened.size}"
        return web.Response(status=416, headers=headers)
    if isinstance(wanted, tuple):
        first, last = wanted
        headers["Content-Range"] = f"bytes {first}-{last}/{opened.size}"
        return MediaBody(opened.fd, first, last - first + 1, 206, headers,
                         config.server.send_timeout_s)
    return MediaBody(opened.fd, 0, opened.size, 200, headers, config.server.send_timeout_s)


class MediaBody(web.StreamResponse):
    """`count` bytes of an open file from `offset`, sent with loop.sendfile (the kernel copies
    them: nothing is read into the process), PIECE_BYTES per call. A reader that takes nothing
    for `send_timeout_s` is disconnected, as LargeBody does. The descriptor is closed in all
    cases."""

    def __init__(self, fd: int, offset: int, count: int, status: int,
                 headers: dict[str, str], send_timeout_s: float) -> None:
        super().__init__(status=status, headers=headers)
        self.content_length = count
        self._file = os.fdopen(fd, "rb", buffering=0)
        self._offset = offset
        self._count = count
        self._send_timeout = send_timeout_s

    async def write_eof(self, data: bytes = b"") -> None:
        if not self.prepared or self._eof_sent or self._file.closed:
            await super().write_eof(data)
            return
        try:
            request = self._req
            assert request is not None
            if request.method != "HEAD" and self._count:
                await self._send(request)
            await super().write_eof()
        finally:
            self._file.close()

    async def _send(self, request: web.BaseRequest) -> None:
        loop = asyncio.get_running_loop()
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("connection lost")
        offset, end = self._offset, self._offset + self._count
        kernel_copies = True
        while offset < end:
            piece = min(PIECE_BYTES, end - offset)
            try:
                async with asyncio.timeout(self._send_timeout):
                    if kernel_copies:
                        try:
                            sent = await loop.sendfile(transport, self._file, offset, piece)
                        except NotImplementedError:
                            # uvloop has no sendfile at all (AbstractEventLoop's raises this):
                            # read each piece on a thread and write it, never the whole file.
                            kernel_copies = False
                            sent = await self._read_and_write(loop, offset, piece)
                    else:
                        sent = await self._read_and_write(loop, offset, piece)
            except TimeoutError:
                log.debug("a reader took nothing for %.0f s; connection dropped",
                          self._send_timeout)
                transport.abort()
                raise ConnectionResetError("send timeout") from None
            if not sent:
                raise ConnectionResetError("the file shrank while it was sent")
            offset += sent

    async def _read_and_write(self, loop: asyncio.AbstractEventLoop, offset: int,
                              count: int) -> int:
        data = await loop.run_in_executor(None, os.pread, self._file.fileno(), count, offset)
        if data:
            await self.write(data)  # waits for the transport to drain
        return len(data)

    def __del__(self) -> None:  # a response never prepared (the client went away first)
        file = getattr(self, "_file", None)
        if file is not None and not file.closed:
            file.close()
