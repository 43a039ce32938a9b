"""Assigning mini-batches to shards: contiguous runs of about equal bytes."""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Callable, Sequence
from itertools import accumulate, pairwise, repeat

from ..records import ShardRange
from .model import FileBatches, MiniBatch


def shard(mini_batches: Sequence[MiniBatch], count: int) -> list[ShardRange]:
    """Cut the plan into `count` contiguous shards of about equal bytes, never more shards
    than mini-batches (one empty shard when there are none).

    Contiguous keeps a file's mini-batches together (a worker's row-group cache hits);
    the merge follows plan order, so shard boundaries never change the output.
    """
    n = len(mini_batches)
    count = max(1, min(count, n))
    items_between: Callable[[int, int], int | None]
    if isinstance(mini_batches, FileBatches):
        sizes, items_between = mini_batches.sizes, mini_batches.items_between
    else:
        sizes = [b.size for b in mini_batches]
        items = [b.items for b in mini_batches]

        def items_between(a: int, b: int) -> int | None:
            window = items[a:b]
            return None if None in window else sum(n for n in window if n is not None)
    weights = sizes if 0 not in sizes else list(map(max, sizes, repeat(1)))  # an empty file weighs 1
    cumulative = array("q", accumulate(weights))  # no numpy: a files job does not load it
    total = cumulative[-1] if n else 0
    bounds = [0]
    for k in range(1, count):
        balanced = bisect_left(cumulative, total * k / count) + 1 if n else 0
        # at least one mini-batch for this shard, and one left for each later shard while there are any
        bounds.append(min(max(balanced, bounds[-1] + 1), max(n - (count - k), bounds[-1] + 1), n))
    bounds.append(n)
    return [ShardRange(k, a, b - a, items_between(a, b), sum(sizes[a:b]))
            for k, (a, b) in enumerate(pairwise(bounds))]


def shards_with_work(total_mini_batches: int, node_count: int) -> int:
    """How many shards a plan has (shard()): one per mini-batch up to nodeCount; an empty plan's one."""
    return max(1, min(total_mini_batches, node_count))
