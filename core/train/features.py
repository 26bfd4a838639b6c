"""Backbone outputs computed once and cached on disk.

Stage 1 trains the new head on the frozen backbone, whose output for a given image
(and augmented view) never changes: it is computed once and cached, keyed by the
dataset fingerprint, backbone, weights, input size, preprocessing and view. Stage 2
fine-tunes only the top of the backbone, so the output of the frozen lower part (the
"boundary" activation at the cut layer) is cached the same way and stage 2 runs only
the upper layers. Baselines (scikit-learn on frozen embeddings) reuse the pooled
outputs. Caches grow incrementally: a quick run's subset is reused by a full run.

Cache files are uncompressed ``.npz`` (``ids`` and ``values``, read with ``allow_pickle=False``),
each replaced atomically as a whole, so concurrent runs never see ids of one write beside
values of another. Values are located inside the archive and read a batch of rows at a
time with file reads (:class:`StoredArray`), so a run holds in memory
only the rows it is using (a training batch), not every image's activations, and growing
a store streams the old rows from disk: memory does not grow with the dataset.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from core.artifacts.config import AugmentConfig
from core.artifacts.layout import REPO_ROOT
from core.data.augment import apply_view, view_params
from core.data.dataset import load_image
from core.models.backbones import BackboneSpec, build_backbone
from core.models.preprocess import preprocess
from core.progress import Emit, Throughput
from core.train.pipeline import inference_batch

FEATURE_VERSION = 2
MERGE_ATTEMPTS = 5  # writes of a store raced by other processes' writes before giving up
Progress = Callable[[int, int], None]


def cache_root() -> Path:
    """Where cached features live: ``$STUDY_CACHE`` or ``cache/`` in the repo (git-ignored)."""
    return Path(os.environ.get("STUDY_CACHE") or REPO_ROOT / "cache")


@dataclass(frozen=True)
class FeatureKey:
    """Everything that determines a backbone's output for an image."""

    dataset_fingerprint: str
    backbone: str
    weights: str
    input_size: int
    preprocessing: str
    cut_layer: str | None
    view: int
    augment: tuple = ()

    def digest(self) -> str:
        data = {**self.__dict__, "version": FEATURE_VERSION}
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=list).encode()).hexdigest()[:16]

    def path(self) -> Path:
        return cache_root() / "features" / self.backbone / f"{self.digest()}-v{self.view}.npz"


def augment_tuple(cfg: AugmentConfig) -> tuple:
    return (cfg.flip, cfg.rotation_deg, cfg.zoom, cfg.brightness, cfg.contrast, cfg.seed)


