"""Runnable examples of using EchoMimic Live from code (run from the repository root)."""
