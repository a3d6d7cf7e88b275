"""Read checkpoint files safely: the project's with ``torch.load(weights_only=True)``
(:func:`read_weights_file`), any torch checkpoint (zip or legacy format) with an allow-list
unpickler.

VindLU's released ``.pth`` files hold their config as an EasyDict, a ``dict`` subclass that
``torch.load(weights_only=True)`` cannot rebuild. This reader allows exactly the globals that
tensors, plain containers and that config need; any other global (a ``__reduce__`` payload such as
``os.system``) is refused with one line naming it, before anything from the file is called.
"""

from __future__ import annotations

import collections
import copyreg
import io
import pickle
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from t2v2t.errors import CheckpointError


def read_weights_file(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(weights_only=True)``; a file it refuses (truncated, not a checkpoint, or
    holding objects that would run code when unpickled) is a :class:`CheckpointError`."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as err:  # unpickling and zip errors come in many types; all mean "unusable"
        reason = next((s.strip() for s in str(err).splitlines() if s.strip()), type(err).__name__)
        raise CheckpointError(
            f"cannot load checkpoint {path} ({type(err).__name__}: {reason[:200]}): it is "
            "truncated, not a T2V2T checkpoint, or holds more than tensors; use another file"
        ) from err


class UnsafeCheckpointError(ValueError):
    """The pickle names a global outside the allow-list; nothing from it was run."""


class ConfigDict(dict):
    """EasyDict-like: a dict whose keys are also attributes (VindLU's config type)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setstate__(self, state: Any) -> None:
        # pickle restores EasyDict's items (SETITEMS) and then its __dict__ (BUILD): same values.
        if isinstance(state, tuple) and len(state) == 2:
            state = state[0]
        if isinstance(state, dict):
            for k, v in state.items():
                dict.__setitem__(self, k, v)


_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "UntypedStorage": torch.uint8,
}


class _StorageType:
    """Stands in for ``torch.FloatStorage`` & co. inside persistent ids: only its dtype is used."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


def _allowed() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "dict"): dict,
        ("builtins", "list"): list,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "object"): object,
        # Protocol 0/1 pickles rebuild dict subclasses through it (cls and base are allow-listed).
        ("copyreg", "_reconstructor"): copyreg._reconstructor,
        ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): (
            torch._utils._rebuild_parameter_with_state
        ),
        ("torch", "Size"): torch.Size,
        ("torch", "device"): torch.device,
        # VindLU's config class, and ours (a converted file may carry it).
        ("utils.easydict", "EasyDict"): ConfigDict,
        ("easydict", "EasyDict"): ConfigDict,
        (ConfigDict.__module__, "ConfigDict"): ConfigDict,
    }
    for name, dtype in _STORAGE_DTYPES.items():
        allowed[("torch", name)] = _StorageType(dtype)
        allowed[("torch.storage", name)] = _StorageType(dtype)
    for dtype in (
        torch.float64,
        torch.float32,
        torch.float16,
        torch.bfloat16,
        torch.int64,
        torch.int32,
        torch.int16,
        torch.int8,
        torch.uint8,
        torch.bool,
    ):
        allowed[("torch", str(dtype).removeprefix("torch."))] = dtype
    return allowed


_ALLOWED = _allowed()


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, where: str, load_storage: Any) -> None:
        super().__init__(file)
        self.where = where
        self.load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"{self.where}: refused to unpickle the global {module}.{name} (not a tensor or "
                "config type; nothing from the file was run). Only load checkpoints you trust."
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise UnsafeCheckpointError(f"{self.where}: unexpected persistent id {pid!r:.80}")
        return self.load_storage(pid[1:])


def _typed(raw: bytes, dtype: torch.dtype) -> torch.storage.TypedStorage:
    data = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.empty(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage is what torch's rebuild functions take
        return torch.storage.TypedStorage(
            wrap_storage=data.to(torch.uint8).untyped_storage(), dtype=dtype, _internal=True
        )


def _storage_dtype(storage_type: Any, where: str) -> torch.dtype:
    if not isinstance(storage_type, _StorageType):
        raise UnsafeCheckpointError(f"{where}: storage type {storage_type!r:.80} is not allowed")
    return storage_type.dtype


def _load_zip(path: Path) -> Any:
    where = str(path)
    with zipfile.ZipFile(path) as zf:
        pkl = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise ValueError(f"{where}: a zip file but not a torch checkpoint (no data.pkl)")
        prefix = pkl[0][: -len("data.pkl")]
        cache: dict[str, torch.storage.TypedStorage] = {}

        def load_storage(info: tuple) -> torch.storage.TypedStorage:
            storage_type, key = info[0], str(info[1])
            dtype = _storage_dtype(storage_type, where)
            if key not in cache:
                cache[key] = _typed(zf.read(f"{prefix}data/{key}"), dtype)
            return cache[key]

        return _Unpickler(io.BytesIO(zf.read(pkl[0])), where, load_storage).load()


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _load_legacy(path: Path) -> Any:
    """torch's pre-zip format: magic, protocol, sys info, the object, storage keys, raw data.

    The object's pickle comes before the tensor data, so it is read twice: once to learn the
    storages (tensors not built), then again with the storages filled."""
    where = str(path)
    with open(path, "rb") as f:
        header = [_Unpickler(f, where, None).load() for _ in range(3)]
        if header[0] != _LEGACY_MAGIC:
            raise ValueError(f"{where}: not a torch checkpoint (neither zip nor legacy format)")
        start = f.tell()
        kinds: dict[str, torch.dtype] = {}

        def note_storage(info: tuple) -> None:
            kinds.setdefault(str(info[1]), _storage_dtype(info[0], where))

        first = _Unpickler(f, where, note_storage)
        rebuild = {torch._utils._rebuild_tensor, torch._utils._rebuild_tensor_v2}
        rebuild |= {torch._utils._rebuild_parameter, torch._utils._rebuild_parameter_with_state}

        def skip_tensors(module: str, name: str) -> Any:
            fn = _Unpickler.find_class(first, module, name)
            return (lambda *args: None) if fn in rebuild else fn

        first.find_class = skip_tensors  # type: ignore[method-assign]
        first.load()
        keys = _Unpickler(f, where, None).load()
        data: dict[str, torch.storage.TypedStorage] = {}
        for key in keys:
            dtype = kinds[str(key)]
            (numel,) = struct.unpack("<q", f.read(8))
            size = torch.empty((), dtype=dtype).element_size()
            data[str(key)] = _typed(f.read(numel * size), dtype)

        def load_storage(info: tuple) -> Any:
            storage = data[str(info[1])]
            view = info[4]
            if view is not None:  # (view key, offset, size): a slice of the root storage
                storage = storage[view[1] : view[1] + view[2]]
            return storage

        f.seek(start)
        return _Unpickler(f, where, load_storage).load()


def load_checkpoint_file(path: str | Path) -> Any:
    """The object a ``torch.save`` file holds, tensors on the CPU, read with the allow-list.

    Raises UnsafeCheckpointError (one line naming the refused global) for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if zipfile.is_zipfile(path):
        return _load_zip(path)
    return _load_legacy(path)
