"""The operations surface of a running node (node.toml ``[ops] listen``): an HTTP listener with
``/metrics`` (Prometheus), ``/health`` and ``/ready`` (docs/operations.md).

``NodeMetrics`` (metrics.py) holds the counters and gauges; ``ObservedStore`` times and counts
store operations; ``Readiness`` and ``ops_handler`` (service.py) answer; ``serve_http``
(http.py) is the small hardened HTTP/1.1 server they run on.
"""

from .http import Response, serve_http
from .metrics import LiveSources, NodeMetrics
from .observed_store import ObservedStore
from .service import Readiness, ops_handler

__all__ = ["NodeMetrics", "LiveSources", "ObservedStore", "Readiness", "ops_handler", "serve_http", "Response"]
