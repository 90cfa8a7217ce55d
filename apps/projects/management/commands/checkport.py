"""`manage.py checkport --host H --port P`: fails, saying how to pick another port, when a server
could not listen on H:P. `make run` calls it before the demo prints its URL, so that a taken port
stops it there instead of after the banner, when `runserver` finds the port in use."""

import errno
import socket
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

# How many ports above a taken one are tried to suggest a free one.
SUGGEST_SPAN = 20


def port_error(*, host: str, port: int) -> OSError | None:
    """The error binding a listening TCP socket on host:port gives, or None if it can be bound.

    Binds as `runserver` does (SO_REUSEADDR, so a port left in TIME_WAIT counts as free) and
    releases the socket at once."""
    try:
        infos = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        return exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            return exc
    return None


def free_port_above(*, host: str, port: int) -> int | None:
    """The first port after `port` (within SUGGEST_SPAN) that host can listen on, or None."""
    for candidate in range(port + 1, min(port + 1 + SUGGEST_SPAN, 65536)):
        if port_error(host=host, port=candidate) is None:
            return candidate
    return None


def check_port(*, host: str, port: int) -> None:
    """Raises CommandError, with what to do, if a server could not listen on host:port."""
    error = port_error(host=host, port=port)
    if error is None:
        return
    if isinstance(error, socket.gaierror):
        raise CommandError(
            f"Cannot listen on {host}: the address does not resolve ({error.strerror}). "
            "Pick another with `make run HOST=127.0.0.1`."
        )
    suggestion = free_port_above(host=host, port=port) or port + 1
    how = f"pick another with `make run PORT={suggestion}`"
    if error.errno == errno.EADDRINUSE:
        raise CommandError(
            f"Port {port} on {host} is already in use (is another server running there?). "
            f"Stop that server, or {how}."
        )
    if error.errno == errno.EACCES:
        raise CommandError(
            f"Not allowed to listen on port {port} on {host} (ports below 1024 need root): {how}."
        )
    if error.errno == errno.EADDRNOTAVAIL:
        raise CommandError(
            f"{host} is not an address of this machine, so nothing can listen on it: "
            "pick another with `make run HOST=127.0.0.1`."
        )
    raise CommandError(f"Cannot listen on {host}:{port} ({error.strerror}): {how}.")


class Command(BaseCommand):
    help = "Fail, saying how to pick another, if a server could not listen on this host and port."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
        parser.add_argument("--port", type=int, default=8000, help="TCP port to listen on")

    def handle(self, *args: Any, **options: Any) -> None:
        port = options["port"]
        if not 1 <= port <= 65535:
            raise CommandError(f"PORT must be a TCP port from 1 to 65535, not {port}.")
        check_port(host=str(options["host"]), port=port)
