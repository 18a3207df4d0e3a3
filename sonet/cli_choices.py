"""Choices the ``sonet`` parser offers, spelled out: building it (``--help``, a usage error) must
not load the crypto package (~0.06 s) for the names of its modes. tests/test_cli_imports.py
checks they are ``sonet.core.crypto.CryptoMode``'s values."""

#: ``CryptoMode``'s values, weakest first
CRYPTO_MODES = ("classical", "hybrid", "pq")
