"""The hub's two GETs to a callback: verification of intent (W3C WebSub §5.3) and denial
(§5.2). Each is preceded by `check_callback` (callbacks.py) and sent by a session that
connects only to safe addresses, with no redirect followed."""

from __future__ import annotations

import logging
import secrets
from urllib.parse import urlencode

import aiohttp

from feedsvc.logtext import escape
from feedsvc.serve.websub.callbacks import CallbackError, check_callback

log = logging.getLogger("feedsvc")

#: Bytes of a verification answer read at most: the challenge is 43 characters, so anything
#: longer is a wrong answer, and the rest is not worth reading.
MAX_ANSWER_BYTES = 1024


def with_query(callback: str, params: dict[str, str]) -> str:
    """`callback` with `params` appended to its query. §5.1.1: "Hubs MUST preserve the query
    string during subscription verification by appending new parameters to the end of the
    list using the & (ampersand) character to join" (and existing parameters with the same
    names are not overwritten: they stay, ours come after)."""
    query = urlencode(params)
    if "?" not in callback:
        return f"{callback}?{query}"
    return f"{callback}{'' if callback.endswith(('?', '&')) else '&'}{query}"


async def verify_intent(session: aiohttp.ClientSession, *, mode: str, topic: str,
                        callback: str, lease_s: int, allow_private: bool) -> bool:
    """§5.3: GET callback?hub.mode&hub.topic&hub.challenge[&hub.lease_seconds]; True only if
    the answer is a 2xx whose body is exactly the challenge (§5.3.1: "other server response
    codes (3xx, 4xx, 5xx) … mean that the verification request has failed. If the subscriber
    returns an HTTP success (2xx) but the content body does not match the hub.challenge
    parameter, the hub MUST also consider verification to have failed")."""
    # §8.2: "the hub SHOULD use a random, single-use hub.challenge".
    challenge = secrets.token_urlsafe(32)
    params = {"hub.mode": mode, "hub.topic": topic, "hub.challenge": challenge}
    if mode == "subscribe":  # §5.3: "Hubs MUST supply this parameter when hub.mode is
        params["hub.lease_seconds"] = str(lease_s)  # set to "subscribe"."
    url = with_query(callback, params)
    try:
        await check_callback(callback, allow_private=allow_private)
        async with session.get(url, allow_redirects=False) as response:
            answer = await read_at_most(response.content, MAX_ANSWER_BYTES)
            status = response.status
    except CallbackError as e:
        log.warning("WebSub: %s %s refused: %s", mode, escape(callback), e)
        return False
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
        log.info("WebSub: verification of %s %s for %s failed: %s", mode, escape(callback),
                 escape(topic), escape(str(e) or type(e).__name__))
        return False
    verified = 200 <= status < 300 and answer == challenge.encode("ascii")
    log.info("WebSub: %s %s for %s %s (%d)", mode, escape(callback), escape(topic),
             "verified" if verified else "NOT verified", status)
    return verified


async def deny(session: aiohttp.ClientSession, *, topic: str, callback: str, reason: str,
               allow_private: bool) -> None:
    """§5.2: "If (and when) the subscription is denied, the hub MUST inform the subscriber"
    by GET callback?hub.mode=denied&hub.topic&hub.reason; never to an unsafe address (the
    caller checked it; checked again here, DNS can change). Failures are only logged."""
    url = with_query(callback, {"hub.mode": "denied", "hub.topic": topic,
                                "hub.reason": reason})
    try:
        await check_callback(callback, allow_private=allow_private)
        async with session.get(url, allow_redirects=False) as response:
            await read_at_most(response.content, MAX_ANSWER_BYTES)
    except (CallbackError, aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
        log.info("WebSub: denial to %s not sent: %s", escape(callback),
                 escape(str(e) or type(e).__name__))


async def read_at_most(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """A body (a request's or a response's), or its first `limit` + 1 bytes: enough to know
    it is longer, whatever it says of its length (a chunked one says nothing)."""
    body = bytearray()
    while len(body) <= limit:
        chunk = await stream.read(limit + 1 - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body)
