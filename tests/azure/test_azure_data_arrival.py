"""A PipelineSchedule's data arrival on Azurite: paged listing, settling, files arriving during a poll."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from parallelrun.runner.schedules import arrival


def poll(uri: str, watermark: arrival.Watermark, settle: int = 1):
    now = datetime.now(timezone.utc)
    return arrival.select(arrival.new_files(uri, "*.csv", watermark), watermark, now, settle)


def test_new_settled_files_page_by_page_and_one_arriving_during_the_poll(azfs, container, connection_string,
                                                                         monkeypatch):
    start = arrival.Watermark(datetime.now(timezone.utc).replace(microsecond=0))
    time.sleep(1.1)  # Azure's times have whole seconds: the files are after the start
    for name in ("a.csv", "b.csv", "sub/c.csv", "skip.txt", "_hidden/x.csv"):
        azfs.pipe_file(f"{container}/in/{name}", b"x\n")
    time.sleep(1.1)  # settled

    listings, real_listing = [], arrival._azure_listing
    monkeypatch.setattr(arrival, "PAGE_SIZE", 2)

    def listing_with_an_arrival(fs, root):
        for i, item in enumerate(real_listing(fs, root)):
            if i == 1 and not listings:  # a file lands while the first listing is under way
                azfs.pipe_file(f"{container}/in/late.csv", b"x\n")
            yield item
        listings.append(root)

    monkeypatch.setattr(arrival, "_azure_listing", listing_with_an_arrival)
    uri = f"az://{container}/in/"
    chosen, moved = poll(uri, start)
    assert chosen == [f"{uri}{name}" for name in ("a.csv", "b.csv", "sub/c.csv")] and moved.time > start.time
    assert poll(uri, moved)[0] == []  # late.csv is not settled yet, the others are handed over
    time.sleep(1.1)
    chosen, moved_again = poll(uri, moved)
    assert chosen == [f"{uri}late.csv"] and moved_again.time >= moved.time

    manifest = arrival.manifest_uri(f"az://{container}/work/", "s", "s-data-1")
    arrival.write_manifest(manifest, chosen)
    assert azfs.cat_file(f"{container}/work/_parallelrun/triggers/s/s-data-1.txt").decode() == f"{uri}late.csv\n"
