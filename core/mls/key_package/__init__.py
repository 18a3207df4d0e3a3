"""Credentials, LeafNodes and KeyPackages (RFC 9420 §5.3, §7.2, §10)."""

from .credential import Credential, CredentialType

__all__ = ["Credential", "CredentialType"]
