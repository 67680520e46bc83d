"""Auto-annotation: versioned, pluggable detectors that pre-label task frames.

Nothing here knows about Flask or MongoDB: a detector takes RGB frames and
returns boxes in the frames' own pixels.
"""
