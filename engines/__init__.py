"""Who runs jobs: the embedded engine (a supervisor and its job processes on this
machine) or Celery workers, both claiming jobs from MongoDB by the same lease."""
