"""Pipeline stages: decode, sample, normalise, encode task clips, write JPEGs.

Nothing in this package knows about Flask or MongoDB: the job runner
(`jobs/staging.py`) feeds it a source and consumes the events it yields.
"""
