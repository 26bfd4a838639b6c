"""What deployment measures: the variants of a classifier, in order, and the options that shape them."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from core.models import compute

FAMILIES = ("keras", "tflite", "pruned", "clustered", "qat")


@dataclass
class DeployOptions:
    """How the variants are made and measured (recorded in deployment.json)."""

    threads: int | None = None  # "all cores" for latency and evaluation; None: every core
    runs: int = 50  # timed batch-1 runs per latency figure
    warmup: int = 5
    representative_images: int = 200  # full-integer calibration, from the training split
    finetune_images: int = 512  # pruning / clustering / QAT fine-tune, from the training split
    finetune_batch_size: int = 16
    prune_epochs: int = 2
    cluster_epochs: int = 1
    qat_epochs: int = 1
    prune_learning_rate: float = 3e-4
    cluster_learning_rate: float = 1e-4
    qat_learning_rate: float = 1e-5
    prune_batchnorm: str = "recalibrate"  # see core.deploy.compression.BATCHNORM_MODES
    cluster_batchnorm: str = "frozen"
    sparsities: tuple[float, ...] = (0.5, 0.8)
    clusters: tuple[int, ...] = (16, 32)
    seed: int = 0
    matmul_n: int = 1024
    matmul_seconds: float = 1.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["threads"] = self.threads or compute.all_cores()
        return d


@dataclass
class Variant:
    name: str
    family: str
    param: float | int | None = None


def variant_plan(options: DeployOptions | None = None) -> list[Variant]:
    """Every variant measured, in order."""
    options = options or DeployOptions()
    plan = [Variant("keras", "keras"), Variant("tflite_float32", "tflite", "float32"),
            Variant("tflite_float16", "tflite", "float16"), Variant("tflite_int8_dynamic", "tflite", "int8_dynamic"),
            Variant("tflite_int8_full", "tflite", "int8_full"),
            Variant("tflite_int8_per_tensor", "tflite", "int8_full_per_tensor")]
    plan += [Variant(f"pruned_{round(s * 100)}", "pruned", s) for s in options.sparsities]
    plan += [Variant(f"clustered_{n}", "clustered", n) for n in options.clusters]
    plan.append(Variant("qat_int8", "qat"))
    return plan
