"""The sonet_group extension (core/groups/state.py): strict encoding, found in a group context,
required by every group, advertised by every leaf."""

from __future__ import annotations

import pytest

from sonet.core import canonical
from sonet.core.errors import LocalProtocolError, RemoteProtocolError
from sonet.core.groups.state import (
    EXTENSION_TYPE,
    GroupExtension,
    extension_in,
    group_context_extensions,
    group_extension,
    leaf_capabilities,
)
from sonet.core.mls.extensions import Extension, ExtensionType, RequiredCapabilities

from .devices import Device


def test_round_trip() -> None:
    ext = GroupExtension("alpha", ("alice@alpha", "bob@beta"))
    encoded = ext.to_extension()
    assert encoded.extension_type == EXTENSION_TYPE == 0xF5A0
    assert canonical.loads(encoded.extension_data) == {"v": 1, "hub": "alpha", "admins": ["alice@alpha", "bob@beta"]}
    assert GroupExtension.from_extension(encoded) == ext
    assert ext.is_admin("bob@beta") and not ext.is_admin("carol@gamma")


def _ext(**fields: object) -> Extension:
    base: dict[str, object] = {"v": 1, "hub": "alpha", "admins": ["alice@alpha"]}
    base.update(fields)
    return Extension(EXTENSION_TYPE, canonical.dumps({k: v for k, v in base.items() if v is not None}))


@pytest.mark.parametrize(
    "ext",
    [
        _ext(v=2),
        _ext(hub="Alpha"),
        _ext(hub="not a node"),
        _ext(hub=None),
        _ext(admins=[]),
        _ext(admins=[f"u{i:02d}@alpha" for i in range(65)]),
        _ext(admins=["bob@beta", "alice@alpha"]),
        _ext(admins=["alice@alpha", "alice@alpha"]),
        _ext(admins=["alice"]),
        _ext(admins=[1]),
        _ext(admins="alice@alpha"),
        _ext(topic="secret"),
        Extension(EXTENSION_TYPE, _ext().extension_data[:-1]),
        Extension(EXTENSION_TYPE, b""),
        Extension(0xF5A1, _ext().extension_data),
    ],
)
def test_malformed_extensions_are_refused(ext: Extension) -> None:
    with pytest.raises(RemoteProtocolError) as exc:
        GroupExtension.from_extension(ext)
    assert exc.value.code == "group_malformed" and "\n" not in str(exc.value)


def test_sixty_four_admins_is_the_most() -> None:
    admins = tuple(sorted(f"u{i:02d}@alpha" for i in range(64)))
    assert GroupExtension.from_extension(GroupExtension("alpha", admins).to_extension()).admins == admins
    with pytest.raises(LocalProtocolError):
        GroupExtension("alpha", (*admins, "zz@alpha"))


def test_a_group_created_with_the_extensions_has_it_and_requires_it() -> None:
    creator = Device.new("alice@alpha")
    creator.create()
    ext = group_extension(creator.g.context)
    assert ext == GroupExtension("alpha", ("alice@alpha",))
    required = [e for e in creator.g.context.extensions if e.extension_type == ExtensionType.REQUIRED_CAPABILITIES]
    assert EXTENSION_TYPE in RequiredCapabilities.from_bytes(required[0].extension_data).extension_types
    assert required[0] == group_context_extensions(ext)[1]
    assert RequiredCapabilities.from_bytes(required[0].extension_data).missing_in(leaf_capabilities()) is None


def test_a_context_without_the_extension_is_refused() -> None:
    with pytest.raises(RemoteProtocolError) as exc:
        extension_in(())
    assert exc.value.code == "group_malformed"


def test_a_leaf_without_the_capability_cannot_be_in_a_sonet_group() -> None:
    required = RequiredCapabilities.from_bytes(group_context_extensions(GroupExtension("alpha", ("a@alpha",)))[1].extension_data)
    from dataclasses import replace

    assert required.missing_in(replace(leaf_capabilities(), extensions=())) == f"extension type {EXTENSION_TYPE}"
