"""`manage.py checkport`, which `make run` calls before the demo prints its URL: a port another
server holds stops it with a message saying how to pick another."""

import io
import socket
from collections.abc import Iterator

import pytest
from django.core.management import CommandError, call_command

from apps.projects.management.commands.checkport import check_port, port_error


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on loopback that a real listening socket holds for the test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def test_a_taken_port_fails_with_how_to_pick_another(taken_port: int) -> None:
    with pytest.raises(CommandError) as caught:
        call_command("checkport", "--host", "127.0.0.1", "--port", str(taken_port))
    message = str(caught.value)
    assert f"Port {taken_port} on 127.0.0.1 is already in use" in message
    assert "make run PORT=" in message
    suggested = int(message.split("make run PORT=")[1].split("`")[0])
    assert suggested != taken_port
    assert port_error(host="127.0.0.1", port=suggested) is None


def test_a_free_port_passes_silently(taken_port: int) -> None:
    # The port the fixture held is in use; one released a moment ago is free again.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    out = io.StringIO()
    call_command("checkport", "--host", "127.0.0.1", "--port", str(free), stdout=out)
    assert out.getvalue() == ""
    check_port(host="127.0.0.1", port=free)


def test_the_check_releases_the_port(taken_port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    check_port(host="127.0.0.1", port=free)
    # The server that comes next can listen there.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", free))
        server.listen()


def test_an_address_not_of_this_machine_is_named() -> None:
    # 192.0.2.0/24 is TEST-NET-1: documentation only, never a local address.
    with pytest.raises(CommandError, match=r"192\.0\.2\.1 is not an address of this machine"):
        check_port(host="192.0.2.1", port=8000)


def test_a_port_out_of_range_is_refused() -> None:
    with pytest.raises(CommandError, match="PORT must be a TCP port from 1 to 65535, not 70000"):
        call_command("checkport", "--port", "70000")
