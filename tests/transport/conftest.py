"""Transport tests that need a real node reuse the in-process node fixtures of tests/node."""

from tests.node.conftest import make_node_dir, node_params, running, start_node  # noqa: F401 - fixtures
