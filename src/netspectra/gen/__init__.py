"""Synthetic traffic: CAIDA-like header traces with planted entities and their exact truth.

``generate(path, packets=..., flows=..., seed=...)`` writes the pcap and returns the truth document;
``netspectra gen`` is its command line.
"""

from netspectra.gen.synth import GenParams, default_truth_path, generate, parse_start

__all__ = ["GenParams", "default_truth_path", "generate", "parse_start"]
