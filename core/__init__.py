"""Transfer-learning study core: data, backbones, training, evaluation, deployment.

Importing ``core`` never imports TensorFlow; modules that need it go through
:mod:`core.models.tfkeras`, the one place that sets up the Keras 2 (``tf_keras``) runtime.
"""

__version__ = "0.1.0"
