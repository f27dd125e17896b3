"""The ports the lab and the tests pick for their servers."""

from __future__ import annotations

import socket

import pytest

from lab import ports
from lab.ports import free_port


def test_a_free_port_lies_below_the_ephemeral_range_so_no_outgoing_connection_takes_it():
    start = int(ports.EPHEMERAL_RANGE.read_text().split()[0])
    for _ in range(20):
        port = free_port(udp=True)
        assert ports.LOWEST <= port < start
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(socket.AF_INET, kind) as probe:
                probe.bind((ports.HOST, port))


def test_a_port_in_use_is_passed_over(monkeypatch: pytest.MonkeyPatch):
    with socket.socket() as taken:
        taken.bind((ports.HOST, 0))
        taken.listen()
        busy = taken.getsockname()[1]
        wanted = iter([busy, busy, 23456 if busy != 23456 else 23457])
        monkeypatch.setattr(ports.random, "randint", lambda low, high: next(wanted))
        assert free_port() != busy
