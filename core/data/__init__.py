"""Datasets: discovery, decoding, fingerprints, splits, sampling, the leakage audit, augmented views.

Never imports TensorFlow.
"""
