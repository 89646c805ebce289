"""Shared basics with no dependencies on the rest of curate."""
