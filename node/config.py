"""``node.toml``: the operator's configuration, read once at start-up.

Strict: an unknown key or section (a typo such as ``registraton``) and a value of the wrong type
or out of range are refused with one line naming the file, the key and what is allowed, so a
setting never silently does nothing. ``sonet-node config check`` runs the same checks.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sonet.core import limits
from sonet.core.address import validate_node_name
from sonet.core.crypto import CryptoMode
from sonet.core.errors import LocalProtocolError
from sonet.core.handshake_guard import GuardSettings
from sonet.core.ratelimit import Rate
from sonet.federation.settings import MAX_PUSHES_IN_FLIGHT, FederationSettings
from sonet.transport.admission import PARTIAL_BYTES_PER_ACCOUNT, PARTIAL_BYTES_PER_ADDRESS, PARTIAL_BYTES_PER_DEVICE, PARTIAL_BYTES_PER_PEER

from .blob_settings import BLOB_KEYS, BlobSettings, blob_settings, blobs_toml
from .budget_settings import BUDGET_KEYS, BudgetSettings
from .data_dir import CONFIG_FILE
from .store.database_url import check_database_url
from .tls_settings import TLS_KEYS, TlsSettings, tls_settings, tls_toml

__all__ = ["NodeConfig", "ConfigError", "parse_listen", "CONFIG_FILE", "SETTINGS"]

_DAY_MS = 24 * 3600 * 1000
#: [federation] retry_base_s, retry_max_s, request_timeout_s
_FEDERATION_DEFAULTS = (0.5, 60.0, limits.PEER_REQUEST_DEADLINE_S)
#: [federation] pushes_in_flight
_PUSHES_IN_FLIGHT = FederationSettings().pushes_in_flight

#: every key node.toml may hold: top-level keys, then one tuple per [section]
SETTINGS: dict[str, tuple[str, ...]] = {
    "": ("name", "listen", "registration", "minimum_crypto_mode"),
    "mailbox": ("ttl_days", "max_envelopes", "max_bytes"),
    "federation": ("retry_base_s", "retry_max_s", "request_timeout_s", "pushes_in_flight"),
    "handshake": ("max_in_progress", "load_per_second", "per_address_per_second", "per_address_burst"),
    # the integer budgets (zipped with _STORAGE_DEFAULTS), then database (a postgresql:// URL)
    "storage": ("device_max_bytes", "account_max_bytes", "outbox_max_bytes", "relay_origin_max_bytes", "reserve_bytes", "max_database_bytes", "database"),
    "connections": (
        "max_connections",
        "max_per_address",
        "max_pending",
        "max_pending_per_address",
        "max_per_device",
        "max_unregistered",
        "max_unregistered_per_address",
        "upgrade_timeout_s",
        "handshake_timeout_s",
        "send_timeout_s",
        "unregistered_timeout_s",
        "message_timeout_s",
        # bytes of unfinished incoming messages held at once per actor (_PARTIAL_BYTES_DEFAULTS)
        "partial_bytes_per_address",
        "partial_bytes_per_device",
        "partial_bytes_per_account",
        "partial_bytes_per_peer",
    ),
    "budgets": tuple(key for key, _default, _range in BUDGET_KEYS),
    "blobs": tuple(key for key, _default, _range in BLOB_KEYS),
    "tls": TLS_KEYS,
    "ops": ("listen",),
}
#: [connections] defaults, in the order of SETTINGS["connections"] (transport/admission.py)
_CONNECTION_DEFAULTS: tuple[int | float, ...] = (4096, 256, 512, 64, 8, 128, 8, 5.0, limits.HANDSHAKE_DEADLINE_S, 30.0, 60.0, limits.MESSAGE_DEADLINE_S)
#: bounds of the [connections] counts, max_connections .. max_unregistered_per_address
_CONNECTION_COUNTS = ((16, 1_000_000), (1, 1_000_000), (1, 1_000_000), (1, 1_000_000), (1, 256), (1, 1_000_000), (1, 1_000_000))
#: the [connections] deadlines are seconds, more than 0 and at most an hour
_MAX_CONNECTION_SECONDS = 3600
#: [connections] partial_bytes_per_* defaults (transport/admission.py) and bounds: at least the
#: largest message of such a connection (a registration; a record), so each can send one
_PARTIAL_BYTES_DEFAULTS = (PARTIAL_BYTES_PER_ADDRESS, PARTIAL_BYTES_PER_DEVICE, PARTIAL_BYTES_PER_ACCOUNT, PARTIAL_BYTES_PER_PEER)
_PARTIAL_BYTES_BOUNDS = ((limits.MAX_UNREGISTERED_RECORD_BYTES, 1 << 40),) + ((limits.MAX_RECORD_BYTES, 1 << 40),) * 3
#: [handshake] defaults, in the order of SETTINGS["handshake"] (core/handshake_guard.py), and
#: their bounds (max_in_progress 0: every first message gets a cookie round)
_HANDSHAKE_DEFAULTS = (32, 50, 20, 100)
_HANDSHAKE_BOUNDS = ((0, 100_000), (1, 100_000), (1, 100_000), (1, 1_000_000))
_REGISTRATION = ("invite", "open")
_TTL_DAYS = (1, limits.MAX_ENVELOPE_TTL_MS // _DAY_MS)
_MAX_ENVELOPES = (1, 10_000_000)
#: at least one envelope of the largest size must fit; at most 1 TiB per mailbox
_MAX_BYTES = (limits.MAX_ENVELOPE_BODY, 1 << 40)
_MIB = 1 << 20
#: [storage] defaults, in the order of SETTINGS["storage"] (node/store/sqlite_budgets.py):
#: stored bytes per sending device, per sending account, per destination outbox, per relayed
#: origin node; free disk kept in reserve; the database's maximum size (0: none)
_STORAGE_DEFAULTS = (256 * _MIB, 512 * _MIB, 1024 * _MIB, 256 * _MIB, 256 * _MIB, 0)
#: the budgets hold at least one largest envelope (a MiB), at most a TiB; the reserve and the
#: maximum size may be 0 (none)
_STORAGE_BOUNDS = ((_MIB, 1 << 40),) * 4 + ((0, 1 << 40), (0, 1 << 50))
_MAX_SECONDS = 24 * 3600
_PORT = re.compile(r"[0-9]{1,5}")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


class ConfigError(Exception):
    """A user-facing configuration mistake; the message is one clear line."""


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for an IPv6 address) -> (host, port); ConfigError otherwise."""
    bad = f"invalid listen address {text!r} (expected HOST:PORT with a port from 0 to 65535, like 127.0.0.1:7480)"
    host, sep, port = text.rpartition(":")
    if not sep or not _PORT.fullmatch(port) or int(port) > 65535:
        raise ConfigError(bad)
    if host.startswith("[") and host.endswith("]"):
        try:
            host = str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            raise ConfigError(bad) from None
    elif not _HOST.fullmatch(host):
        raise ConfigError(bad)
    return host, int(port)


