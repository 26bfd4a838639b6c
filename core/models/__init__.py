"""Models: the backbone registry, EfficientNet-Lite and its weight conversion, the classifier head,
BatchNorm handling, preprocessing and Grad-CAM. :mod:`core.models.tfkeras` is the one place that
imports TensorFlow; the other modules import it lazily, inside the functions that need it.
"""
