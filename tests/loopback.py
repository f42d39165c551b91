"""A pytest fixture for tests that start servers: the test process, and everything it starts, in a
network namespace of its own whose only interface is the loopback (Linux, as root; elsewhere the
tests that use it are skipped with the reason). Ray, for one, listens on every interface whatever
`--node-ip-address` says; in here, every interface is the loopback."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

CLONE_NEWNET = 0x40000000


@pytest.fixture(scope="module")
def loopback_only():
    """This process in a new network namespace with only `lo`, up; back in the original one afterwards."""
    if not sys.platform.startswith("linux"):
        pytest.skip("network namespaces are Linux-only")
    libc = ctypes.CDLL(None, use_errno=True)
    original = os.open("/proc/self/ns/net", os.O_RDONLY)
    if libc.unshare(CLONE_NEWNET) != 0:
        os.close(original)
        pytest.skip(f"cannot make a network namespace here ({os.strerror(ctypes.get_errno())}; needs root)")
    try:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
        assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"], links
        yield
    finally:
        assert libc.setns(original, CLONE_NEWNET) == 0, os.strerror(ctypes.get_errno())
        os.close(original)