def _unknown(key: str, known: tuple[str, ...], where: str, source: str) -> ConfigError:
    guess = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {guess[0]!r}? " if guess else ""
    return ConfigError(f"{source}: unknown setting {where}{key!r} ({hint}allowed: {', '.join(known)})")


def _check_keys(raw: dict, source: str) -> None:
    sections = tuple(s for s in SETTINGS if s)
    for key, value in raw.items():
        if key in sections:
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: [{key}] must be a table (a [{key}] section)")
            for inner in value:
                if inner not in SETTINGS[key]:
                    raise _unknown(inner, SETTINGS[key], f"in [{key}]: ", source)
        elif key not in SETTINGS[""]:
            if isinstance(value, dict):
                raise ConfigError(f"{source}: unknown section [{key}] (allowed: {', '.join(f'[{s}]' for s in sections)})")
            raise _unknown(key, SETTINGS[""] + tuple(f"[{s}]" for s in sections), "", source)


def _text(table: dict, key: str, default: str | None, source: str) -> str:
    value = table.get(key, default)
    if value is None:
        raise ConfigError(f"{source}: missing setting {key!r}")
    if not isinstance(value, str):
        raise ConfigError(f"{source}: {key} = {value!r} must be a quoted string")
    return value


def _whole(table: dict, section: str, key: str, bounds: tuple[int, int], default: int, source: str) -> int:
    value = table.get(key, default)
    low, high = bounds
    if type(value) is not int or not low <= value <= high:
        raise ConfigError(f"{source}: {section}.{key} = {value!r} is not allowed (a whole number from {low} to {high})")
    return value


