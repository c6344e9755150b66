"""A crash while a ledger data dir is being created, at every step: strace
injects SIGKILL just before each file-system syscall of the first
`ledgermq log append` (and of the first start of ledgermqd on a fresh data
dir), one kill per run, so every intermediate state of the creation is
produced deterministically whatever the machine's speed. After each kill
the dir must be reported precisely (the auditor and `log info` pass; an
interrupted creation is a warning, never a refusal), `log recover` must not
invent an origin, the next writer or daemon must start and complete the
creation, and a node key once written must be kept.

Needs strace (skipped without it). LMQ_BUILD_DIR names the build dir.
"""
import collections
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import Broker, IS_MOSQUITTO

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD_DIR = os.environ.get("LMQ_BUILD_DIR", os.path.join(REPO, "build"))
LEDGERMQ = os.path.join(BUILD_DIR, "ledgermq")
LEDGERMQD = os.path.join(BUILD_DIR, "ledgermqd")
STRACE = shutil.which("strace")
ORIGIN = "example.com/crash-create"

pytestmark = [
    pytest.mark.skipif(STRACE is None, reason="strace not installed (apt install strace)"),
    pytest.mark.skipif(not os.path.exists(LEDGERMQ), reason="ledgermq not built in " + BUILD_DIR),
    pytest.mark.skipif(IS_MOSQUITTO, reason="the ledger is ledgermq's"),
]

# Syscalls that change files or directories (and flock, and the open of
# each file): a kill before each of them is a distinct crash state.
SYSCALLS = ("mkdir", "openat", "rename", "link", "unlink", "write", "pwrite64", "fsync",
            "fdatasync", "ftruncate", "flock")


def env_no_leaks():
    # An ASan build's leak checker cannot run under ptrace.
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = ":".join(filter(None, [env.get("ASAN_OPTIONS"), "detect_leaks=0"]))
    return env


def cli(d, *args, input=None):
    return subprocess.run([LEDGERMQ, "-d", str(d)] + [str(a) for a in args], input=input,
                          capture_output=True, timeout=60)


def kill_points(trace, under):
    """(syscall, n-th call of it, line) for every traced call whose line names
    a path under UNDER (strace -y shows fds' paths) and that succeeded (a
    failed one changes nothing: a kill before it leaves the state a kill
    before the next one does), in order."""
    counts = collections.Counter()
    points = []
    rx = re.compile(r"^\d+\s+(\w+)\(")
    with open(trace, errors="replace") as f:
        for line in f:
            m = rx.match(line)
            if not m or m.group(1) not in SYSCALLS:
                continue
            counts[m.group(1)] += 1
            if under in line and not re.search(r"= -1 E[A-Z]+ ", line):
                points.append((m.group(1), counts[m.group(1)], line.strip()[:160]))
    return points


def strace_cmd(syscall, nth):
    return [STRACE, "-f", "-o", "/dev/null", "-e", "trace=" + syscall,
            "-e", "inject=%s:signal=KILL:when=%d" % (syscall, nth)]


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def test_kill_at_every_step_of_ledger_creation(tmp_path):
    trace = tmp_path / "trace"
    ref = tmp_path / "ref"
    p = subprocess.run([STRACE, "-f", "-y", "-o", str(trace), "-e", "trace=" + ",".join(SYSCALLS),
                        LEDGERMQ, "-d", str(ref), "log", "append", "--topic", "c", "--origin",
                        ORIGIN], input=b"first\n", capture_output=True, timeout=60,
                       env=env_no_leaks())
    assert p.returncode == 0, p.stderr
    points = kill_points(trace, str(ref))
    # mkdir of the data dir .. the first segment's fdatasync and beyond.
    assert any("META.tmp" in l for _, _, l in points)
    assert any("seg-00000000" in l for _, _, l in points)
    states = collections.Counter()
    for i, (sc, nth, line) in enumerate(points):
        d = tmp_path / ("d%d" % i)
        k = subprocess.run(strace_cmd(sc, nth) + [LEDGERMQ, "-d", str(d), "log", "append",
                                                  "--topic", "c", "--origin", ORIGIN],
                           input=b"first\n", capture_output=True, timeout=60, env=env_no_leaks())
        assert k.returncode == -signal.SIGKILL, (line, k.returncode, k.stderr)
        what = (i, line)
        key = read(d / "node.key")
        has_ledger = (d / "ledger").is_dir()
        has_meta = (d / "ledger" / "META").exists()
        committed = read(d / "ledger" / "seg-00000000") not in (None, b"")
        if not has_ledger:
            # Killed before the ledger dir existed: there is no ledger.
            states["no ledger"] += 1
            a = cli(d, "audit", "--quiet")
            assert a.returncode == 2 and b"no ledger" in a.stderr, (what, a)
            r = cli(d, "log", "recover")
            assert r.returncode == 2 and b"no ledger" in r.stderr, (what, r)
            assert not (d / "ledger").exists(), what
        else:
            a = cli(d, "audit", "--quiet")
            assert a.returncode == 0, (what, a)
            info = cli(d, "log", "info")
            assert info.returncode == 0, (what, info)
            size = int(info.stdout.decode().split("size: ")[1].split("\n")[0])
            assert size in (0, 1), (what, info.stdout)
            r = cli(d, "log", "recover")
            assert r.returncode == 0, (what, r)
            if not has_meta:
                # An interrupted creation: reported, left for the writer.
                states["no META"] += 1
                assert b"interrupted before META" in r.stderr, (what, r.stderr)
                assert not (d / "ledger" / "META").exists(), what
            elif key is None:
                states["META, no key"] += 1
            elif size == 0:
                states["key, nothing committed" if not committed else "segment written, derived files lag"] += 1
            else:
                states["committed"] += 1
        # The next writer starts, completes the creation and appends.
        w = cli(d, "log", "append", "--topic", "c", "--origin", ORIGIN, input=b"second\n")
        assert w.returncode == 0, (what, w.stderr)
        if has_ledger and not has_meta:
            assert b"creation was interrupted before META" in w.stderr, (what, w.stderr)
        # A key once written is kept, and no copy of it is left in a temp file.
        if key is not None:
            assert read(d / "node.key") == key, what
        assert not list(d.glob("node.key.tmp.*")), (what, list(d.glob("node.key.tmp.*")))
        info = cli(d, "log", "info")
        size = int(info.stdout.decode().split("size: ")[1].split("\n")[0])
        assert size in (1, 2), (what, info.stdout)
        a = cli(d, "audit", "--quiet")
        assert a.returncode == 0, (what, a)
        g = cli(d, "log", "get", size - 1, "--raw")
        assert g.returncode == 0 and b"second".hex().encode() in g.stdout, (what, g)
        shutil.rmtree(d)
    print("creation kills: %d points, states %s" % (len(points), dict(states)))
    # Every kind of intermediate state was produced.
    for s in ("no ledger", "no META", "META, no key", "key, nothing committed", "committed"):
        assert states[s] > 0, (s, dict(states))


