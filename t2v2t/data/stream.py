"""One rank's shards streamed in plan order, keeping only the samples one worker needs.

The plan and the worker split are described in :mod:`t2v2t.data.loader`. Samples a worker does
not need are streamed past without copying their bytes; every opened shard is hashed as it
streams and verified when it is left (docs/reliability.md, "Shard integrity").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from typing import Any, BinaryIO

import numpy as np
import zstandard

from t2v2t.data.integrity import HashingReader, ShardError, corrupt_message
from t2v2t.data.plan import RankPlan
from t2v2t.data.shards import has_frame_checksum, open_shard, shard_matches
from t2v2t.data.tarstream import iter_shard_samples
from t2v2t.storage import ShardFolder

__all__ = ["ShardStream"]


class ShardStream:
    """Streams one rank's shards in plan order, keeping only the positions one worker needs.

    ``needed`` maps stream position -> how many times this worker's batches use it (padding can
    repeat a sample); a sample is dropped from memory after its last use. Shards holding nothing
    needed are never opened, which also makes resuming cheap.
    """

    def __init__(
        self,
        directory: ShardFolder,
        names: list[str],
        plan: RankPlan,
        needed: Counter,
        sha256s: list[str] | None = None,
        hint: str = "",
        hashed: Collection[int] | None = None,
    ) -> None:
        self.directory = directory
        self.names = names  # stream-order shard names
        self.sha256s = sha256s  # stream order; None: no digest check (benchmark baseline)
        # The shards (stream order) this worker hashes; None: all. Another worker hashes the rest.
        self.hashed = hashed
        self.hint = hint
        self.file: HashingReader | BinaryIO | None = None  # the open shard's bytes
        self.check: HashingReader | None = None  # the same file when it is being hashed
        self.counts = plan.counts
        self.starts = plan.shard_starts()
        self.refs = dict(needed)
        self.wanted = np.array(sorted(needed), dtype=np.int64)
        self.pending: dict[int, dict[str, Any]] = {}
        self.pos = 0  # next stream position the open shard yields
        self.shard = -1
        self.it: Iterator[dict[str, Any]] | None = None

    def take(self, positions: Sequence[int]) -> list[dict[str, Any]]:
        out = []
        for p in (int(x) for x in positions):
            if p not in self.pending:
                self._read_until(p)
            out.append(self.pending[p])
            self.refs[p] -= 1
            if self.refs[p] == 0:
                del self.pending[p]
        return out

    def _open_for(self, target: int) -> None:
        """Open the shard holding the next wanted position >= ``target``."""
        i = int(np.searchsorted(self.wanted, target))
        nxt = int(self.wanted[i])
        self.shard = int(np.searchsorted(self.starts, nxt, side="right") - 1)
        start = self.pos = int(self.starts[self.shard])
        # Every opened shard is hashed as it streams and verified when left (docs/reliability.md,
        # "Shard integrity"); the bytes of the samples other workers need still pass through.
        sha256 = None if self.sha256s is None else self.sha256s[self.shard]
        name = self.names[self.shard]
        if sha256 is not None and self.hashed is not None and self.shard not in self.hashed:
            self.file = open_shard(self.directory, name, sha256, hashed=False)
            if has_frame_checksum(self.file):  # zstd checks these bytes; another worker hashes them
                sha256 = None
            else:  # an older shard without frame checksums: hashed here too
                self.file.close()
                self.file = open_shard(self.directory, name, sha256)
        else:
            self.file = open_shard(self.directory, name, sha256)
        self.check = self.file if sha256 is not None else None  # type: ignore[assignment]
        self.it = iter_shard_samples(self.file, keep=lambda i: self.refs.get(start + i, 0) > 0)

    def _read_until(self, p: int) -> None:
        while p not in self.pending:
            if p < self.pos:
                raise RuntimeError(f"stream position {p} was needed after it was released")
            if self.it is None or self._next_wanted() >= int(self.starts[self.shard + 1]):
                self.close(verify=True)  # nothing more wanted here: jump to the next useful one
                self._open_for(self.pos)
            path = self.directory.join(self.names[self.shard])
            index = self.pos - int(self.starts[self.shard])
            try:
                sample = next(self.it)
            except ShardError as err:
                raise ShardError(f"{err}{self.hint}") from None
            except StopIteration:
                self._raise_if_corrupt()
                raise ShardError(
                    f"{path}: ended after {index} samples, the manifest says "
                    f"{self.counts[self.shard]} (truncated? rebuild it)"
                ) from None
            except (EOFError, OSError, ValueError, zstandard.ZstdError) as err:
                self._raise_if_corrupt()
                raise ShardError(
                    f"{path}: unreadable at sample {index} ({type(err).__name__}: {err}); "
                    "the file is corrupted, rebuild it"
                ) from err
            if self.refs.get(self.pos, 0) > 0:
                self.pending[self.pos] = sample
            self.pos += 1
            if self.pos >= int(self.starts[self.shard + 1]):
                self.close(verify=True)

    def _next_wanted(self) -> int:
        i = int(np.searchsorted(self.wanted, self.pos))
        return int(self.wanted[i]) if i < len(self.wanted) else 1 << 62

    def _raise_if_corrupt(self) -> None:
        """A read error in a shard whose digest is wrong is the digest's one line (the cause)."""
        if self.check is not None:
            bad = not self.check.matches()
        elif self.sha256s is not None:  # another worker hashes it: hash it now, on the way out
            bad = not shard_matches(
                self.directory, self.names[self.shard], self.sha256s[self.shard]
            )
        else:
            return
        if bad:
            path = self.directory.join(self.names[self.shard])
            raise ShardError(corrupt_message(path) + self.hint) from None

    def close(self, verify: bool = False) -> None:
        """Leave the open shard; ``verify``: check its sha256 first (the rest is hashed)."""
        check, self.check = self.check, None
        file, self.file = self.file, None
        try:
            if verify and check is not None and self.it is not None:
                check.verify(self.hint)
        finally:
            if self.it is not None:
                self.it.close()  # type: ignore[attr-defined]
            self.it = None
            if file is not None:
                file.close()
