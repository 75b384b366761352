"""The chaos soak: ``make soak`` (50,000 jobs) and its short variant in the test suite."""
