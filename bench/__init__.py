"""Benchmarks (``make bench``): one module per suite, each measuring figures together with a
ceiling measured in the same run on the same machine. Not part of ``make test``."""
