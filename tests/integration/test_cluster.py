"""Cluster configuration as the daemon sees it (issue 7). The Raft layer
(src/cluster/raft_node.c) is unit-tested in tests/unit/test_raft_node.c;
until the ledger pipeline runs through it, a daemon given cluster_node
lines refuses to start (naming the line) instead of running unreplicated,
and bad cluster lines stop the start with FILE:LINE."""
import re
import socket
import subprocess

import pytest

from conftest import LEDGERMQD, free_port, ledgermq_only

pytestmark = ledgermq_only("tests ledgermqd's cluster configuration")


def can_connect(port):
    s = socket.socket()
    s.settimeout(1)
    try:
        s.connect(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def run_daemon(tmp_path, text):
    """Starts ledgermqd on TEXT (plus a listener); returns (rc, stderr, conf, port)."""
    port = free_port()
    conf = tmp_path / "cluster.conf"
    conf.write_text(text + "listener %d 127.0.0.1\n" % port)
    proc = subprocess.Popen([LEDGERMQD, "-c", str(conf), "-d", str(tmp_path / "data")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, cwd=str(tmp_path))
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=10)
        pytest.fail("ledgermqd did not exit")
    return proc.returncode, err.decode("utf-8", "replace"), conf, port


def test_cluster_lines_refused_until_wired(tmp_path):
    p1, p2, p3 = free_port(), free_port(), free_port()
    rc, err, conf, port = run_daemon(
        tmp_path, "# a three-node cluster\n"
        "cluster_node 1 127.0.0.1:%d\ncluster_node 2 127.0.0.1:%d\n"
        "cluster_node 3 127.0.0.1:%d\ncluster_self 1\n" % (p1, p2, p3))
    assert rc == 1, err
    m = re.search(r"ledgermqd: (\S+):(\d+): (.+)", err)
    assert m, err
    assert m.group(1) == str(conf) and m.group(2) == "2", err
    assert "clustering is not wired into the daemon yet" in m.group(3)
    assert not can_connect(port)
    assert not can_connect(p1)


@pytest.mark.parametrize("text,lineno,reason", [
    ("cluster_node 1 ::1:7001\n", 2, r"cluster_node address '::1:7001' is not HOST:PORT"),
    ("cluster_node 1 127.0.0.1:7001\ncluster_node 1 127.0.0.1:7002\n", 3,
     r"id or address already used \(line 2\)"),
    ("cluster_node 1 127.0.0.1:7001\n", 2, r"need cluster_self ID naming one of them"),
], ids=["ipv6-address", "duplicate-id", "no-self"])
def test_bad_cluster_lines(tmp_path, text, lineno, reason):
    rc, err, conf, port = run_daemon(tmp_path, "# line 1\n" + text)
    assert rc == 1, err
    m = re.search(r"ledgermqd: (\S+):(\d+): (.+)", err)
    assert m, err
    assert m.group(1) == str(conf) and int(m.group(2)) == lineno, err
    assert re.search(reason, m.group(3)), m.group(3)
    assert not can_connect(port)
