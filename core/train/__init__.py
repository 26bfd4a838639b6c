"""Training: run settings, the feature cache, the two stages and training from scratch, baselines."""