def _budgets(section: dict, source: str) -> BudgetSettings:
    """The [budgets] settings, each checked against its range in BUDGET_KEYS: a whole number
    where the default is one, else a number more than the low end."""
    values: dict[str, int | float] = {}
    for key, default, (low, high) in BUDGET_KEYS:
        value = section.get(key, default)
        if isinstance(default, float):
            if type(value) not in (int, float) or not low < value <= high:
                raise ConfigError(f"{source}: budgets.{key} = {value!r} is not allowed (a number more than {low} and at most {high})")
            values[key] = float(value)
        else:
            values[key] = _whole(section, "budgets", key, (int(low), int(high)), default, source)
    return BudgetSettings(**values)  # type: ignore[arg-type]


def _handshake(section: dict, source: str) -> dict[str, int]:
    """The [handshake] settings as NodeConfig fields."""
    return {
        f"handshake_{key}": _whole(section, "handshake", key, bounds, default, source)
        for key, bounds, default in zip(SETTINGS["handshake"], _HANDSHAKE_BOUNDS, _HANDSHAKE_DEFAULTS)
    }


def _seconds(
    section: dict, key: str, default: float, source: str, *, name: str = "federation", most: int = _MAX_SECONDS
) -> float:
    value = section.get(key, default)
    if type(value) not in (int, float) or not 0 < value <= most:
        longest = "a day" if most == _MAX_SECONDS else f"{most} s"
        raise ConfigError(
            f"{source}: {name}.{key} = {value!r} is not allowed "
            f"({name}.{key} must be a number of seconds, more than 0 and at most {longest} ({most}))"
        )
    return float(value)


def _ops_listen(section: dict, source: str) -> str | None:
    """[ops] listen: HOST:PORT of the operations listener, None (off) when absent."""
    if "listen" not in section:
        return None
    value = section["listen"]
    if not isinstance(value, str):
        raise ConfigError(f"{source}: ops.listen = {value!r} must be a quoted string")
    try:
        parse_listen(value)
    except ConfigError as exc:
        raise ConfigError(f"{source}: ops.listen: {exc}") from None
    return value


