"""The only place that imports TensorFlow and Keras for the rest of ``core``.

tensorflow-model-optimization needs Keras 2, so ``TF_USE_LEGACY_KERAS=1`` must be
set before TensorFlow is first imported; ``keras`` here is ``tf_keras``. Import
``tf`` and ``keras`` from this module, never from TensorFlow directly.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide INFO/WARNING C++ logs
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

tf.get_logger().setLevel("ERROR")

__all__ = ["tf", "keras"]
