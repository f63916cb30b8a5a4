"""The URL-like settings: their checks, and how they are shown without a password.

The checks run inside the settings model, so a bad Redis URL, S3 endpoint, broker list or
bind host fails in milliseconds with the setting's name, before anything starts. They raise
``ValueError`` with a message that never repeats a password. :func:`redis_address` names a
Redis for log lines and errors (scheme, host, port, db; never credentials);
:func:`mask_password` is a URL as ``config show`` prints it.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, parse_qs, urlsplit

REDIS_SCHEMES = ("redis", "rediss", "unix")
REDIS_DEFAULT_PORT = 6379
#: What replaces a password in a shown URL.
PASSWORD_MASK = "***"

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
# A password given as a query argument (redis-py accepts ?password=…).
_QUERY_PASSWORD = re.compile(r"(?<=[?&])(password=)[^&#]*")


def check_redis_url(url: str) -> None:
    """``redis://`` or ``rediss://`` with a host, or ``unix://`` with a socket path; a port
    1 to 65535 and a db that is a non-negative integer where given."""
    scheme = _scheme(url, REDIS_SCHEMES, "redis://HOST:PORT/DB, rediss://… or unix:///PATH")
    parts = _split(url)
    if scheme == "unix":
        if parts.hostname:
            raise ValueError("a unix:// URL names a socket path, not a host: unix:///PATH?db=N")
        if not parts.path.strip("/"):
            raise ValueError("a unix:// URL needs the socket path: unix:///PATH?db=N")
    else:
        if not parts.hostname:
            raise ValueError(f"a {scheme}:// URL needs a host: {scheme}://HOST:PORT/DB")
        _port(parts)
        if parts.path.strip("/"):
            _db(parts.path.strip("/"))
    for db in parse_qs(parts.query).get("db", []):
        _db(db)


def check_http_url(url: str, *, appended: bool = False) -> None:
    """``http://`` or ``https://`` with a host and a port 1 to 65535 where given. ``appended``:
    paths are appended to it, so it may have no query or fragment."""
    _scheme(url, ("http", "https"), "http(s)://HOST[:PORT]")
    parts = _split(url)
    if not parts.hostname:
        raise ValueError("needs a host: http(s)://HOST[:PORT]")
    _port(parts)
    if appended and (parts.query or parts.fragment):
        raise ValueError("object keys are appended to it: no '?' query or '#' fragment")


def check_bootstrap_servers(servers: str) -> None:
    """A comma-separated list of ``host:port`` (``[v6 address]:port``), port 1 to 65535."""
    entries = [s.strip() for s in servers.split(",") if s.strip()]
    if not entries:
        raise ValueError("names no broker: give HOST:PORT[,HOST:PORT…]")
    for entry in entries:
        if "://" in entry or "/" in entry or any(c.isspace() for c in entry):
            raise ValueError(f"{entry!r} is not HOST:PORT (no scheme, path or spaces)")
        host, sep, port = entry.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
            if not _is_ipv6(host):
                raise ValueError(f"{entry!r}: {host!r} is not an IPv6 address")
        elif ":" in host:
            raise ValueError(f"{entry!r}: write an IPv6 address in brackets, [ADDRESS]:PORT")
        if not sep or not host:
            raise ValueError(f"{entry!r} is not HOST:PORT")
        if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            raise ValueError(f"{entry!r}: the port must be a number from 1 to 65535")


def check_bind_host(host: str) -> None:
    """A host name or IP address to bind, without scheme or port (the port is its own
    setting); an IPv6 address without brackets."""
    if "://" in host or "/" in host or any(c.isspace() for c in host):
        raise ValueError(f"{host!r} is not a host name or IP address (no scheme or path)")
    if ":" in host and not _is_ipv6(host):
        raise ValueError(f"{host!r}: give the address only; the port is a setting of its own")


def redis_address(url: str) -> str:
    """The Redis of ``url`` for people: ``redis://host:port/db`` (or ``unix:///path``),
    without user name or password."""
    parts = urlsplit(url)
    dbs = parse_qs(parts.query).get("db")
    if parts.scheme == "unix":
        return f"unix://{parts.path}" + (f"?db={dbs[0]}" if dbs else "")
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port or REDIS_DEFAULT_PORT
    except ValueError:
        port = REDIS_DEFAULT_PORT
    db = dbs[0] if dbs else (parts.path.strip("/") or "0")
    return f"{parts.scheme}://{host}:{port}/{db}"


def mask_password(url: str, mask: str = PASSWORD_MASK) -> str:
    """``url`` with its password (in the user part or a ``password=`` query argument)
    replaced by ``mask``; a URL without one comes back unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return mask  # cannot tell where the password is: show none of it
    head = url.index("://") + 3 if "://" in url else 0
    netloc, rest = parts.netloc, url[head + len(parts.netloc) :]
    if parts.password:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:{mask}@{host}"
    rest = _QUERY_PASSWORD.sub(lambda m: m.group(1) + mask, rest)
    return url[:head] + netloc + rest


def _scheme(url: str, allowed: tuple[str, ...], form: str) -> str:
    scheme, sep, _ = url.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        raise ValueError(f"not a URL: expected {form}")
    if scheme not in allowed:
        raise ValueError(f"scheme {scheme!r} is not one of {', '.join(allowed)} ({form})")
    return scheme


def _split(url: str) -> SplitResult:
    if any(c.isspace() for c in url):
        raise ValueError("a URL has no spaces")
    try:
        return urlsplit(url)
    except ValueError:  # e.g. an unclosed '[' of an IPv6 host; the message could quote it
        raise ValueError("the host part does not parse") from None


def _port(parts: SplitResult) -> None:
    try:
        port = parts.port
    except ValueError:
        port = 0
    else:
        if port is None:
            return
    if not 1 <= port <= 65535:
        raise ValueError("the port must be a number from 1 to 65535")


def _db(text: str) -> None:
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"the database {text!r} is not a non-negative integer")


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True
