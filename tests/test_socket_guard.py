"""The suite's socket guard: a stray call to a real host fails loudly, loopback still works."""

import socket

import pytest

from tests.conftest import ExternalNetworkCall


@pytest.mark.parametrize(
    "address",
    [("203.0.113.7", 443), ("8.8.8.8", 53), ("2001:db8::1", 443, 0, 0)],
)
def test_connect_to_a_non_loopback_address_fails(address: tuple[object, ...]) -> None:
    family = socket.AF_INET6 if ":" in str(address[0]) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock, pytest.raises(ExternalNetworkCall):
        sock.connect(address)


@pytest.mark.parametrize("host", ["www.googleapis.com", "graph.microsoft.com", "slack.com"])
def test_resolving_a_real_host_fails(host: str) -> None:
    with pytest.raises(ExternalNetworkCall):
        socket.getaddrinfo(host, 443)


def test_loopback_is_allowed() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=2) as client:
            assert client.getpeername() == server.getsockname()
