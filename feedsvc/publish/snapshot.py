"""Documents → immutable snapshots with strong ETags, their compressed variants, the live one."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType

import brotli
from multidict import CIMultiDict, CIMultiDictProxy
from zlib_ng import gzip_ng

from feedsvc.errors import Rejection
from feedsvc.httpdates import http_date
from feedsvc.model import ArchiveSpan, Document, Snapshot, Variant

#: gzip level and brotli quality: within a few percent of their best ratio on feed text, at
#: under 1 ms per 100 KB each (level 9 / quality 11 cost 2x / 20x that for 1-3 % smaller).
#: gzip goes through zlib-ng: the same format and ratio as zlib at level 6, twice as fast.
GZIP_LEVEL = 6
BROTLI_QUALITY = 5


#: How much lower the compressor threads' scheduling priority is (Linux nice, per thread).
#: The gzip and br variants of a change are made after it is served (`make_documents`
#: `later`): on a machine with few cores they must not take the CPU from the thread that
#: renders and commits the change, nor from the event loop serving it.
COMPRESSOR_NICENESS = 10


def _lower_priority() -> None:
    # Without per-thread priorities (not Linux): the same as the other threads.
    with contextlib.suppress(AttributeError, OSError):
        thread = threading.get_native_id()
        niceness = os.getpriority(os.PRIO_PROCESS, thread)  # the process's, inherited
        os.setpriority(os.PRIO_PROCESS, thread, min(19, niceness + COMPRESSOR_NICENESS))


#: zlib and brotli release the GIL: the few documents of a change compress side by side.
_COMPRESSORS = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2),
                                  thread_name_prefix="feedsvc-compress",
                                  initializer=_lower_priority)


def _gzip(body: bytes) -> bytes:
    return gzip_ng.compress(body, compresslevel=GZIP_LEVEL, mtime=0)


def body_digest(body: bytes) -> str:
    """The hash of a document's identity bytes: its ETag, and what dates it (Revision)."""
    return hashlib.blake2b(body, digest_size=16).hexdigest()


_digest = body_digest


#: The largest brotli window, as a power of two: 1 MiB. Brotli's own default (22: 4 MiB)
#: makes the encoder hold a 4 MiB ring buffer whatever the input's size: with 2 compressor
#: threads, 3.6 MiB of a server's resident memory, for not one byte less on a 160 KB feed.
#: A decoder needs the window too: a smaller one spares readers' memory as well.
BROTLI_WINDOW_BITS_MAX = 20
BROTLI_WINDOW_BITS_MIN = 16


def brotli_window_bits(size: int) -> int:
    """The window a body of `size` bytes needs (no back reference reaches further than its
    own length), within [BROTLI_WINDOW_BITS_MIN, BROTLI_WINDOW_BITS_MAX]: the same bytes as
    brotli's default window for every body up to 1 MiB, but for the window size it names."""
    return min(BROTLI_WINDOW_BITS_MAX, max(BROTLI_WINDOW_BITS_MIN, (size - 1).bit_length()))


def _brotli(body: bytes) -> bytes:
    return brotli.compress(body, quality=BROTLI_QUALITY, lgwin=brotli_window_bits(len(body)))


@dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered body waiting for its variants."""

    path: str
    content_type: str
    body: bytes
    last_modified: datetime
    #: The document's modified moment before this one, when known (same-second changes).
    previous: datetime | None = None
    digest: str | None = None  # of `body`, when already computed
    #: The HTTP `Link` header of a feed document that advertises hubs (ids.discovery_link).
    link: str | None = None


def make_documents(rendered: Sequence[Rendered], cache_max_age: int = 60,
                   later: list[Future[None]] | None = None) -> list[Document]:
    """Several documents at once, their compressions run in parallel.

    `later`: return as soon as the identity bodies are hashed, without waiting for the
    compressions. Each document then has its identity variant only (all its ETags are known:
    they derive from the hash); its gzip and br variants are added to it, in place, once every
    compression of the call is done, and a future appended to `later` completes then (the
    server publishes the identity bytes first, and a request for a coding waits for that
    future: see `Live.coding`). The variants are the same bytes as without `later`."""
    if len(rendered) == 1 and later is None:
        doc = rendered[0]
        return [make_document(doc.path, doc.content_type, doc.body, doc.last_modified,
                              cache_max_age, digest=doc.digest, previous=doc.previous,
                              link=doc.link)]
    # Largest first: the two feeds' jobs start at once and the small pages fill the gaps.
    largest_first = sorted(range(len(rendered)), key=lambda i: -len(rendered[i].body))
    jobs = {(i, coder): _COMPRESSORS.submit(coder, rendered[i].body)
            for i in largest_first for coder in (_brotli, _gzip)}
    digests = [d.digest or _digest(d.body) for d in rendered]  # meanwhile, on this thread
    if later is None:
        return [make_document(d.path, d.content_type, d.body, d.last_modified, cache_max_age,
                              coded=(jobs[i, _gzip].result(), jobs[i, _brotli].result()),
                              digest=digests[i], previous=d.previous, link=d.link)
                for i, d in enumerate(rendered)]
    made = [_made(d.path, d.content_type, d.body, d.last_modified, cache_max_age, None,
                  digests[i], d.previous, d.link)
            for i, d in enumerate(rendered)]
    later.append(_when_coded(made, jobs))
    return [document for document, _ in made]


Job = tuple[int, Callable[[bytes], bytes]]


def _when_coded(made: Sequence[tuple[Document, Callable[[bytes, bytes], None]]],
                jobs: Mapping[Job, Future[bytes]]) -> Future[None]:
    """A future done once every job is and the documents' coded variants are added."""
    done: Future[None] = Future()
    remaining = [len(jobs)]
    lock = threading.Lock()

    def finished(_: Future[bytes]) -> None:
        with lock:
            remaining[0] -= 1
            if remaining[0]:
                return
        try:
            for i, (document, add_coded) in enumerate(made):
                add_coded(_result_or_again(jobs[i, _gzip], _gzip, document.body),
                          _result_or_again(jobs[i, _brotli], _brotli, document.body))
        except BaseException as e:
            done.set_exception(e)  # for whoever waits for it
        else:
            done.set_result(None)

    for job in jobs.values():
        job.add_done_callback(finished)
    if not jobs:
        done.set_result(None)
    return done


def _result_or_again(job: Future[bytes], coder: Callable[[bytes], bytes], body: bytes) -> bytes:
    """A job's bytes; compressed once more, here, if the job failed (out of memory, say)."""
    try:
        return job.result()
    except Exception:
        return coder(body)


def make_document(path: str, content_type: str, body: bytes, last_modified: datetime,
                  cache_max_age: int = 60, coded: tuple[bytes, bytes] | None = None,
                  digest: str | None = None, previous: datetime | None = None,
                  cache_control: str | None = None, link: str | None = None) -> Document:
    """A document in every coding, compressed once here and never per request.

    Its strong ETag is a hash of the identity bytes; a coded variant's ETag is that hash with
    the coding appended. Same document, same ETags, on any machine, even where another zlib or
    brotli build would compress to other bytes: a fleet behind a load balancer agrees.

    `previous`: when the document was modified before (None: not known to be in the same
    second). The Last-Modified header has whole seconds; when the previous version falls in
    the same second, a client holding that second may hold the previous bytes, so an
    If-Modified-Since of that second must get 200 (RFC 9110 §8.8.2.2, §13.1.3).
    `cache_control`: instead of `public, max-age={cache_max_age}` (a full archive page's
    `immutable`). `link`: a `Link` header (WebSub §4 discovery), on 200 and 304 alike."""
    digest = digest or _digest(body)
    document, add_coded = _made(path, content_type, body, last_modified, cache_max_age,
                                cache_control, digest, previous, link)
    add_coded(*(coded if coded is not None else (_gzip(body), _brotli(body))))
    return document


def make_document_soon(path: str, content_type: str, body: bytes, last_modified: datetime,
                       cache_max_age: int = 60, previous: datetime | None = None,
                       cache_control: str | None = None, link: str | None = None) -> Document:
    """`make_document`, returned once its identity variant is made (every ETag is known):
    its gzip and br variants are added by the compressor threads, the same bytes as ever."""
    digest = _digest(body)
    made = _made(path, content_type, body, last_modified, cache_max_age, cache_control,
                 digest, previous, link)
    _when_coded([made], {(0, coder): _COMPRESSORS.submit(coder, body)
                         for coder in (_brotli, _gzip)})
    return made[0]