def _children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _stop_traced(p):
    """Stops strace P and its tracee (killing strace alone would leave the
    daemon running, detached)."""
    if p.poll() is None:
        for c in _children(p.pid):
            try:
                os.kill(c, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


def test_kill_at_every_step_of_the_daemons_first_start(tmp_path):
    """ledgermqd on a fresh data dir (store, ledger, node key, device
    registry, leaf index, payloads): a kill before each of its file-system
    syscalls up to "listening on"; the next start must serve the ledger and
    keep the node key."""
    cfg = {"ledger_origin": ORIGIN}
    lines = ["ledger_topic led/# attested", "ledger_topic priv/# attested private"]
    ref = Broker(tmp_path / "ref", config=cfg, extra_lines=lines)
    trace = tmp_path / "trace"
    log = tmp_path / "ref.log"
    with open(log, "wb") as lf:
        p = subprocess.Popen([STRACE, "-f", "-y", "-o", str(trace), "-e",
                              "trace=" + ",".join(SYSCALLS)] + ref.command(),
                             stdout=lf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=env_no_leaks())
    try:
        deadline = time.monotonic() + 30
        while b"listening on" not in read(log) and time.monotonic() < deadline:
            assert p.poll() is None, read(log)
            time.sleep(0.02)
        assert b"listening on" in read(log), read(log)
    finally:
        _stop_traced(p)
    # Only the calls of the start: up to the "listening on" log line.
    with open(trace, errors="replace") as f:
        head = []
        for line in f:
            head.append(line)
            if "listening on" in line:
                break
    with open(trace, "w") as f:
        f.writelines(head)
    points = kill_points(trace, ref.data_dir)
    for part in ("/ledger/META", "/node.key", "/store/data.mdb",
                 "/registry/data.mdb", "/leafindex/data.mdb", "/payloads"):
        assert any(part in l for _, _, l in points), part
    killed = 0
    for i, (sc, nth, line) in enumerate(points):
        b = Broker(tmp_path / ("b%d" % i), config=cfg, extra_lines=lines)
        blog = tmp_path / ("b%d.kill.log" % i)
        with open(blog, "wb") as lf:
            k = subprocess.Popen(strace_cmd(sc, nth) + b.command(), stdout=lf,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=env_no_leaks())
        try:
            deadline = time.monotonic() + 15
            while (k.poll() is None and b"listening on" not in read(blog)
                   and time.monotonic() < deadline):
                time.sleep(0.01)
        finally:
            _stop_traced(k)
        # Another thread's calls can shift the count: then this run was
        # not killed at the intended call and proves less (counted below).
        if k.returncode == -signal.SIGKILL and b"listening on" not in read(blog):
            killed += 1
        key = read(os.path.join(b.data_dir, "node.key"))
        try:
            b.start()
            assert wait_log(b, "ledger: origin " + ORIGIN), (line, b.log())
            assert "not served" not in b.log(), (line, b.log())
            # A CONNACK: the event loop runs (its SIGTERM handler is set
            # only then: a SIGTERM right after "listening on" is fatal).
            assert mqtt_connack(b.port) == b"\x20\x02\x00\x00", line
        finally:
            rc = b.stop()
        assert rc == 0, (line, rc, b.log())
        if key is not None:
            assert read(os.path.join(b.data_dir, "node.key")) == key, line
        shutil.rmtree(b.workdir)
    print("daemon start kills: %d points, %d killed before listening" % (len(points), killed))
    assert killed >= len(points) * 0.8, (killed, len(points))


def mqtt_connack(port):
    """An MQTT 3.1.1 CONNECT (client id "c", clean session); the CONNACK."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01c")
        got = b""
        while len(got) < 4:
            chunk = s.recv(4 - len(got))
            if not chunk:
                break
            got += chunk
        return got


def wait_log(b, text, timeout=5.0):
    deadline = time.monotonic() + timeout
    while text not in b.log():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True
