"""The application's state, named: one web.AppKey per thing the handlers and the cleanup
contexts share.

A leaf: at run time it imports nothing of feedsvc.serve, so every other serving module can
import it without a cycle. The two values serve/ defines itself are named for the type
checker only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from feedsvc.config import Config
from feedsvc.publish.archives import ArchivePages
from feedsvc.publish.longtail import EntryPages
from feedsvc.publish.sitefiles import SiteFiles
from feedsvc.publish.sitepages import SitePages
from feedsvc.publish.snapshot import Live

if TYPE_CHECKING:
    from feedsvc.serve.health import LiveHealth
    from feedsvc.serve.mediafolder import MediaFolder
    from feedsvc.serve.pipeline import SnapshotListener
    from feedsvc.serve.service import LiveConfig, Service
    from feedsvc.serve.workers import Followers


#: The config the process started with: what only a restart changes (host, port, paths…).
CONFIG = web.AppKey("config", Config)
#: The config in force (SIGHUP reloads it): feed settings, cache ages.
SETTINGS: web.AppKey[LiveConfig] = web.AppKey("settings")
#: The leader's: systemd's notifications and SIGHUP's reloads.
SERVICE: web.AppKey[Service] = web.AppKey("service")
#: The current snapshot: every document a request can get.
LIVE = web.AppKey("live", Live)
#: The current HealthStatus: what /healthz reports beyond the snapshot.
STATUS: web.AppKey[LiveHealth] = web.AppKey("status")
#: Entries' pages not in the snapshot (the long tail), read from the state.
PAGES = web.AppKey("pages", EntryPages)
#: RFC 5005 archive pages, read from the state and rendered on request.
ARCHIVE_PAGES = web.AppKey("archive_pages", ArchivePages)
#: The site's pages made from the state: older front pages, tag pages, the list of tags.
SITE_PAGES = web.AppKey("site_pages", SitePages)
#: The feeds' stylesheet, /feeds.opml and /sitemap.xml.
SITE_FILES = web.AppKey("site_files", SiteFiles)
#: The media folder served at /media/, with the ETags of its files.
MEDIA: web.AppKey[MediaFolder] = web.AppKey("media")
#: The leader's: the other worker processes, sent each new snapshot.
FOLLOWERS: web.AppKey[Followers] = web.AppKey("followers")
#: Told of every batch that changed feed documents (WebSub); cleanup contexts that run before
#: the pipeline's add to it.
SNAPSHOT_LISTENERS: web.AppKey[list[SnapshotListener]] = web.AppKey("snapshot_listeners")
