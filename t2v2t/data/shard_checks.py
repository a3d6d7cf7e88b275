"""Shard checks against the manifest before an epoch is planned (docs/reliability.md, "Shard
integrity").

Sizes are always checked (a stat, or one listing of a store); with ``verify_hash=True`` each
shard's sha256 too, once per shard per :class:`ShardChecker`. The loaders share one checker per
process (:data:`SHARD_CHECKS`), so a shard whose size and mtime stay is hashed once per process.
A bad shard is a :class:`ShardError` naming it, or with ``skip_bad=True`` it leaves the plan with
one counted :class:`ShardWarning`.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from t2v2t.data.shards import ShardError, ShardInfo, check_shard_file
from t2v2t.storage import ShardFolder

__all__ = ["SHARD_CHECKS", "ShardChecker", "ShardWarning"]

log = logging.getLogger(__name__)


class ShardWarning(UserWarning):
    """A shard was skipped (``skip_bad_shards=True``)."""


@dataclass(eq=False)
class ShardChecker:
    """Checks shards against their manifest entries; remembers the digests it verified."""

    # What identifies each shard whose sha256 this checker already verified (see _hash_token).
    hashed: set[tuple[str, int, int | str]] = field(default_factory=set)

    def check(
        self,
        directory: ShardFolder,
        infos: list[ShardInfo],
        *,
        skip_bad: bool,
        verify_hash: bool,
        hint: str = "",
    ) -> tuple[list[ShardInfo], list[str]]:
        """The shards that pass their manifest check, and one message per skipped shard."""
        good, bad = [], []
        # A URL folder: every size from one listing of the store, not a request per shard.
        listing = directory.list_sizes() if directory.remote else None
        for info in infos:
            try:
                # size: always, it is a stat (or a listing)
                check_shard_file(directory, info, hash_check=False, listing=listing)
                if verify_hash:
                    token = _hash_token(directory, info)
                    if token not in self.hashed:
                        check_shard_file(directory, info, hash_check=True, listing=listing)
                        self.hashed.add(token)
            except ShardError as err:
                if not skip_bad:
                    raise ShardError(f"{err}{hint}") from None
                bad.append(str(err))
                continue
            good.append(info)
        if bad:
            msg = f"{directory}: skipped {len(bad)} of {len(infos)} shards: " + "; ".join(bad)
            log.warning(msg)
            warnings.warn(msg, ShardWarning, stacklevel=3)
        return good, bad


# The checker both loaders use: a shard's digest is verified once per process.
SHARD_CHECKS = ShardChecker()


def _hash_token(directory: ShardFolder, info: ShardInfo) -> tuple[str, int, int | str]:
    """What identifies a shard whose digest was checked: a file's path, size and mtime; a URL's
    manifest entry (its node-cache copy is checked by the cache)."""
    path = directory.join(info.name)
    if directory.remote:
        return (str(path), info.bytes, info.sha256)
    st = Path(path).stat()
    return (str(path), st.st_size, st.st_mtime_ns)
