"""Interoperability with stock clients: mosquitto_pub and mosquitto_sub
(issue 2, point 7) at QoS 1/2, retained, and persistent sessions (-c -i)."""
import queue
import subprocess
import threading
import time

import pytest

from conftest import PahoClient, run_tool

PUB = "/usr/bin/mosquitto_pub"
SUB = "/usr/bin/mosquitto_sub"


class SubProc:
    """mosquitto_sub in the background, its output lines in a queue."""

    def __init__(self, args):
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.lines = queue.Queue()
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip(b"\n"))

    def get(self, timeout=5.0):
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def wait_ready(self, port, topic, timeout=8.0):
        """Publishes a marker until this subscriber prints it (so we know
        its SUBSCRIBE was processed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run_tool([PUB, "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-m", "ready",
                      "-q", "1"])
            line = self.get(0.5)
            if line is not None and line.endswith(b"ready"):
                # swallow duplicates of the marker
                while True:
                    extra = self.get(0.2)
                    if extra is None:
                        return
                    if not extra.endswith(b"ready"):
                        self.lines.queue.appendleft(extra)
                        return
        pytest.fail("mosquitto_sub never became ready")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def subprocs():
    made = []

    def make(args):
        s = SubProc(args)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


@pytest.mark.parametrize("qos", [1, 2])
def test_mosquitto_pub_to_mosquitto_sub(broker, subprocs, qos):
    s = subprocs([SUB, "-h", "127.0.0.1", "-p", str(broker.port), "-q", str(qos),
                  "-t", "io/#", "-v", "-i", "io-sub-%d" % qos])
    s.wait_ready(broker.port, "io/ready")
    for i in range(5):
        r = run_tool([PUB, "-h", "127.0.0.1", "-p", str(broker.port), "-q", str(qos),
                      "-t", "io/data", "-m", "msg-%d" % i])
        assert r.returncode == 0, r.stderr
    got = [s.get(5) for _ in range(5)]
    assert got == [b"io/data msg-%d" % i for i in range(5)]


@pytest.mark.parametrize("qos", [1, 2])
def test_mosquitto_pub_qos_seen_by_paho(broker, clients, qos):
    c = clients(broker.port)
    c.subscribe("iq/#", 2)
    r = run_tool([PUB, "-h", "127.0.0.1", "-p", str(broker.port), "-q", str(qos),
                  "-t", "iq/t", "-m", "hello"])
    assert r.returncode == 0, r.stderr
    m = c.get(5)
    assert m is not None and (m.payload, m.qos) == (b"hello", qos)


def test_mosquitto_sub_receives_paho_qos2(broker, clients, subprocs):
    s = subprocs([SUB, "-h", "127.0.0.1", "-p", str(broker.port), "-q", "2",
                  "-t", "pq2/#", "-F", "%t %q %p"])
    s.wait_ready(broker.port, "pq2/ready")
    c = clients(broker.port)
    c.publish("pq2/x", b"exact", qos=2)
    assert s.get(5) == b"pq2/x 2 exact"
    assert s.get(0.5) is None


def test_retained_with_mosquitto_pub_r(broker):
    r = run_tool([PUB, "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1", "-r",
                  "-t", "ir/state", "-m", "on"])
    assert r.returncode == 0, r.stderr
    r = run_tool([SUB, "-h", "127.0.0.1", "-p", str(broker.port), "-t", "ir/#", "-v",
                  "-C", "1", "-W", "5", "-F", "%t %r %p"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == b"ir/state 1 on"
    # delete with an empty retained message (-n)
    r = run_tool([PUB, "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1", "-r", "-n",
                  "-t", "ir/state"])
    assert r.returncode == 0
    r = run_tool([SUB, "-h", "127.0.0.1", "-p", str(broker.port), "-t", "ir/#",
                  "-C", "1", "-W", "2"])
    assert r.stdout.strip() == b"", "retained message not deleted"


def test_persistent_session_with_mosquitto_sub_c(broker, subprocs):
    args = [SUB, "-h", "127.0.0.1", "-p", str(broker.port), "-c", "-i", "io-persistent",
            "-q", "1", "-t", "ip/#", "-v"]
    s = subprocs(args)
    s.wait_ready(broker.port, "ip/ready")
    s.stop()  # SIGTERM: mosquitto_sub disconnects; the session stays
    time.sleep(0.3)
    for i in range(3):
        r = run_tool([PUB, "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
                      "-t", "ip/queued", "-m", "q%d" % i])
        assert r.returncode == 0, r.stderr
    r = run_tool(args + ["-C", "3", "-W", "8"], timeout=15)
    assert r.stdout.splitlines() == [b"ip/queued q0", b"ip/queued q1", b"ip/queued q2"], \
        (r.stdout, r.stderr)


def test_will_with_mosquitto_sub(broker, subprocs):
    s = subprocs([SUB, "-h", "127.0.0.1", "-p", str(broker.port), "-t", "iw/#", "-v"])
    s.wait_ready(broker.port, "iw/ready")
    c = PahoClient(broker.port, client_id="io-will", will=("iw/gone", b"bye", 1, False))
    c.stop_silently()
    assert s.get(5) == b"iw/gone bye"
