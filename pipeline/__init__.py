"""Pipeline: runs the stages, owns the run folder, composites the result.

`pipeline.errors` and `pipeline.fileio` are leaf modules (no imports of other
stages) that every stage may use: the exit-code contract of the command line and
atomic file writing.
"""
