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

import logging
import re

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
