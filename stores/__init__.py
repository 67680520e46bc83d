"""The queries of the service, one store per concept it keeps in MongoDB.

Only mongo_manager.py imports this package (``.importlinter``): every other
module reaches a store as an attribute of the manager (``mongo.jobs``,
``mongo.runs``, ...), so the one entry point to MongoDB stays one.
"""
