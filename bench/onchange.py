"""What `[build] on_change` costs per single-seed change: the write `serve` makes after a batch.

    python bench/onchange.py CONFIG [--rounds N] [--assume-current]

CONFIG names a seeds folder, a state and an output already built (`feedsvc build`) by the
feedsvc on `PYTHONPATH`. In one process, as `serve` does: scan, then a first write (the one
after a start: everything rendered and compared; `--assume-current` skips it and trusts the
output, which must then be exactly what this feedsvc writes for this state), then N rounds
of: one new seed dropped (the newest entry), the batch published (`Publisher.update`), the
site written (`SiteBuilder.write(snapshot, changed)`), each timed. Prints one JSON line per
round and the medians. The seeds folder gains N files (`bench-onchange-*.txt`).

Compare versions in the same run, interleaved, on copies of the same corpus (see
COMMON: `git archive <commit> feedsvc | tar -x -C /tmp/vers/<c>`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--assume-current", action="store_true")
    args = parser.parse_args()

    from feedsvc.config import load_config
    from feedsvc.publish.publisher import Publisher
    from feedsvc.publish.sitebuild import SiteBuilder
    from feedsvc.serve.websub.topics import changed_feed_documents

    config = load_config(args.config)
    publisher = Publisher.open(config)
    started = time.perf_counter()
    snapshot = publisher.scan()
    publisher.take_changed()
    scanned = time.perf_counter() - started
    builder = SiteBuilder(config)
    builder.start(publisher.info)
    started = time.perf_counter()
    if args.assume_current:
        builder._full = True
        site = builder.site
        if hasattr(site, "versions"):  # numbered from the oldest: what is on disk
            builder._page_versions = site.versions()
            builder._entry_marks = {hash((slug, updated))
                                    for _, slug, updated in site.published_keys()}
    else:
        builder.write(snapshot)
    first = time.perf_counter() - started
    print(json.dumps({"feedsvc": str(Path(sys.modules["feedsvc"].__file__).parent),
                      "entries": snapshot.published_count, "scan_s": round(scanned, 3),
                      "first_write_s": round(first, 3)}), flush=True)
    rounds = []
    try:
        for n in range(args.rounds):
            name = f"bench-onchange-{os.getpid()}-{n}.txt"
            path = config.paths.seeds / name
            path.write_text(f"bench-onchange-{os.getpid()}-{n}\nDépêche {n}\n\nTexte {n}.\n",
                            "utf-8")
            started = time.perf_counter()
            snapshot = publisher.update([path])
            changed = changed_feed_documents(snapshot, publisher.take_changed())
            published = time.perf_counter() - started
            started = time.perf_counter()
            counts = builder.write(snapshot, changed)
            written = time.perf_counter() - started
            row = {"round": n, "publish_s": round(published, 4), "write_s": round(written, 4),
                   "written": counts.written, "removed": counts.removed,
                   "load": os.getloadavg()[0]}
            rounds.append(row)
            print(json.dumps(row), flush=True)
            time.sleep(1.1)  # the next seed's mtime: a later second
    finally:
        builder.close()
        publisher.close()
    if rounds:
        print(json.dumps({"median_write_s": statistics.median(r["write_s"] for r in rounds),
                          "median_written": statistics.median(r["written"] for r in rounds)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
