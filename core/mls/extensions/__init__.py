"""MLS extensions (RFC 9420 §13) and the structures LeafNodes carry: Extension (unknown types
kept), Capabilities, Lifetime, RequiredCapabilities, ExternalSenders, ExternalPub, ApplicationId.
The ratchet_tree extension's payload is the tree's own encoding (``sonet.core.mls.tree``)."""

from .capabilities import Capabilities
from .extension import DEFAULT_EXTENSION_TYPES, Extension, ExtensionType, find_extension, read_extensions, write_extensions
from .lifetime import Lifetime
from .required_capabilities import DEFAULT_PROPOSAL_TYPES, RequiredCapabilities
from .simple import ApplicationId, ExternalPub
from .external_senders import ExternalSender, ExternalSenders

__all__ = [
    "ApplicationId",
    "Capabilities",
    "DEFAULT_EXTENSION_TYPES",
    "DEFAULT_PROPOSAL_TYPES",
    "Extension",
    "ExtensionType",
    "ExternalPub",
    "ExternalSender",
    "ExternalSenders",
    "Lifetime",
    "RequiredCapabilities",
    "find_extension",
    "read_extensions",
    "write_extensions",
]
