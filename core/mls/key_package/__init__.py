"""Credentials, LeafNodes and KeyPackages (RFC 9420 §5.3, §7.2, §10) and their validity rules
(§7.3, §10.1); ``ValidationError`` (code mls_invalid) for MLS structures that decode but break
a rule."""

from .credential import Credential, CredentialType
from .errors import ValidationError
from .key_package import MLS10, KeyPackage
from .leaf_node import LeafNode, LeafNodeSource
from .validation import check_key_package, check_leaf_node

__all__ = [
    "Credential",
    "CredentialType",
    "KeyPackage",
    "LeafNode",
    "LeafNodeSource",
    "MLS10",
    "ValidationError",
    "check_key_package",
    "check_leaf_node",
]