class Headers(CIMultiDictProxy[str]):
    """A variant's response headers, made once: read-only, and of the type aiohttp keeps a
    response's headers in (multidict's), which it copies several times faster than a dict or
    a MappingProxyType when a response is made of them (the per-request part of serving)."""

    #: The serving side's cache of this variant's serialized response heads (serve/handlers.py
    #: Ready): (the Date they carry, {what else varies: bytes}), None until the first
    #: response. Not pickled.
    __slots__ = ("heads",)
    heads: tuple[str, dict[tuple[object, ...], bytes]] | None

    def __reduce__(self) -> tuple[Callable[[tuple[tuple[str, str], ...]], Headers],
                                  tuple[tuple[tuple[str, str], ...]]]:
        # (multidict's proxies do not pickle; snapshots go to the other workers pickled)
        return headers_of, (tuple(self.items()),)


def headers_of(items: Iterable[tuple[str, str]] | Mapping[str, str]) -> Headers:
    headers = Headers(CIMultiDict(items))
    headers.heads = None
    return headers


#: The content codings of every document, in the order of its variants.
CODINGS = ("identity", "gzip", "br")


def _made(path: str, content_type: str, body: bytes, last_modified: datetime,
          cache_max_age: int, cache_control: str | None, digest: str,
          previous: datetime | None, link: str | None = None
          ) -> tuple[Document, Callable[[bytes, bytes], None]]:
    """The document with its identity variant, and the function that adds the coded ones (to
    its variants' mapping, read-only to everyone else: each variant goes in whole)."""
    second = last_modified.replace(microsecond=0)
    same_second = previous is not None and previous.replace(microsecond=0) == second
    unchanged_since = second + timedelta(seconds=1) if same_second else second
    common = {
        "Last-Modified": http_date(last_modified),
        "Cache-Control": cache_control or f"public, max-age={cache_max_age}",
        "Vary": "Accept-Encoding",
    }
    if link is not None:
        common["Link"] = link

    def variant(coding: str, coded_body: bytes) -> Variant:
        etag = _etag(digest, coding)
        validators = {"ETag": etag, **common}
        headers = {"Content-Type": content_type, **validators}
        if coding != "identity":
            headers["Content-Encoding"] = coding
        return Variant(coding, coded_body, etag, headers_of(headers), headers_of(validators))

    variants = {"identity": variant("identity", body)}

    def add_coded(gzipped: bytes, brotlied: bytes) -> None:
        variants["gzip"] = variant("gzip", gzipped)
        variants["br"] = variant("br", brotlied)

    document = Document(path=path, content_type=content_type, body=body, etag=f'"{digest}"',
                        last_modified=last_modified, variants=MappingProxyType(variants),
                        etags=frozenset(_etag(digest, coding) for coding in CODINGS),
                        unchanged_since=unchanged_since)
    return document, add_coded


def _etag(digest: str, coding: str) -> str:
    return f'"{digest}"' if coding == "identity" else f'"{digest}-{coding}"'


def make_snapshot(documents: Iterable[Document], published_count: int,
                  rejected: Iterable[Rejection], changed_at: datetime | None,
                  seeds_readable: bool = True, generation: int = 0, draft_count: int = 0,
                  scheduled: tuple[tuple[str, datetime], ...] = (),
                  gone_at: Mapping[str, int] | None = None,
                  archive: ArchiveSpan | None = None,
                  warnings: tuple[Rejection, ...] = ()) -> Snapshot:
    return Snapshot(
        documents=MappingProxyType({doc.path: doc for doc in documents}),
        published_count=published_count,
        rejected=tuple(rejected),
        changed_at=changed_at,
        seeds_readable=seeds_readable,
        generation=generation,
        draft_count=draft_count,
        scheduled=scheduled,
        gone_at=MappingProxyType(gone_at if gone_at is not None else {}),
        archive=archive,
        warnings=warnings,
    )


class Live:
    """Holds the current snapshot. Replacing the reference is the atomic swap: a request reads
    `current` once and answers from that snapshot alone, so a body always matches its ETag.

    `coding`: the compressions still running for the documents of `current` that have their
    identity variant only (`make_documents(later=…)`): the server swaps a change in as soon as
    its bytes are dated, hashed and durable, and a request for gzip or br of such a document
    waits for these (`coded`). Set before `current`; replaced only once they are done."""

    def __init__(self, snapshot: Snapshot | None = None) -> None:
        self.current = snapshot if snapshot is not None else Snapshot()
        self.coding: tuple[Future[None], ...] = ()

    async def coded(self) -> None:
        """Wait, off the event loop's time, for the compressions of the current documents."""
        if self.coding:
            await asyncio.gather(*(asyncio.wrap_future(f) for f in self.coding))
