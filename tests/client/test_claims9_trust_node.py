"""docs/security.md, "Key transparency": another node's key, once pinned by the device, "a
later different key is refused and alerted until the user accepts it with `sonet trust-node`".
tests/client/test_transparency_checks.py shows the refusal and the alert; nothing showed the
"until": that accepting (what `sonet trust-node` does: client/cli.py cmd_trust_node) lets the
new key in, pins it, and that the old one is then the refused one."""

from __future__ import annotations

import pytest

from sonet.client.state import ALERT, DeviceState
from sonet.client.transparency import node_key
from sonet.core.errors import VerifyError

from .fake_directory import T0, FakeConnection, FakeLog, new_key
from .test_transparency_checks import BETA, alpha, beta, state  # noqa: F401 - fixtures


async def test_a_changed_node_key_is_refused_until_the_user_accepts_it(
    state: DeviceState, alpha: FakeLog, beta: FakeLog  # noqa: F811
) -> None:
    assert await node_key(FakeConnection(alpha, beta), state, BETA, now=T0) == beta.key.public  # pinned
    rotated = new_key()
    with pytest.raises(VerifyError) as caught:
        await node_key(FakeConnection(alpha, beta, keys={BETA: rotated.public}), state, BETA, now=T0 + 1)
    assert caught.value.code == "node_key_changed" and f"sonet trust-node {BETA}" in str(caught.value)
    assert [a.kind for a in state.alerts()] == [ALERT]
    # still refused on every later connection until the user acts
    with pytest.raises(VerifyError):
        await node_key(FakeConnection(alpha, beta, keys={BETA: rotated.public}), state, BETA, now=T0 + 2)

    assert state.forget_node_key(BETA)  # `sonet trust-node beta.example`
    assert await node_key(FakeConnection(alpha, beta, keys={BETA: rotated.public}), state, BETA, now=T0 + 3) == rotated.public
    # the new key is the pinned one now: the old one is what a lying home node would hand out
    with pytest.raises(VerifyError) as caught:
        await node_key(FakeConnection(alpha, beta), state, BETA, now=T0 + 4)
    assert caught.value.code == "node_key_changed"
    assert not state.forget_node_key("gamma.example")  # nothing pinned: nothing to accept
