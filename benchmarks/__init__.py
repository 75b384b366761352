"""Benchmarks of queuekit against raw bullmq (Python) and Node BullMQ on one Redis.

Entry point: ``benchmarks/run.py`` (or ``python -m benchmarks``). The Python sides share
their measurement code (:mod:`benchmarks.measure`) behind the adapter interface of
:mod:`benchmarks.sides`; Node BullMQ runs as subprocesses (``benchmarks/node``).
"""