class StoredArray:
    """An array stored uncompressed in an ``.npz``, read a few rows at a time with file reads.

    It holds the file open, so it keeps reading the version it opened even after a newer
    store replaces the path (train and validation images of a view share one store, grown
    one after the other). Rows read pass through the page cache, never into this process's
    resident memory as a memory map's pages would.
    """

    def __init__(self, file, offset: int, dtype, shape: tuple[int, ...]):
        self._file = file  # an open binary file, now owned by this array
        self.offset, self.dtype, self.shape = offset, np.dtype(dtype), tuple(int(d) for d in shape)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __del__(self):
        file = getattr(self, "_file", None)
        if file is not None:
            file.close()

    def read(self, rows: np.ndarray) -> np.ndarray:
        """The rows at ``rows`` (any order), runs of consecutive rows read at once."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        if len(rows) == 0 or self.row_bytes == 0:
            return out
        flat = out.reshape(len(rows), -1).view(np.uint8)
        starts = np.flatnonzero(np.diff(rows, prepend=rows[0] - 2) != 1)
        for first, stop in zip(starts, [*starts[1:], len(rows)]):
            size = (stop - first) * self.row_bytes
            data = os.pread(self._file.fileno(), size, self.offset + int(rows[first]) * self.row_bytes)
            if len(data) != size:
                raise OSError(f"{self._file.name}: cached features end early (file truncated?)")
            flat[first:stop] = np.frombuffer(data, np.uint8).reshape(stop - first, self.row_bytes)
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        values = self.read(np.arange(len(self)))
        return values if dtype is None else values.astype(dtype)


def read_rows(values, rows: np.ndarray) -> np.ndarray:
    """``values[rows]`` of a stored array (file reads) or of an in-memory one."""
    return values.read(rows) if isinstance(values, StoredArray) else np.asarray(values[np.asarray(rows)])


@dataclass(frozen=True)
class CachedRows:
    """Rows of a cached array, read when asked for (a batch at a time)."""

    values: "StoredArray | np.ndarray"  # the store's values
    rows: np.ndarray  # which of them, in the caller's order

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.values.shape[1:])

    def take(self, index, dtype=np.float32) -> np.ndarray:
        """The rows at positions ``index`` as an in-memory array, read from the file in file order."""
        rows = self.rows[np.asarray(index, dtype=np.int64)]
        order = np.argsort(rows, kind="stable")
        out = np.empty((len(rows), *self.values.shape[1:]), dtype=dtype)
        out[order] = read_rows(self.values, rows[order])
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self.take(np.arange(len(self.rows)), dtype or self.values.dtype)


def _load(path: Path) -> dict:
    """A store's ``ids`` and its ``values`` (a :class:`StoredArray`; empty if there is no store).

    Both come from one open file, so a store replaced meanwhile by another process cannot pair
    the ids of one version with the values of another.
    """
    try:
        file = open(path, "rb")
    except FileNotFoundError:
        return {}
    with np.load(file, allow_pickle=False) as data:
        ids = data["ids"]
        stored = _stored_member(file, data.zip.getinfo("values.npy"))
        if stored is None:  # compressed (written by other code): read whole
            values = data["values"]
            file.close()
            return {"ids": ids, "values": values}
    return {"ids": ids, "values": stored}


def _stored_member(file, info: zipfile.ZipInfo) -> "StoredArray | None":
    """The uncompressed ``.npz`` member ``info`` of the open ``file`` as a :class:`StoredArray` (None otherwise)."""
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    file.seek(info.header_offset)
    local = file.read(30)  # the member's local header: name and extra field lengths at bytes 26..29
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    file.seek(info.header_offset + 30 + name_len + extra_len)
    version = np.lib.format.read_magic(file)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(file)
    if fortran or len(shape) == 0:  # never written by this module
        return None
    return StoredArray(file, file.tell(), dtype, shape)


def _write(path: Path, ids: np.ndarray, old, new: np.ndarray) -> None:
    """Write ids and ``old`` rows followed by ``new`` ones as one ``.npz``, streaming, then rename it in place."""
    n_old = 0 if old is None else len(old)
    shape = (n_old + len(new), *new.shape[1:])
    header = {"descr": np.lib.format.dtype_to_descr(new.dtype), "fortran_order": False, "shape": shape}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            with archive.open("ids.npy", "w") as fp:
                np.lib.format.write_array(fp, ids, allow_pickle=False)
            with archive.open("values.npy", "w", force_zip64=True) as fp:
                np.lib.format.write_array_header_2_0(fp, header)
                for start in range(0, n_old, 1024):
                    chunk = read_rows(old, np.arange(start, min(start + 1024, n_old)))
                    fp.write(np.ascontiguousarray(chunk, dtype=new.dtype).tobytes())
                fp.write(np.ascontiguousarray(new).tobytes())
        with open(tmp, "rb") as fp:
            os.fsync(fp.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class FeatureExtractor:
    """A frozen backbone that returns pooled outputs and, optionally, a cut-layer activation."""

    def __init__(self, base, spec: BackboneSpec, input_size: int, cut_layer: str | None = None):
        from core.models.tfkeras import keras

        self.spec = spec
        self.input_size = input_size
        self.cut_layer = cut_layer
        pooled = keras.layers.GlobalAveragePooling2D(name="feature_pool")(base.output)
        outputs = [pooled] + ([base.get_layer(cut_layer).output] if cut_layer else [])
        self.model = keras.Model(base.input, outputs)

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        out = self.model(batch, training=False)
        if self.cut_layer:
            return np.asarray(out[0]), np.asarray(out[1])
        pooled = out[0] if isinstance(out, (list, tuple)) else out
        return np.asarray(pooled), None


def _decode_views(abs_paths: Sequence[str], rel_ids: Sequence[str], view: int, cfg: AugmentConfig,
                  size: int, mode: str) -> np.ndarray:
    images = []
    for path, rel in zip(abs_paths, rel_ids):
        image = load_image(path, size=(size, size)).astype(np.float32)
        images.append(apply_view(image, view_params(rel, view, cfg)))
    return preprocess(np.stack(images).astype(np.float32), mode).astype(np.float32)


def compute(extractor: FeatureExtractor, key: FeatureKey, root: Path, ids: Sequence[str],
            augment: AugmentConfig, batch_size: int = 32, progress: Progress | None = None) -> dict[str, np.ndarray]:
    """Return cached outputs for ``ids`` (relative paths), computing the missing ones.

    The result has ``ids`` (in the requested order), ``pooled`` (an array) and, when the
    key has a cut layer, ``boundary`` (float16 :class:`CachedRows`, read a batch at a time). Pooled outputs are stored apart from
    boundary activations, so runs with and without a cut layer share them. New rows
    are added to the cache files atomically every ~2000 images, so an interrupted
    extraction resumes where it stopped.
    """
    stores = {"pooled": dataclasses.replace(key, cut_layer=None)}
    if key.cut_layer:
        stores["boundary"] = key
    cached = {name: _load(k.path()) for name, k in stores.items()}
    have = {name: {str(i): n for n, i in enumerate(c.get("ids", []))} for name, c in cached.items()}
    missing = [i for i in dict.fromkeys(ids) if any(i not in h for h in have.values())]
    if missing:
        cached = _extract_missing(extractor, key, stores, root, missing, cached, augment, batch_size, progress)
        have = {name: {str(i): n for n, i in enumerate(c["ids"])} for name, c in cached.items()}
    out = {"ids": np.asarray(list(ids))}
    for name in stores:
        rows = CachedRows(cached[name]["values"], np.array([have[name][i] for i in ids], dtype=np.int64))
        out[name] = rows if name == "boundary" else np.asarray(rows)
    return out


def _extract_missing(extractor, key, stores, root, missing, cached, augment, batch_size, progress):
    mode = extractor.spec.entry.preprocessing
    chunks = [missing[i:i + batch_size] for i in range(0, len(missing), batch_size)]
    pending = {name: ([], []) for name in stores}
    flush_every = max(1, 2000 // batch_size)
    done = 0

    def decode(chunk):
        return _decode_views([str(root / c) for c in chunk], chunk, key.view, augment, key.input_size, mode)

    with ThreadPoolExecutor(max_workers=1) as pool:  # decode the next batch while this one runs
        future = pool.submit(decode, chunks[0])
        for n, chunk in enumerate(chunks):
            batch = future.result()
            if n + 1 < len(chunks):
                future = pool.submit(decode, chunks[n + 1])
            pooled, boundary = extractor(batch)
            outputs = {"pooled": pooled.astype(np.float32)}
            if boundary is not None:
                outputs["boundary"] = boundary.astype(np.float16)
            for name in stores:
                pending[name][0].extend(chunk)
                pending[name][1].append(outputs[name])
            done += len(chunk)
            if progress:
                progress(done, len(missing))
            if (n + 1) % flush_every == 0 or n + 1 == len(chunks):
                for name, store_key in stores.items():
                    cached[name] = _merge(store_key.path(), cached[name], *pending[name])
                pending = {name: ([], []) for name in stores}
    return cached


def _merge(path: Path, cached: dict, ids: list[str], values: list[np.ndarray]) -> dict:
    """Add rows for ids the store does not hold yet, and return the store as now on disk."""
    known = set(cached.get("ids", np.array([], dtype=str)).astype(str).tolist())
    keep = [n for n, i in enumerate(ids) if i not in known]
    if not keep:
        return cached
    ids = [ids[n] for n in keep]
    values = np.concatenate(values)[keep]
    for _ in range(MERGE_ATTEMPTS):
        new_ids = np.asarray(ids, dtype=str)
        all_ids = np.concatenate([cached["ids"].astype(str), new_ids]) if "ids" in cached else new_ids
        _write(path, all_ids, cached.get("values"), values)
        cached = _load(path)
        # Another process may have replaced the store with its own rows meanwhile: add ours again to that.
        held = set(cached.get("ids", np.array([], dtype=str)).astype(str).tolist())
        missing = [n for n, i in enumerate(ids) if i not in held]
        if not missing:
            return cached
        ids, values = [ids[n] for n in missing], values[missing]
    raise OSError(f"{path}: other processes kept replacing this feature store; run again")


def split_outputs(extractor: FeatureExtractor, data, augment: AugmentConfig, batch_size: int,
                  wanted: Sequence[tuple[str, int]], emit: Emit, event: Callable[..., None] | None = None) -> dict:
    """Cached backbone outputs of ``data`` (a :class:`core.data.prepare.PreparedData`) for each ``(split, view)``
    in ``wanted``: ``{(split, view): {"ids", "pooled"[, "boundary"]}}``, computing what the cache lacks."""
    spec, out = extractor.spec, {}
    for split, view in wanted:
        key = FeatureKey(data.fingerprint, spec.name, "imagenet", extractor.input_size, spec.entry.preprocessing,
                         extractor.cut_layer, view, augment_tuple(augment) if view else ())
        if event is not None:
            event("features", split=split, view=view, images=len(data.ids[split]))
        out[(split, view)] = compute(extractor, key, data.root, data.ids[split], augment, inference_batch(batch_size),
                                     Throughput(f"features {split} view {view}", emit))
    return out


def pooled_outputs(config, spec: BackboneSpec, data, wanted: Sequence[tuple[str, int]], emit: Emit) -> dict:
    """Pooled ImageNet backbone outputs (cached) of each ``(split, view)`` in ``wanted``, the backbone built for
    this and released after: ``{(split, view): array}``."""
    from core.models.tfkeras import keras

    size = config.input_size or spec.input_size
    keras.backend.clear_session()
    extractor = FeatureExtractor(build_backbone(spec, "imagenet", (size, size, 3)), spec, size, None)
    out = split_outputs(extractor, data, config.augment, config.batch_size, wanted, emit)
    keras.backend.clear_session()
    return {k: v["pooled"] for k, v in out.items()}


@dataclass
class PooledFeatures:
    """Pooled backbone outputs of a dataset: the non-test images (train, then val) in every view a run trains on
    (view 0 the original image), and the test images (originals)."""

    ids: list[str]  # the non-test images, train then val
    labels: np.ndarray
    views: list[np.ndarray]  # views[v][i]: view v of image ids[i]
    n_train: int  # ids[:n_train] are the run's training images, the rest its validation images
    test_ids: list[str]
    test_labels: np.ndarray
    test: np.ndarray

    @property
    def originals(self) -> np.ndarray:
        """View 0 of every non-test image."""
        return self.views[0]

    def training_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` of the images at ``rows`` in every view: what a head is trained on (stage 1's input)."""
        rows = np.asarray(rows)
        return (np.concatenate([v[rows] for v in self.views]), np.tile(self.labels[rows], len(self.views)))


def load_pooled(config, spec: BackboneSpec, data, emit: Emit, augmented: bool = True) -> PooledFeatures:
    """The :class:`PooledFeatures` of a prepared dataset (cached; the run's views of train *and* val images when
    ``augmented``, so any of them can be a fold's training image)."""
    views = list(range(config.augment.views + 1)) if augmented else [0]
    wanted = [(split, v) for v in views for split in ("train", "val")] + [("test", 0)]
    pooled = pooled_outputs(config, spec, data, wanted, emit)
    return PooledFeatures(ids=data.ids["train"] + data.ids["val"],
                          labels=np.concatenate([data.labels["train"], data.labels["val"]]),
                          views=[np.concatenate([pooled[("train", v)], pooled[("val", v)]]) for v in views],
                          n_train=len(data.ids["train"]), test_ids=list(data.ids["test"]),
                          test_labels=data.labels["test"], test=pooled[("test", 0)])
