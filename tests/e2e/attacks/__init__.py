"""Short versions of the attacks of issue 13 against real node processes (slow)."""
