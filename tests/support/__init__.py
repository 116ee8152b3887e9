"""Shared test helpers: fixture datasets in the real on-disk formats, and multi-process runners."""
