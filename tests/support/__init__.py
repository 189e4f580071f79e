"""Helpers shared by tests: real servers and assertion helpers."""
