"""``node.toml``: the operator's configuration, read once at start-up."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from sonet.core import limits
from sonet.core.address import validate_node_name
from sonet.core.crypto import CryptoMode
from sonet.core.errors import LocalProtocolError

__all__ = ["NodeConfig", "ConfigError", "parse_listen", "CONFIG_FILE"]

CONFIG_FILE = "node.toml"
_DAY_MS = 24 * 3600 * 1000
#: [federation] retry_base_s, retry_max_s, request_timeout_s
_FEDERATION_DEFAULTS = (0.5, 60.0, limits.PEER_REQUEST_DEADLINE_S)


class ConfigError(Exception):
    """A user-facing configuration mistake; the message is one clear line."""


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"invalid listen address {text!r} (expected HOST:PORT, like 127.0.0.1:7480)")
    return host.strip("[]"), int(port)


def _seconds(section: dict, key: str, default: float, source: str) -> float:
    value = section.get(key, default)
    if type(value) not in (int, float) or not 0 < value <= 24 * 3600:
        raise ConfigError(f"{source}: federation.{key} must be a number of seconds, more than 0 and at most a day")
    return float(value)


@dataclass(frozen=True, kw_only=True)
class NodeConfig:
    name: str
    listen: str
    registration: str = "invite"
    minimum_crypto_mode: CryptoMode = CryptoMode.HYBRID
    envelope_ttl_ms: int = limits.DEFAULT_ENVELOPE_TTL_MS
    mailbox_max_envelopes: int = limits.DEFAULT_MAILBOX_MAX_ENVELOPES
    mailbox_max_bytes: int = limits.DEFAULT_MAILBOX_MAX_BYTES
    #: retries towards a peer: exponential backoff with full jitter from base up to max
    federation_retry_base_s: float = _FEDERATION_DEFAULTS[0]
    federation_retry_max_s: float = _FEDERATION_DEFAULTS[1]
    #: how long a peer may take to answer one request (a push, a lookup)
    federation_request_timeout_s: float = _FEDERATION_DEFAULTS[2]

    @property
    def host_port(self) -> tuple[str, int]:
        return parse_listen(self.listen)

    def to_toml(self) -> str:
        return (
            "# Sonet node configuration. Restart the node after editing.\n"
            f'name = "{self.name}"\n'
            f'listen = "{self.listen}"\n'
            '# "invite" (default): `sonet-node invite` prints one-time tokens; "open": anyone may register\n'
            f'registration = "{self.registration}"\n'
            '# "classical" < "hybrid" (default) < "pq": weakest crypto mode a peer or device may use\n'
            f'minimum_crypto_mode = "{self.minimum_crypto_mode.value}"\n'
            "\n[mailbox]\n"
            f"ttl_days = {self.envelope_ttl_ms // _DAY_MS}\n"
            f"max_envelopes = {self.mailbox_max_envelopes}\n"
            f"max_bytes = {self.mailbox_max_bytes}\n"
            + self._federation_toml()
        )

    def _federation_toml(self) -> str:
        values = (self.federation_retry_base_s, self.federation_retry_max_s, self.federation_request_timeout_s)
        lines = [f"{key} = {value}" for key, value in zip(("retry_base_s", "retry_max_s", "request_timeout_s"), values)]
        if values == _FEDERATION_DEFAULTS:
            # shown commented out, so that an operator (or a test) can add the section
            return "\n# [federation]  (the defaults; see docs/operations.md)\n" + "".join(f"# {line}\n" for line in lines)
        return "\n[federation]\n" + "".join(f"{line}\n" for line in lines)

    @classmethod
    def load(cls, data_dir: Path) -> "NodeConfig":
        path = data_dir / CONFIG_FILE
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path} not found: run `sonet-node init --data {data_dir} ...` first") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: dict, *, source: str = "config") -> "NodeConfig":
        try:
            mailbox = raw.get("mailbox", {})
            federation = raw.get("federation", {})
            if not isinstance(federation, dict):
                raise ConfigError(f"{source}: [federation] must be a table")
            retry_max_s = _seconds(federation, "retry_max_s", _FEDERATION_DEFAULTS[1], source)
            ttl_days = int(mailbox.get("ttl_days", 30))
            registration = str(raw.get("registration", "invite"))
            if registration not in ("invite", "open"):
                raise ConfigError(f'{source}: registration must be "invite" or "open"')
            if not 1 <= ttl_days <= 30:
                raise ConfigError(f"{source}: mailbox.ttl_days must be 1..30")
            config = cls(
                name=validate_node_name(str(raw["name"])),
                listen=str(raw["listen"]),
                registration=registration,
                minimum_crypto_mode=CryptoMode.parse(raw.get("minimum_crypto_mode", "hybrid"), remote=False),
                envelope_ttl_ms=ttl_days * _DAY_MS,
                mailbox_max_envelopes=int(mailbox.get("max_envelopes", limits.DEFAULT_MAILBOX_MAX_ENVELOPES)),
                mailbox_max_bytes=int(mailbox.get("max_bytes", limits.DEFAULT_MAILBOX_MAX_BYTES)),
                # a smaller cap alone (tests) also shrinks the first delay
                federation_retry_base_s=_seconds(federation, "retry_base_s", min(_FEDERATION_DEFAULTS[0], retry_max_s), source),
                federation_retry_max_s=retry_max_s,
                federation_request_timeout_s=_seconds(federation, "request_timeout_s", _FEDERATION_DEFAULTS[2], source),
            )
            if config.federation_retry_max_s < config.federation_retry_base_s:
                raise ConfigError(f"{source}: federation.retry_max_s must be at least retry_base_s")
        except KeyError as exc:
            raise ConfigError(f"{source}: missing setting {exc.args[0]!r}") from None
        except (TypeError, ValueError, LocalProtocolError) as exc:
            raise ConfigError(f"{source}: {exc}") from None
        config.host_port  # validates listen
        return config
