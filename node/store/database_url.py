"""Where a node's store lives: the SQLite file in its data directory (the default) or a
PostgreSQL database named by a ``postgresql://`` URL (node.toml ``[storage] database``).
Plain string work, so reading the configuration never imports a database driver."""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["is_postgres_url", "redact_url", "strip_password", "check_database_url"]

_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(target: str) -> bool:
    return target.startswith(_SCHEMES)


def check_database_url(url: str) -> str:
    """``url`` if it names a PostgreSQL database; ValueError (one line, no password) if not."""
    if not is_postgres_url(url):
        raise ValueError(
            f"database = {redact_url(url)!r} is not a postgresql:// URL (leave it out for the SQLite file in the data directory)"
        )
    try:
        urlsplit(url).port  # noqa: B018 - a malformed port raises here
    except ValueError as exc:
        raise ValueError(f"database = {redact_url(url)!r}: {exc}") from None
    return url


def redact_url(url: str) -> str:
    """``url`` without its password (for logs, errors and ``status``), also one given as a
    ``password=`` query parameter."""
    return _replace_password(url, "***")


def strip_password(url: str) -> str:
    """``url`` with its password left out altogether (libpq then takes it from PGPASSWORD,
    ~/.pgpass or peer authentication): what a backup's node.toml keeps."""
    return _replace_password(url, None)


def _replace_password(url: str, mask: str | None) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        if ":" in userinfo:
            user = userinfo.partition(":")[0]
            netloc = f"{user}:{mask}@{hostport}" if mask is not None else f"{user}@{hostport}"
    pairs = parts.query.split("&") if parts.query else []
    query = "&".join(
        pair if not pair.lower().startswith("password=") else f"password={mask}"
        for pair in pairs
        if mask is not None or not pair.lower().startswith("password=")
    )
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    # by hand: urlunsplit drops the empty host of postgresql:///db?host=/run/postgresql
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")
