"""Token buckets: the one implementation is core/ratelimit.py (pure, so the transport's
handshake guard uses it too); federation and node import it from here as before."""

from sonet.core.ratelimit import Bucket, Limiter, Rate

__all__ = ["Rate", "Bucket", "Limiter"]
