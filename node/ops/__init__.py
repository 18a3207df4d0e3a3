"""The operations surface of a running node (node.toml ``[ops] listen``): an HTTP listener with
``/metrics`` (Prometheus), ``/health`` and ``/ready`` (docs/operations.md).

``NodeMetrics`` (metrics.py) holds the counters and gauges; ``ObservedStore`` times and counts
store operations; ``Readiness`` and ``ops_handler`` (service.py) answer; ``serve_http``
(http.py) is the small hardened HTTP/1.1 server they run on.
"""

from typing import TYPE_CHECKING

from sonet.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from .http import Response, serve_http
    from .metrics import LiveSources, NodeMetrics
    from .observed_store import ObservedStore
    from .service import Readiness, ops_handler

#: each name's submodule, imported when the name is first asked for: a node without ``[ops]``
#: loads none of this, and prometheus_client (~0.1 s) only comes with the metrics
_SUBMODULE = {
    **dict.fromkeys(("Response", "serve_http"), "http"),
    **dict.fromkeys(("LiveSources", "NodeMetrics"), "metrics"),
    "ObservedStore": "observed_store",
    **dict.fromkeys(("Readiness", "ops_handler"), "service"),
}


__getattr__ = lazy_exports(__name__, _SUBMODULE)


__all__ = ["NodeMetrics", "LiveSources", "ObservedStore", "Readiness", "ops_handler", "serve_http", "Response"]
