"""The on-disk format of results: where each file lives, typed records, run folders, report tables.

Everything else in ``core`` and the app reads and writes ``artifacts/`` through this package.
Never imports TensorFlow.
"""
