"""The daemon itself (issue 2, point 2): command line, config file, config
errors with file/line/reason, signals, log levels."""
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import LEDGERMQD, REPO, PahoClient, free_port, ledgermq_only, wait_for

pytestmark = ledgermq_only("tests ledgermqd's own command line, config parser and logs")


def listening_addrs(port):
    """Local addresses of LISTEN sockets on PORT, read from /proc/net/tcp{,6}."""
    out = []
    for path, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    addr, p = parts[1].split(":")
                    if int(p, 16) == port and parts[3] == "0A":
                        out.append(("v6" if v6 else "v4", addr))
        except OSError:
            pass
    return out


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


def pubsub_works(port):
    c = PahoClient(port)
    try:
        c.subscribe("daemon/check", 1)
        c.publish("daemon/check", b"ok", 1)
        m = c.get(5)
        return m is not None and m.payload == b"ok"
    finally:
        c.disconnect()


def test_starts_without_config_on_port_and_dir(broker_factory, tmp_path):
    b = broker_factory(use_config_file=False)
    assert "-c" not in b.command()
    assert pubsub_works(b.port)
    # Loopback only.
    addrs = listening_addrs(b.port)
    assert addrs, "nothing listening on %d" % b.port
    for fam, a in addrs:
        assert a in ("0100007F", "00000000000000000000000001000000"), \
            "listening on a non-loopback address: %r" % (addrs,)
    assert os.path.isdir(b.data_dir), "-d dir not created/used"


