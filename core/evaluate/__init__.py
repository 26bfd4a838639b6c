"""Evaluation on the test split: metrics, curves, calibration, bootstrap intervals, McNemar comparisons.

Never imports TensorFlow.
"""
