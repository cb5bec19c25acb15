"""Celery wiring for the dialer: the app and thin tasks. Domain logic lives in `dialer`."""
