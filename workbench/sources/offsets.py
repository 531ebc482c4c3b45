"""Which offsets of a partition were already read: the memory behind de-duplication.

A message is a duplicate only if its exact (topic, partition, offset) was read before, whatever
the order of the files and blocks it came in. The offsets seen are kept as sorted disjoint
ranges, merged on insert: a partition read in order (or in a few pieces, in any order) is one
range, however long. Only gaps (a compacted topic, a bogus offset) add ranges.
"""

from __future__ import annotations

from bisect import bisect_right


class SeenOffsets:
    """The offsets of one partition read so far, as ranges ``starts[i]..ends[i]``."""

    __slots__ = ("starts", "ends")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def free(self, first: int, last: int) -> bool:
        """No offset of ``first..last`` was seen."""
        i = bisect_right(self.starts, last)
        return not i or self.ends[i - 1] < first

    def add(self, first: int, last: int) -> bool:
        """Record ``first..last``; False (recording nothing) if any of them was seen."""
        starts, ends = self.starts, self.ends
        i = bisect_right(starts, last)  # the ranges before i start at or before `last`
        if i and ends[i - 1] >= first:
            return False
        left = i and ends[i - 1] == first - 1
        right = i < len(starts) and starts[i] == last + 1
        if left and right:
            ends[i - 1] = ends[i]
            del starts[i], ends[i]
        elif left:
            ends[i - 1] = last
        elif right:
            starts[i] = first
        else:
            starts.insert(i, first)
            ends.insert(i, last)
        return True

    def __len__(self) -> int:
        """The number of ranges (what the memory grows with)."""
        return len(self.starts)
