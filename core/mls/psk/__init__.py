"""Pre-shared keys of RFC 9420 §8.4: the PreSharedKeyID of external and resumption PSKs, the
PSKLabel, and the psk_secret that chains them into the key schedule."""

from .psk_id import PreSharedKeyID, PSKLabel, PSKType, ResumptionPSKUsage
from .psk_secret import MAX_PSKS, psk_secret

__all__ = ["MAX_PSKS", "PSKLabel", "PSKType", "PreSharedKeyID", "ResumptionPSKUsage", "psk_secret"]
