"""A subscription request to the built-in hub (W3C WebSub §5.1), parsed and validated. Pure:
no socket, no disk; `BadRequest` carries the HTTP status and a plain-text reason (§5.1.2:
"hubs SHOULD return a description of the error in the response body as plain text")."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from feedsvc.config import Config
from feedsvc.errors import FeedsvcError
from feedsvc.serve.websub.callbacks import parse_address, unsafe_reason
from feedsvc.serve.websub.topics import topic_path, topic_url

#: A request body larger than this is refused (413): a topic URL, a callback URL of at most
#: MAX_URL_CHARS, a secret under 200 bytes, percent-encoded, fit in a fraction of it.
MAX_REQUEST_BYTES = 16 * 1024
#: Longest topic or callback URL taken (the de-facto limit of browsers and most servers).
MAX_URL_CHARS = 2048
#: §5.1: hub.secret "MUST be less than 200 bytes in length".
SECRET_MAX_BYTES = 199

FORM_TYPE = "application/x-www-form-urlencoded"
MODES = ("subscribe", "unsubscribe")


class BadRequest(FeedsvcError):
    """A subscription request the hub refuses at once: `status` (4xx) and a reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SubscriptionRequest:
    mode: str  # "subscribe" or "unsubscribe"
    topic: str  # the topic URL (non-reserved characters decoded: §5.1.1)
    path: str  # the URL path of its document ("/feed.atom")
    callback: str
    secret: bytes | None  # None: deliveries unsigned
    lease_s: int  # granted (clamped); 0 for unsubscribe


#: RFC 3986 §2.3 unreserved characters: percent-encoding them changes nothing, so §5.1.1
#: "Hubs MUST always decode non-reserved characters for these URL parameters" (a topic or a
#: callback written %7E or ~ is the same URL, and the same subscription).
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")


def decode_unreserved(url: str) -> str:
    def decode(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else match.group(0)

    return _PERCENT.sub(decode, url)


def check_content_type(content_type: str | None) -> None:
    """§5.1: the request "MUST have a Content-Type header of
    application/x-www-form-urlencoded" (parameters such as charset=UTF-8 allowed)."""
    media_type = (content_type or "").partition(";")[0].strip().lower()
    if media_type != FORM_TYPE:
        raise BadRequest(415, f"the request body must be {FORM_TYPE} "
                              f"(got {media_type or 'no Content-Type'})")


def parse_request(config: Config, body: bytes) -> SubscriptionRequest:
    """The request in `body` (form-encoded), or BadRequest saying what is wrong."""
    if len(body) > MAX_REQUEST_BYTES:
        raise BadRequest(413, f"the request body is over {MAX_REQUEST_BYTES} bytes")
    try:
        # §5.1: the body "MUST use UTF-8"; parse_qsl decodes percent-escapes as UTF-8 too.
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError) as e:
        raise BadRequest(400, f"the form is not URL-encoded UTF-8: {e}") from e
    params: dict[str, str] = {}
    for name, value in pairs:
        if name.startswith("hub."):
            if name in params:
                raise BadRequest(400, f"{name} is given more than once")
            params[name] = value
        # §5.1: "Hubs MUST ignore additional request parameters they do not understand."
    mode = _required(params, "hub.mode")
    if mode not in MODES:
        raise BadRequest(400, f"hub.mode must be subscribe or unsubscribe, not {mode!r}"
                         + (" (this hub distributes this service's own feeds: no publish "
                            "ping is needed)" if mode == "publish" else ""))
    topic = decode_unreserved(_required(params, "hub.topic"))
    path = topic_path(config, topic) if len(topic) <= MAX_URL_CHARS else None
    if path is None:
        # §5.1.1: "Hubs MAY refuse subscriptions if the topic URL does not correspond to the
        # one advertised by the publisher."
        raise BadRequest(400, f"hub.topic {_shown(topic)} is not a feed of this service "
                              f"(its feeds are under {config.feed.base_url})")
    callback = check_callback_url(decode_unreserved(_required(params, "hub.callback")))
    secret = None
    if mode == "subscribe":
        secret = _secret(params.get("hub.secret"))
    return SubscriptionRequest(
        # The topic as topic_url makes it (the same string: the content distribution
        # looks subscriptions up by it).
        mode=mode, topic=topic_url(config, path), path=path, callback=callback, secret=secret,
        # §5.1: hub.lease_seconds "MAY be present for unsubscription requests and MUST be
        # ignored by the hub in that case".
        lease_s=_lease(config, params.get("hub.lease_seconds")) if mode == "subscribe" else 0)


