"""Orchestration on top of everything else: one run end to end, experiment grids, background jobs."""
