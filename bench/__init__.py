"""Measurements: scripts that time the real-time paths, run by hand, never by the test suite."""
