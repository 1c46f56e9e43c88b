"""Offline analysis of capture files."""
