"""ledgermqd holds the node's ledger (issue 4 points 4 and 6): the node key is
created on the first start with mode 0600 and never logged, the configured
origin and sync policy reach the log, the ledger LOCK keeps offline writers
out while the daemon runs, and a damaged log is reported without stopping
the broker."""
import os
import re
import stat
import subprocess

import pytest

from conftest import BUILD_DIR, ledgermq_only

LEDGERMQ = os.path.join(BUILD_DIR, "ledgermq")

pytestmark = ledgermq_only("the ledger is ledgermq's own")


def cli(*args, stdin=b"", timeout=30):
    return subprocess.run([LEDGERMQ, *args], input=stdin, capture_output=True, timeout=timeout)


def test_first_start_creates_node_key_and_ledger(broker_factory):
    b = broker_factory()
    key = os.path.join(b.data_dir, "node.key")
    assert os.path.isfile(key)
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    m = b.wait_log(r"ledger: origin (\S+), 0 records in 0 blocks, root [0-9a-f]{64}, node key (\S+)")
    assert m, b.log()
    assert m.group(1) == "ledgermq.local/default"
    # The log names the verifier key, the public half only.
    shown = cli("-d", b.data_dir, "key", "show")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.decode().strip() == m.group(2)
    with open(key, "rb") as f:
        secret = f.read()
    assert secret not in b.log().encode()
    assert b.stop() == 0
    # The key survives restarts: same verifier key the second time.
    b.start()
    m2 = b.wait_log(r"node key (\S+)")
    assert m2 and m2.group(1) == m.group(2)


def test_lock_keeps_offline_writer_out_while_running(broker_factory):
    b = broker_factory()
    r = cli("-d", b.data_dir, "log", "append", "--topic", "t", stdin=b"reading 1\n")
    assert r.returncode == 2
    assert b"in use" in r.stderr, r.stderr
    # Reading is fine while it runs.
    info = cli("-d", b.data_dir, "log", "info")
    assert info.returncode == 0 and b"size: 0" in info.stdout
    assert b.stop() == 0
    r = cli("-d", b.data_dir, "log", "append", "--topic", "t", stdin=b"reading 1\nreading 2\n")
    assert r.returncode == 0, r.stderr
    b.start()
    assert b.wait_log(r"ledger: origin \S+, 2 records in 1 blocks"), b.log()


def test_configured_origin_reaches_checkpoints(broker_factory):
    b = broker_factory(config={"ledger_origin": "ledgermq.example/plant-7", "ledger_sync": "batch"})
    assert b.wait_log(r"ledger: origin ledgermq\.example/plant-7,"), b.log()
    assert b.stop() == 0
    r = cli("-d", b.data_dir, "log", "append", "--topic", "t", stdin=b"x\n")
    assert r.returncode == 0, r.stderr
    info = cli("-d", b.data_dir, "log", "info")
    assert b"ledgermq.example/plant-7" in info.stdout
    # A daemon configured with another origin refuses this log at start,
    # naming the problem, before it listens.
    b.config["ledger_origin"] = "ledgermq.example/other"
    p = subprocess.run(b.command(), capture_output=True, timeout=30, cwd=b.workdir)
    assert p.returncode == 1
    assert b"ledgermqd: ledger:" in p.stderr and b"origin" in p.stderr, p.stderr
    assert b"listening on" not in p.stderr


def test_damaged_ledger_is_reported_and_broker_still_serves(broker_factory, clients):
    b = broker_factory()
    assert b.stop() == 0
    r = cli("-d", b.data_dir, "log", "append", "--topic", "t", "--batch", "2",
            stdin=b"".join(b"record %d\n" % i for i in range(6)))
    assert r.returncode == 0, r.stderr
    # Flip a byte inside a record of the last block (open re-checks the last
    # block in full; older blocks are `audit`'s job).
    segdir = os.path.join(b.data_dir, "ledger")
    segs = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(segdir) for f in fs
                  if f.startswith("seg-"))
    assert segs, list(os.walk(segdir))
    with open(segs[-1], "r+b") as f:
        data = f.read()
        at = data.rindex(b"record 5")
        f.seek(at + 3)
        f.write(b"X")
    b.start()
    assert b.wait_log(r"error +ledger: .*not served"), b.log()
    # Plain MQTT goes on.
    sub = clients(b.port)
    sub.subscribe("plain/#", qos=1)
    pub = clients(b.port)
    pub.publish("plain/a", b"still here", qos=1)
    assert sub.get().payload == b"still here"
    audit = cli("audit", "-d", b.data_dir)
    assert audit.returncode == 1
