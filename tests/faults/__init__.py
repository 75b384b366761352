"""Fault tolerance: graceful and forced shutdown, kill -9, Redis restarts and outages."""
