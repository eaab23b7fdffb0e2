"""Shared core of the two Cloud Functions: settings, names, events, errors, logging and Google API clients.

Nothing here does network or credential work at import time; clients are built lazily and cached.
"""
