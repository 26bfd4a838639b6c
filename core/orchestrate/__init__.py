"""Orchestration on top of training, evaluation and deployment: one run end to end, experiment grids."""