def _database(section: dict, source: str) -> str | None:
    """[storage] database: the PostgreSQL database's URL, None (node.db) when absent."""
    if "database" not in section:
        return None
    value = section["database"]
    if not isinstance(value, str):
        raise ConfigError(f"{source}: storage.database must be a quoted string")
    try:
        return check_database_url(value)
    except ValueError as exc:
        raise ConfigError(f"{source}: storage.{exc}") from None


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
    #: pushes on their way to a next hop at once, per destination (the hop applies them in order)
    federation_pushes_in_flight: int = _PUSHES_IN_FLIGHT
    #: [handshake]: the handshake guard (core/handshake_guard.py, docs/operations.md)
    handshake_max_in_progress: int = _HANDSHAKE_DEFAULTS[0]
    handshake_load_per_second: int = _HANDSHAKE_DEFAULTS[1]
    handshake_per_address_per_second: int = _HANDSHAKE_DEFAULTS[2]
    handshake_per_address_burst: int = _HANDSHAKE_DEFAULTS[3]
    #: [storage]: stored-bytes budgets and the disk reserve (docs/operations.md, docs/security.md)
    storage_device_max_bytes: int = _STORAGE_DEFAULTS[0]
    storage_account_max_bytes: int = _STORAGE_DEFAULTS[1]
    storage_outbox_max_bytes: int = _STORAGE_DEFAULTS[2]
    storage_relay_origin_max_bytes: int = _STORAGE_DEFAULTS[3]
    storage_reserve_bytes: int = _STORAGE_DEFAULTS[4]
    storage_max_database_bytes: int = _STORAGE_DEFAULTS[5]
    #: [storage] database: a postgresql:// URL (node/store/postgres.py); None: node.db in the data dir
    storage_database: str | None = None
    #: [connections]: caps and deadlines of the port (docs/operations.md, docs/security.md)
    max_connections: int = int(_CONNECTION_DEFAULTS[0])
    max_connections_per_address: int = int(_CONNECTION_DEFAULTS[1])
    max_pending_connections: int = int(_CONNECTION_DEFAULTS[2])
    max_pending_per_address: int = int(_CONNECTION_DEFAULTS[3])
    max_connections_per_device: int = int(_CONNECTION_DEFAULTS[4])
    max_unregistered: int = int(_CONNECTION_DEFAULTS[5])
    max_unregistered_per_address: int = int(_CONNECTION_DEFAULTS[6])
    upgrade_timeout_s: float = float(_CONNECTION_DEFAULTS[7])
    handshake_timeout_s: float = float(_CONNECTION_DEFAULTS[8])
    send_timeout_s: float = float(_CONNECTION_DEFAULTS[9])
    unregistered_timeout_s: float = float(_CONNECTION_DEFAULTS[10])
    message_timeout_s: float = float(_CONNECTION_DEFAULTS[11])
    partial_bytes_per_address: int = _PARTIAL_BYTES_DEFAULTS[0]
    partial_bytes_per_device: int = _PARTIAL_BYTES_DEFAULTS[1]
    partial_bytes_per_account: int = _PARTIAL_BYTES_DEFAULTS[2]
    partial_bytes_per_peer: int = _PARTIAL_BYTES_DEFAULTS[3]
    #: [budgets]: per-actor cost budgets and allowances (node/budget_settings.py)
    budgets: BudgetSettings = field(default_factory=BudgetSettings)
    #: [blobs]: the attachment store's size limit, quotas and retention (node/blob_settings.py)
    blobs: BlobSettings = field(default_factory=BlobSettings)
    #: [tls]: listen with wss:// (node/tls_settings.py); None: plain ws://
    tls: TlsSettings | None = None
    #: [ops] listen: the operations HTTP listener (/metrics, /health, /ready; node/ops/), off when None
    ops_listen: str | None = None

    @property
    def host_port(self) -> tuple[str, int]:
        return parse_listen(self.listen)

    def to_toml(self) -> str:
        return (
            "# Sonet node configuration. Restart the node after editing;\n"
            "# `sonet-node config check --data DIR` checks it (unknown keys are refused).\n"
            f'name = "{self.name}"\n'
            f'listen = "{self.listen}"\n'
            '# "invite" (default): `sonet-node invite` prints one-time tokens; "open": anyone may register\n'
            f'registration = "{self.registration}"\n'
            '# "classical" < "hybrid" (default) < "pq": weakest crypto mode a peer or device may use\n'
            f'minimum_crypto_mode = "{self.minimum_crypto_mode.value}"\n'
            "\n[mailbox]\n"
            f"# days an undelivered envelope is kept ({_TTL_DAYS[0]} to {_TTL_DAYS[1]})\n"
            f"ttl_days = {self.envelope_ttl_ms // _DAY_MS}\n"
            "# per device mailbox\n"
            f"max_envelopes = {self.mailbox_max_envelopes}\n"
            f"max_bytes = {self.mailbox_max_bytes}\n"
            + self._federation_toml()
            + self._handshake_toml()
            + self._storage_toml()
            + self._connections_toml()
            + self._budgets_toml()
            + blobs_toml(self.blobs)
            + tls_toml(self.tls)
            + self._ops_toml()
        )

    def _ops_toml(self) -> str:
        if self.ops_listen is None:
            return '\n# [ops]  (off; see docs/operations.md)\n# listen = "127.0.0.1:9480"\n'
        return f'\n[ops]\n# /metrics, /health and /ready over plain HTTP: keep it off the public network\nlisten = "{self.ops_listen}"\n'

    def _budgets_toml(self) -> str:
        values = asdict(self.budgets)
        lines = [f"{key} = {values[key]}" for key, _default, _range in BUDGET_KEYS]
        if self.budgets == BudgetSettings():
            return "\n# [budgets]  (the defaults; see docs/operations.md)\n" + "".join(f"# {line}\n" for line in lines)
        return "\n[budgets]\n" + "".join(f"{line}\n" for line in lines)

    @property
    def _connection_values(self) -> tuple[int | float, ...]:
        return (
            self.max_connections,
            self.max_connections_per_address,
            self.max_pending_connections,
            self.max_pending_per_address,
            self.max_connections_per_device,
            self.max_unregistered,
            self.max_unregistered_per_address,
            self.upgrade_timeout_s,
            self.handshake_timeout_s,
            self.send_timeout_s,
            self.unregistered_timeout_s,
            self.message_timeout_s,
            self.partial_bytes_per_address,
            self.partial_bytes_per_device,
            self.partial_bytes_per_account,
            self.partial_bytes_per_peer,
        )

    def _connections_toml(self) -> str:
        values = self._connection_values
        lines = [f"{key} = {value}" for key, value in zip(SETTINGS["connections"], values)]
        if values == _CONNECTION_DEFAULTS + _PARTIAL_BYTES_DEFAULTS:
            return "\n# [connections]  (the defaults; see docs/operations.md)\n" + "".join(f"# {line}\n" for line in lines)
        return "\n[connections]\n" + "".join(f"{line}\n" for line in lines)

    @property
    def _storage_values(self) -> tuple[int, ...]:
        return (
            self.storage_device_max_bytes,
            self.storage_account_max_bytes,
            self.storage_outbox_max_bytes,
            self.storage_relay_origin_max_bytes,
            self.storage_reserve_bytes,
            self.storage_max_database_bytes,
        )

    def _storage_toml(self) -> str:
        values = self._storage_values
        lines = [f"{key} = {value}" for key, value in zip(SETTINGS["storage"], values)]
        if self.storage_database is not None:
            database = f"# the PostgreSQL database of this node (see docs/operations.md)\ndatabase = {json.dumps(self.storage_database)}\n"
            if values == _STORAGE_DEFAULTS:
                return "\n[storage]\n" + database + "".join(f"# {line}\n" for line in lines)
            return "\n[storage]\n" + database + "".join(f"{line}\n" for line in lines)
        if values == _STORAGE_DEFAULTS:
            return "\n# [storage]  (the defaults; see docs/operations.md)\n" + "".join(f"# {line}\n" for line in lines)
        return "\n[storage]\n" + "".join(f"{line}\n" for line in lines)

    def _federation_toml(self) -> str:
        values = (self.federation_retry_base_s, self.federation_retry_max_s, self.federation_request_timeout_s, self.federation_pushes_in_flight)
        lines = [f"{key} = {value}" for key, value in zip(SETTINGS["federation"], values)]
        if values == (*_FEDERATION_DEFAULTS, _PUSHES_IN_FLIGHT):
            # shown commented out, so that an operator (or a test) can add the section
            return "\n# [federation]  (the defaults; see docs/operations.md)\n" + "".join(f"# {line}\n" for line in lines)
        return "\n[federation]\n" + "".join(f"{line}\n" for line in lines)

    @property
    def handshake_guard(self) -> GuardSettings:
        """What the node's handshake guard is built with (a load burst of two seconds' worth)."""
        load = self.handshake_load_per_second
        return GuardSettings(
            max_in_progress=self.handshake_max_in_progress,
            load_rate=Rate(per_second=load, burst=2 * load),
            per_address=Rate(per_second=self.handshake_per_address_per_second, burst=self.handshake_per_address_burst),
        )

    def _handshake_toml(self) -> str:
        values = (
            self.handshake_max_in_progress,
            self.handshake_load_per_second,
            self.handshake_per_address_per_second,
            self.handshake_per_address_burst,
        )
        lines = [f"{key} = {value}" for key, value in zip(SETTINGS["handshake"], values)]
        if values == _HANDSHAKE_DEFAULTS:
            return "\n# [handshake]  (the defaults; see docs/operations.md)\n" + "".join(f"# {line}\n" for line in lines)
        return "\n[handshake]\n" + "".join(f"{line}\n" for line in lines)

    @classmethod
    def load(cls, data_dir: Path) -> "NodeConfig":
        path = data_dir / CONFIG_FILE
        try:
            raw = tomllib.loads(path.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path} not found: run `sonet-node init --data {data_dir} ...` first") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})") from None
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, source: str = "config") -> "NodeConfig":
        _check_keys(raw, source)
        mailbox = raw.get("mailbox", {})
        federation = raw.get("federation", {})
        storage_section = raw.get("storage", {})
        storage = [
            _whole(storage_section, "storage", key, bounds, default, source)
            for key, bounds, default in zip(SETTINGS["storage"], _STORAGE_BOUNDS, _STORAGE_DEFAULTS)
        ]
        connections = raw.get("connections", {})
        keys = SETTINGS["connections"]
        counts = [
            _whole(connections, "connections", key, bounds, int(default), source)
            for key, bounds, default in zip(keys, _CONNECTION_COUNTS, _CONNECTION_DEFAULTS)
        ]
        deadlines = [
            _seconds(connections, key, float(default), source, name="connections", most=_MAX_CONNECTION_SECONDS)
            for key, default in zip(keys[len(counts) :], _CONNECTION_DEFAULTS[len(counts) :])
        ]
        partial = [
            _whole(connections, "connections", key, bounds, default, source)
            for key, bounds, default in zip(keys[len(_CONNECTION_DEFAULTS) :], _PARTIAL_BYTES_BOUNDS, _PARTIAL_BYTES_DEFAULTS)
        ]
        registration = _text(raw, "registration", "invite", source)
        if registration not in _REGISTRATION:
            raise ConfigError(f"{source}: registration = {registration!r} is not allowed (allowed: {', '.join(_REGISTRATION)})")
        mode = _text(raw, "minimum_crypto_mode", CryptoMode.HYBRID.value, source)
        modes = tuple(m.value for m in CryptoMode)
        if mode not in modes:
            raise ConfigError(f"{source}: minimum_crypto_mode = {mode!r} is not allowed (allowed: {', '.join(modes)})")
        listen = _text(raw, "listen", None, source)
        try:
            name = validate_node_name(_text(raw, "name", None, source))
            parse_listen(listen)
        except (ConfigError, LocalProtocolError) as exc:
            raise ConfigError(f"{source}: {exc}") from None
        retry_max_s = _seconds(federation, "retry_max_s", _FEDERATION_DEFAULTS[1], source)
        ops_listen = _ops_listen(raw.get("ops", {}), source)
        config = cls(
            name=name,
            listen=listen,
            registration=registration,
            minimum_crypto_mode=CryptoMode(mode),
            envelope_ttl_ms=_whole(mailbox, "mailbox", "ttl_days", _TTL_DAYS, limits.DEFAULT_ENVELOPE_TTL_MS // _DAY_MS, source) * _DAY_MS,
            mailbox_max_envelopes=_whole(mailbox, "mailbox", "max_envelopes", _MAX_ENVELOPES, limits.DEFAULT_MAILBOX_MAX_ENVELOPES, source),
            mailbox_max_bytes=_whole(mailbox, "mailbox", "max_bytes", _MAX_BYTES, limits.DEFAULT_MAILBOX_MAX_BYTES, source),
            # a smaller cap alone (tests) also shrinks the first delay
            federation_retry_base_s=_seconds(federation, "retry_base_s", min(_FEDERATION_DEFAULTS[0], retry_max_s), source),
            federation_retry_max_s=retry_max_s,
            federation_request_timeout_s=_seconds(federation, "request_timeout_s", _FEDERATION_DEFAULTS[2], source),
            federation_pushes_in_flight=_whole(
                federation, "federation", "pushes_in_flight", (1, MAX_PUSHES_IN_FLIGHT), _PUSHES_IN_FLIGHT, source
            ),
            **_handshake(raw.get("handshake", {}), source),
            storage_device_max_bytes=storage[0],
            storage_account_max_bytes=storage[1],
            storage_outbox_max_bytes=storage[2],
            storage_relay_origin_max_bytes=storage[3],
            storage_reserve_bytes=storage[4],
            storage_max_database_bytes=storage[5],
            storage_database=_database(storage_section, source),
            max_connections=counts[0],
            max_connections_per_address=counts[1],
            max_pending_connections=counts[2],
            max_pending_per_address=counts[3],
            max_connections_per_device=counts[4],
            max_unregistered=counts[5],
            max_unregistered_per_address=counts[6],
            upgrade_timeout_s=deadlines[0],
            handshake_timeout_s=deadlines[1],
            send_timeout_s=deadlines[2],
            unregistered_timeout_s=deadlines[3],
            message_timeout_s=deadlines[4],
            partial_bytes_per_address=partial[0],
            partial_bytes_per_device=partial[1],
            partial_bytes_per_account=partial[2],
            partial_bytes_per_peer=partial[3],
            budgets=_budgets(raw.get("budgets", {}), source),
            blobs=blob_settings(raw.get("blobs", {}), lambda table, section, key, bounds, default: _whole(table, section, key, bounds, default, source)),
            tls=tls_settings(raw.get("tls", {}), source, ConfigError),
            ops_listen=ops_listen,
        )
        if ops_listen is not None and parse_listen(ops_listen) == config.host_port and config.host_port[1] != 0:
            raise ConfigError(f"{source}: ops.listen {ops_listen!r} is the node's own listen address: give the operations listener a port of its own")
        if config.federation_retry_max_s < config.federation_retry_base_s:
            raise ConfigError(f"{source}: federation.retry_max_s must be at least retry_base_s")
        return config
