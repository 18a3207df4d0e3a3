"""Pure protocol and crypto: no I/O, no clocks, no randomness of its own."""
