"""Text bound for a log line, a terminal or `feedsvc check`: nothing in it may start a line,
move the cursor, or fail to encode.

File names and seed texts come from whoever can write into the seeds folder. A name holding
`\\n2026-11-29 00:00:00,000 INFO published FORGED` would forge a log record; an ESC sequence
would drive the operator's terminal; a byte that is not UTF-8 (os.fsdecode gives it as a lone
surrogate, PEP 383) makes `print` and `json.dumps(...).encode()` raise. Each of them is written
as a visible escape instead, the way Python's repr() writes it, so the line stays one line and
says what the name holds.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime

#: C0 controls (tab and newline included: a record is one line), DEL, C1 controls (NEL U+0085
#: ends a line for some readers), the Unicode line and paragraph separators, the bidirectional
#: overrides and isolates that reorder what a terminal shows ("Trojan Source",
#: CVE-2021-42574), and surrogates: the bytes os.fsdecode could not decode, or worse.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")

_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:
        # surrogateescape's form of one undecodable byte: show the byte itself.
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def escape(text: str) -> str:
    """`text` with every control character, line separator, bidi override and undecodable
    byte written as a backslash escape (`\\n`, `\\x1b`, `\\xe9` for a Latin-1 byte)."""
    return _UNSAFE.sub(_escape_one, text)


def is_utf8(text: str) -> bool:
    """Whether a str (e.g. from os.fsdecode) encodes to UTF-8: False when it holds lone
    surrogates, the bytes of a name that was not UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class EscapingFormatter(logging.Formatter):
    """A Formatter whose every record is one line: the message (with its arguments: a file
    name, a seed's text, an exception's str) is escaped. Installed on the handler itself, so
    no log call anywhere can forget it. A traceback stays on its own lines, with everything
    but its line breaks escaped."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        # format() has just set record.message = record.getMessage(); other handlers (pytest's
        # caplog) see the record as it was.
        message = record.message
        record.message = escape(message)
        try:
            return super().formatMessage(record)
        finally:
            record.message = message

    def formatException(self, ei: object) -> str:
        text = super().formatException(ei)  # type: ignore[arg-type]
        return "\n".join(escape(line) for line in text.split("\n"))

    def formatStack(self, stack_info: str) -> str:
        return "\n".join(escape(line) for line in stack_info.split("\n"))


#: sd-daemon(3) / syslog(3) priorities of Python's levels: <3> error, <4> warning, <6> info,
#: <7> debug (critical: <2>).
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4),
               (logging.INFO, 6))
DEBUG_PRIORITY = 7


def syslog_priority(levelno: int) -> int:
    for level, priority in _PRIORITIES:
        if levelno >= level:
            return priority
    return DEBUG_PRIORITY


def stderr_is_journal(environ: Mapping[str, str], stderr_fd: int = 2) -> bool:
    """systemd connects stderr to the journal and says so in $JOURNAL_STREAM, "device:inode"
    of that stream (systemd.exec(5)); it is inherited by children whose stderr may be
    something else, so the pair must match stderr's own fstat."""
    value = environ.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat(stderr_fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


class JournalFormatter(EscapingFormatter):
    """For stderr connected to journald: every line starts with `<N>`, the record's syslog
    priority (sd-daemon(3)), a traceback's lines too (journald reads each line as an entry,
    and one without a prefix would get the default, info); no timestamp, journald adds its
    own."""

    def __init__(self, fmt: str = "%(message)s") -> None:
        super().__init__(fmt)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


#: The attributes every LogRecord has: anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """`[log] format = "json"`: one JSON object per line: time (UTC, ISO 8601, milliseconds;
    left out for the journal, which dates each entry itself), level, logger, message, the
    record's extra fields, and the traceback as `exception`. Strings are escaped as in the
    text lines (logtext.escape): a name's undecodable bytes, bidi overrides and controls stay
    visible, and the line stays one line."""

    def __init__(self, journal: bool = False) -> None:
        super().__init__()
        self._journal = journal

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {}
        if not self._journal:
            moment = datetime.fromtimestamp(record.created, UTC)
            entry["time"] = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        entry["level"] = record.levelname.lower()
        entry["logger"] = record.name
        entry["message"] = escape(record.getMessage())
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in entry:
                entry[key] = _json_value(value)
        if record.exc_info:
            entry["exception"] = escape(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = escape(record.exc_text)
        if record.stack_info:
            entry["stack"] = escape(self.formatStack(record.stack_info))
        line = json.dumps(entry, ensure_ascii=False)
        return f"<{syslog_priority(record.levelno)}>{line}" if self._journal else line


def _json_value(value: object) -> object:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, list | tuple):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        return {escape(str(k)): _json_value(v) for k, v in value.items()}
    return escape(str(value))


def setup_logging(level: str, log_format: str = "text") -> None:
    """Records to stderr at `level` ("debug" … "error"), as text or JSON lines (`log_format`);
    with `<N>` priorities and no timestamp when stderr is the journal ($JOURNAL_STREAM names
    it: systemd.exec(5)). Called again by a reload: it replaces what it set before."""
    journal = stderr_is_journal(os.environ)
    # Every record one line, whatever a file name or a seed holds (log injection, terminal
    # escapes, undecodable bytes): escaped by the handler's formatter, not by each call.
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(journal=journal))
    elif journal:
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(EscapingFormatter("%(asctime)s %(levelname)s %(message)s"))
    number = getattr(logging, level.upper())
    logging.basicConfig(level=number, handlers=[handler], force=True)
    # aiohttp's own INFO lines are noise next to ours (at debug level, everything is shown).
    logging.getLogger("aiohttp").setLevel(logging.WARNING if number > logging.DEBUG
                                          else logging.NOTSET)
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.INFO)  # shown only when switched on