def check_callback_url(callback: str) -> str:
    """`callback` if it is an absolute http or https URL with a host and no fragment."""
    if not callback:
        raise BadRequest(400, "hub.callback is empty")
    if len(callback) > MAX_URL_CHARS:
        raise BadRequest(400, f"hub.callback is over {MAX_URL_CHARS} characters")
    if any(c <= " " or c == "\x7f" for c in callback) or not callback.isascii():
        raise BadRequest(400, "hub.callback has spaces, control or non-ASCII characters "
                              "(percent-encode them)")
    try:
        parts = urlsplit(callback)
        host, _ = parts.hostname, parts.port  # .port raises on a bad one
    except ValueError as e:
        raise BadRequest(400, f"hub.callback {_shown(callback)} is not a URL: {e}") from e
    if parts.scheme.lower() not in ("http", "https"):
        # §5.1.1: "The topic and callback URLs MAY use HTTP or HTTPS schemes."
        raise BadRequest(400, "hub.callback must be an http or https URL")
    if not host:
        raise BadRequest(400, "hub.callback has no host")
    if parts.username is not None or parts.password is not None:
        raise BadRequest(400, "hub.callback must not carry a user name or password")
    if "#" in callback:
        raise BadRequest(400, "hub.callback must not have a fragment (#…)")
    return callback


def refused_address(callback: str) -> str | None:
    """Why a callback whose host is an IP literal may not be contacted ("loopback", …), or
    None (a name, or a public address): told at once, no resolution needed."""
    address = parse_address(urlsplit(callback).hostname or "")
    return unsafe_reason(address) if address is not None else None


def _required(params: dict[str, str], name: str) -> str:
    value = params.get(name)
    if value is None:
        raise BadRequest(400, f"{name} is missing")
    return value


def _secret(value: str | None) -> bytes | None:
    """§5.1: hub.secret is optional and "MUST be less than 200 bytes in length". It "SHOULD
    only be specified when the request was made over HTTPS": a rule for the subscriber; the
    hub "MUST accept a subscription request with a hub.secret parameter" (§3.1), and behind
    a TLS-terminating proxy it cannot tell the subscriber's scheme anyway. An empty one is no
    secret (an HMAC keyed with nothing authenticates nothing)."""
    if not value:
        return None
    secret = value.encode("utf-8")
    if len(secret) > SECRET_MAX_BYTES:
        raise BadRequest(400, f"hub.secret must be less than 200 bytes (it has {len(secret)})")
    return secret


def _lease(config: Config, value: str | None) -> int:
    """The lease granted, in seconds: the one asked for within [lease_min_s, lease_max_s]
    (§5.1: "Hubs MAY choose to respect this value or not"; §5.3.1: "Hubs MUST enforce lease
    expirations, and MUST NOT issue perpetual lease durations"), else lease_default_s (§8.2:
    "10 days is a good default")."""
    websub = config.websub
    if value is None or value == "":
        return websub.lease_default_s
    # §5.1: "given as a positive decimal integer".
    if not (value.isascii() and value.isdigit()) or len(value) > 12 or int(value) == 0:
        raise BadRequest(400, f"hub.lease_seconds must be a positive decimal integer, "
                              f"not {_shown(value)}")
    return min(max(int(value), websub.lease_min_s), websub.lease_max_s)


def _shown(text: str) -> str:
    """A value quoted for a reason, cut short: a reason is one readable line."""
    return repr(text if len(text) <= 200 else text[:200] + "…")
