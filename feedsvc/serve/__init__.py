"""Stage 4, serve: the aiohttp application (`app`, `routes`, `handlers`), the `pipeline` that
turns watcher batches into snapshots, the worker processes' messages (`workers`), and the
HTTP decisions and connection limits (`negotiation`, `connections`)."""
