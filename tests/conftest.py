import ipaddress
import os
import socket

import pytest

from reliability_log import CALL_PASSED

# A stray call to a model hub must fail fast, not hang: nothing here downloads.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# llama.cpp's OpenMP threads wait without spinning in every process the suite starts (the
# llama-cpp-python server too), as ttscale's own engines do: the suite shares its machine
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# a local Ray binds the loopback address, not the machine's network one (Ray's own switch)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def _loopback_only(connect):
    """The suite talks only to servers it started on this machine: a connection anywhere else
    fails the test that made it, naming the address."""

    def guarded(sock, address, *args):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            try:
                loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
            except ValueError:  # a host name: resolving it would already leave the machine
                loopback = False
            if not loopback:
                raise ConnectionRefusedError(
                    f"the test suite connects only to 127.0.0.1, not to {address!r}")
        return connect(sock, address, *args)

    return guarded


socket.socket.connect = _loopback_only(socket.socket.connect)
socket.socket.connect_ex = _loopback_only(socket.socket.connect_ex)


# Fixtures that run a model or start servers for tens of seconds: every test that uses one
# is slow (else the first fast test to need it would pay for it in `make test-fast`).
SLOW_FIXTURES = {
    ("test_value_head", "labelled"),   # Monte-Carlo step labels from policy rollouts
    ("test_http_prm", "servers"),      # one PRM server process per format
    ("test_distributed", "local_ray"),  # a local Ray with two actors
    ("test_planner_cli", "study"),     # a calibration study on the embedded model
    ("test_engine_hf", "engine"),      # the embedded model dequantised into transformers
}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Whether a test's body passed, for fixtures that log what it met only then."""
    report = yield
    if report.when == "call":
        item.stash[CALL_PASSED] = report.passed
    return report


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = getattr(item.module, "__name__", "")
        if any((module, name) in SLOW_FIXTURES for name in getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