def test_default_data_dir_is_dot_data(tmp_path):
    """No config, no -d: data goes to ./data (relative to the cwd)."""
    port = free_port()
    logf = open(tmp_path / "log", "wb")
    proc = subprocess.Popen([LEDGERMQD, "-p", str(port)], cwd=str(tmp_path),
                            stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    logf.close()
    try:
        assert wait_for(lambda: "listening on" in (tmp_path / "log").read_text(), 10), \
            (tmp_path / "log").read_text()
        c = PahoClient(port)
        c.publish("keep/me", b"x", 1, retain=True)
        c.disconnect()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert (tmp_path / "data").is_dir()
        assert any((tmp_path / "data").iterdir()), "./data is empty"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_good_config_file(broker_factory):
    b = broker_factory(config={"log_level": "info", "max_connections": 50,
                               "max_packet_size": 65536, "max_inflight_messages": 20,
                               "max_queued_messages": 100, "max_keepalive": 600,
                               "connect_timeout": 5, "store_sync": "batch",
                               "allow_zero_length_clientid": "true"},
                       extra_lines=["   # an indented comment", "",
                                    "allow_anonymous true  # trailing comment",
                                    "protocol mqtt"])
    assert pubsub_works(b.port)


BAD_CONFIGS = [
    ("unknown key", "no_such_key 1\n", 2, r"unknown|no_such_key"),
    ("bad number", "max_connections lots\n", 2, r"max_connections"),
    ("number out of range", "max_packet_size 1\n", 2, r"max_packet_size"),
    ("bad bool", "allow_zero_length_clientid maybe\n", 2, r"allow_zero_length_clientid"),
    ("bad log level", "log_level loud\n", 2, r"log_level"),
    ("listener bad port", "listener 99999 127.0.0.1\n", 2, r"listener|port"),
    ("listener bad address", "listener {port} localhost.example\n", 2, r"listener|address"),
    ("listener no port", "listener\n", 2, r"listener"),
    ("per-listener key before listener", "allow_anonymous true\n", 2, r"allow_anonymous|listener"),
    ("missing value", "max_connections\n", 2, r"max_connections"),
]


@pytest.mark.parametrize("name,line,lineno,reason", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_rejected(tmp_path, name, line, lineno, reason):
    port = free_port()
    conf = tmp_path / "bad.conf"
    conf.write_text("# line 1 is a comment\n" + line.format(port=port) +
                    "listener %d 127.0.0.1\n" % port)
    proc = subprocess.Popen([LEDGERMQD, "-c", str(conf), "-d", str(tmp_path / "data")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, cwd=str(tmp_path))
    try:
        out, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=10)
        pytest.fail("ledgermqd did not exit on a bad config (%s)" % name)
    err = err.decode("utf-8", "replace")
    assert proc.returncode != 0, "exit 0 with a bad config: %s" % err
    m = re.search(r"ledgermqd: (\S+):(\d+): (.+)", err)
    assert m, "no 'ledgermqd: FILE:LINE: reason' in stderr: %r" % err
    assert m.group(1) == str(conf)
    assert int(m.group(2)) == lineno
    assert re.search(reason, m.group(3)), m.group(3)
    assert not can_connect(port), "something listens after a config error"


def test_missing_config_file_rejected(tmp_path):
    port = free_port()
    r = subprocess.run([LEDGERMQD, "-c", str(tmp_path / "nope.conf"), "-p", str(port),
                        "-d", str(tmp_path / "d")], capture_output=True, timeout=10,
                       stdin=subprocess.DEVNULL)
    assert r.returncode != 0
    assert b"nope.conf" in r.stderr
    assert not can_connect(port)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_exits_zero(broker_factory, sig):
    b = broker_factory()
    c = PahoClient(b.port)  # a connected client must not hold up shutdown
    try:
        c.subscribe("x", 1)
        t0 = time.monotonic()
        rc = b.stop(sig, timeout=8)
        assert rc == 0, "exit code %r after %s:\n%s" % (rc, sig, b.log())
        assert time.monotonic() - t0 < 8
        assert not can_connect(b.port)
    finally:
        c.stop_silently()


def _levels(log):
    return re.findall(r"^\S+\s+(debug|info|notice|warning|error)\s", log, re.M)


def test_verbose_shows_debug_lines(broker_factory):
    b = broker_factory(verbose=True)
    assert pubsub_works(b.port)
    wait_for(lambda: "debug" in _levels(b.log()), 3)
    assert "debug" in _levels(b.log()), "-v gave no debug lines:\n" + b.log()


def test_default_level_hides_debug_lines(broker_factory):
    b = broker_factory()
    assert pubsub_works(b.port)
    time.sleep(0.3)
    levels = _levels(b.log())
    assert levels, "no leveled log lines at all:\n" + b.log()
    assert "debug" not in levels, b.log()


def test_log_level_debug_in_config(broker_factory):
    b = broker_factory(config={"log_level": "debug"})
    assert pubsub_works(b.port)
    wait_for(lambda: "debug" in _levels(b.log()), 3)
    assert "debug" in _levels(b.log()), b.log()


def test_every_config_key_documented():
    """Every key of the config table is in docs/CONFIG.md (point 2)."""
    src = open(os.path.join(REPO, "src/util/config.c")).read()
    keys = re.findall(r'^\s*[GL]\("([a-z_]+)"', src, re.M)
    assert keys, "config table not found"
    doc_path = os.path.join(REPO, "docs/CONFIG.md")
    assert os.path.exists(doc_path), "docs/CONFIG.md missing"
    doc = open(doc_path).read()
    missing = [k for k in keys + ["listener"] if k not in doc]
    assert not missing, "undocumented config keys: %s" % missing


def test_two_listeners(broker_factory):
    p2 = free_port()
    b = broker_factory(extra_lines=["listener %d 127.0.0.1" % p2])
    assert wait_for(lambda: b.log().count("listening on") >= 2, 3), b.log()
    assert "127.0.0.1:%d" % p2 in b.log()
    a = PahoClient(b.port, client_id="on-first")
    c = PahoClient(p2, client_id="on-second")
    try:
        a.subscribe("two/#", 1)
        c.publish("two/x", b"across", 1)
        m = a.get(5)
        assert m is not None and m.payload == b"across"
    finally:
        a.disconnect()
        c.disconnect()


def test_port_option_overrides_first_listener(broker_factory):
    b = broker_factory(start=False)
    conf_port = free_port()
    path = b.write_config()
    text = open(path).read().replace("listener %d " % b.port, "listener %d " % conf_port)
    open(path, "w").write(text)
    b.write_config = lambda: path
    b.start()  # -p b.port
    assert pubsub_works(b.port)
    assert not can_connect(conf_port)
