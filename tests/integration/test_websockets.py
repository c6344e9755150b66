"""MQTT over WebSocket (issue 3, point 4): `protocol websockets` listeners,
plain and over TLS. A hand-written client (wsclient.py) checks the Upgrade,
a packet split across frames and messages, frames split across TCP writes,
several packets in one frame, ping/pong, close, and the refusals; paho-mqtt
(transport="websockets") and MQTT.js (npm `mqtt`, tests/js) talk MQTT over
ws:// and wss://."""
import os
import shutil
import ssl
import struct
import subprocess
import time

import pytest

import paho.mqtt.client as mqtt

from conftest import IS_MOSQUITTO, REPO, PahoClient, free_port
from tlscerts import Pki
from wsclient import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, WsClient, frame

pytestmark = pytest.mark.skipif(IS_MOSQUITTO, reason="listeners configured the ledgermq way")

CONNACK_OK = bytes([0x20, 2, 0, 0])
JS_DIR = os.path.join(REPO, "tests", "js")


def connect_packet(client_id=b"ws1", keepalive=60):
    var = bytes([0, 4]) + b"MQTT" + bytes([4, 2]) + struct.pack(">H", keepalive)
    pay = struct.pack(">H", len(client_id)) + client_id
    return bytes([0x10, len(var) + len(pay)]) + var + pay


def subscribe_packet(topic, pid=1, qos=1):
    t = topic.encode()
    body = struct.pack(">H", pid) + struct.pack(">H", len(t)) + t + bytes([qos])
    return bytes([0x82, len(body)]) + body


def publish_packet(topic, payload, qos=0, pid=1):
    t = topic.encode()
    body = struct.pack(">H", len(t)) + t + (struct.pack(">H", pid) if qos else b"") + payload
    n, rl = len(body), b""
    while True:
        b, n = n % 128, n // 128
        rl += bytes([b | (0x80 if n else 0)])
        if not n:
            break
    return bytes([0x30 | (qos << 1)]) + rl + body


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def ws_broker(broker_factory):
    """A broker with its plain MQTT port and a WebSocket port (b.ws_port)."""
    def make(tls_lines=(), **kw):
        ws_port = free_port()
        b = broker_factory(extra_lines=["listener %d 127.0.0.1" % ws_port,
                                        "protocol websockets"] + list(tls_lines), **kw)
        b.ws_port = ws_port
        # start() waits for the first listener's line only
        assert b.wait_log(r"listening on 127\.0\.0\.1:%d " % ws_port, timeout=10), b.log()
        return b
    return make


@pytest.fixture
def ws(request):
    made = []

    def make(port, **kw):
        c = WsClient(port, **kw)
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()


def client_ctx(pki, cert="client"):
    ctx = ssl.create_default_context(cafile=pki.path("ca.crt"))
    if cert:
        ctx.load_cert_chain(pki.path(cert + ".crt"), pki.path(cert + ".key"))
    return ctx


def test_upgrade_and_connect(ws_broker, ws):
    b = ws_broker()
    assert "listening on 127.0.0.1:%d (websockets)" % b.ws_port in b.log()
    c = ws(b.ws_port)
    assert c.status == 101
    assert c.accept_ok()
    assert c.headers.get("sec-websocket-protocol") == "mqtt"
    c.send_binary(connect_packet())
    assert c.recv_mqtt() == CONNACK_OK


def test_mqttv31_subprotocol_accepted(ws_broker, ws):
    b = ws_broker()
    c = ws(b.ws_port, protocol="mqttv3.1")
    assert c.status == 101 and c.headers.get("sec-websocket-protocol") == "mqttv3.1"


def test_packet_split_across_frames_and_messages(ws_broker, ws, clients):
    b = ws_broker()
    c = ws(b.ws_port)
    pkt = connect_packet()
    # One message of three frames: binary (FIN=0), continuation, continuation (FIN=1).
    c.send(frame(OP_BINARY, pkt[:3], fin=False) + frame(OP_CONT, pkt[3:9], fin=False) +
           frame(OP_CONT, pkt[9:], fin=True))
    assert c.recv_mqtt() == CONNACK_OK
    # A SUBSCRIBE split across two messages.
    sub = subscribe_packet("ws/#")
    c.send(frame(OP_BINARY, sub[:5]))
    time.sleep(0.05)
    c.send(frame(OP_BINARY, sub[5:]))
    assert c.recv_mqtt() == bytes([0x90, 3, 0, 1, 1])
    p = clients(b.port)
    p.publish("ws/x", b"to ws", qos=0)
    assert c.recv_mqtt() == publish_packet("ws/x", b"to ws")


def test_several_packets_in_one_frame(ws_broker, ws):
    b = ws_broker()
    c = ws(b.ws_port)
    c.send_binary(connect_packet() + subscribe_packet("m/#") + publish_packet("m/1", b"one") +
                  publish_packet("m/2", b"two"))
    assert c.recv_mqtt() == CONNACK_OK
    assert c.recv_mqtt() == bytes([0x90, 3, 0, 1, 1])
    assert c.recv_mqtt() == publish_packet("m/1", b"one")
    assert c.recv_mqtt() == publish_packet("m/2", b"two")


def test_frames_split_across_tcp_writes(ws_broker, ws):
    """The Upgrade request and every frame byte by byte, each its own TCP
    segment (TCP_NODELAY and a pause)."""
    b = ws_broker()
    c = ws(b.ws_port, upgrade=False)
    for byte in c.request():
        c.send(bytes([byte]))
        time.sleep(0.0005)
    assert c.read_response() == 101 and c.accept_ok()
    data = frame(OP_BINARY, connect_packet()) + frame(OP_BINARY, subscribe_packet("s/#"))
    for i in range(len(data)):
        c.send(data[i:i + 1])
        time.sleep(0.002)
    assert c.recv_mqtt() == CONNACK_OK
    assert c.recv_mqtt() == bytes([0x90, 3, 0, 1, 1])


def test_upgrade_and_first_frame_in_one_write(ws_broker, ws):
    b = ws_broker()
    c = ws(b.ws_port, upgrade=False)
    c.send(c.request() + frame(OP_BINARY, connect_packet()))
    assert c.read_response() == 101
    assert c.recv_mqtt() == CONNACK_OK


def test_ping_pong(ws_broker, ws):
    b = ws_broker()
    c = ws(b.ws_port)
    c.send(frame(OP_PING, b"are you there"))
    assert c.recv_frame() == (True, OP_PONG, b"are you there")
    c.send_binary(connect_packet())
    assert c.recv_mqtt() == CONNACK_OK
    # A ping between the frames of a fragmented message.
    pkt = subscribe_packet("p/#")
    c.send(frame(OP_BINARY, pkt[:4], fin=False) + frame(OP_PING, b"mid") +
           frame(OP_CONT, pkt[4:], fin=True))
    assert c.recv_frame() == (True, OP_PONG, b"mid")
    assert c.recv_mqtt() == bytes([0x90, 3, 0, 1, 1])


def test_close_answered(ws_broker, ws):
    b = ws_broker()
    c = ws(b.ws_port)
    c.send_binary(connect_packet(b"closer"))
    assert c.recv_mqtt() == CONNACK_OK
    c.send(frame(OP_CLOSE, struct.pack(">H", 1000) + b"bye"))
    fin, op, payload = c.recv_frame()
    assert op == OP_CLOSE and payload[:2] == struct.pack(">H", 1000)
    c.sock.settimeout(5)
    assert c.sock.recv(100) == b""
    assert b.wait_log(r"client closer lost: WebSocket close from peer \(code 1000\)")


def test_mqtt_disconnect_sends_close_frame(ws_broker, ws):
    b = ws_broker()
    c = ws(b.ws_port)
    c.send_binary(connect_packet(b"d1"))
    assert c.recv_mqtt() == CONNACK_OK
    c.send_binary(bytes([0xE0, 0]))
    fin, op, payload = c.recv_frame()
    assert op == OP_CLOSE and payload[:2] == struct.pack(">H", 1000)


def refused_line(b, reason):
    return b.wait_log(r"notice\s+connection from 127\.0\.0\.1:\d+ on ws\S* port %d refused: %s"
                      % (b.ws_port, reason))


def test_text_frame_refused(ws_broker, ws):
    b = ws_broker()
    c = ws(b.ws_port)
    c.send(frame(OP_TEXT, b"hello"))
    fin, op, payload = c.recv_frame()
    assert op == OP_CLOSE and payload[:2] == struct.pack(">H", 1003)
    assert refused_line(b, r"WebSocket text frame refused")


def test_unmasked_frame_refused(ws_broker, ws):
    b = ws_broker()
    c = ws(b.ws_port)
    c.send(frame(OP_BINARY, connect_packet(), mask=False))
    fin, op, payload = c.recv_frame()
    assert op == OP_CLOSE and payload[:2] == struct.pack(">H", 1002)
    assert refused_line(b, r"WebSocket protocol error")


def test_frame_over_max_packet_size_refused(ws_broker, ws):
    b = ws_broker(config={"max_packet_size": 1024})
    c = ws(b.ws_port)
    c.send(frame(OP_BINARY, b"\0" * 2000))
    fin, op, payload = c.recv_frame()
    assert op == OP_CLOSE and payload[:2] == struct.pack(">H", 1009)
    assert refused_line(b, r"WebSocket frame larger than 1024 bytes refused")


def test_no_mqtt_subprotocol_refused(ws_broker, ws):
    b = ws_broker()
    c = ws(b.ws_port, protocol="chat")
    assert c.status == 400
    assert refused_line(b, r"WebSocket handshake refused \(400\)")


def test_plain_mqtt_on_ws_port_refused(ws_broker, ws):
    b = ws_broker()
    c = ws(b.ws_port, upgrade=False)
    c.send(connect_packet())
    c.sock.settimeout(5)
    got = b""
    while True:
        d = c.sock.recv(4096)
        if not d:
            break
        got += d
    assert got.startswith(b"HTTP/1.1 4")
    assert refused_line(b, r"WebSocket handshake refused \(4\d\d\)")
    assert b.running()


class WsPaho(PahoClient):
    def __init__(self, port, ssl_context=None, **kw):
        self.ssl_context = ssl_context
        self._ws = True
        super().__init__(port, **kw)

    def connect(self, expect_rc=0, timeout=5.0):
        self.c._transport = "websockets"  # paho 1.6.1: set in the constructor only
        self.c.ws_set_options(path="/mqtt")
        if self.ssl_context is not None:
            self.c.tls_set_context(self.ssl_context)
        super().connect(expect_rc, timeout)


def test_paho_over_websockets(ws_broker, clients):
    b = ws_broker()
    w = WsPaho(b.ws_port)
    w.subscribe("pw/#", qos=1)
    tcp = clients(b.port)
    tcp.subscribe("pw/#", qos=1)
    tcp.publish("pw/from-tcp", b"a", qos=1)
    w.publish("pw/from-ws", os.urandom(200000), qos=1)
    got = sorted((m.topic, len(m.payload)) for m in w.get_n(2, timeout=10))
    assert got == [("pw/from-tcp", 1), ("pw/from-ws", 200000)]
    got = sorted(m.topic for m in tcp.get_n(2, timeout=10))
    assert got == ["pw/from-tcp", "pw/from-ws"]
    w.disconnect()


def test_paho_over_websockets_tls_mtls(ws_broker, pki, clients):
    b = ws_broker(tls_lines=pki.listener_lines())
    assert "(websockets) (TLS, client certificate required)" in b.log()
    w = WsPaho(b.ws_port, ssl_context=client_ctx(pki))
    w.subscribe("wss/#", qos=1)
    clients(b.port).publish("wss/x", b"secure", qos=1)
    assert w.get().payload == b"secure"
    assert b.wait_log(r"TLSv1\.3 \S+, client certificate: CN=dev1,O=Acme")
    w.disconnect()


def test_raw_wss_split_and_ping(ws_broker, pki, ws):
    b = ws_broker(tls_lines=pki.listener_lines())
    c = ws(b.ws_port, ssl_context=client_ctx(pki))
    assert c.status == 101 and c.accept_ok()
    pkt = connect_packet()
    c.send(frame(OP_BINARY, pkt[:2], fin=False))
    c.send(frame(OP_PING, b"x"))
    c.send(frame(OP_CONT, pkt[2:], fin=True))
    assert c.recv_frame() == (True, OP_PONG, b"x")
    assert c.recv_mqtt() == CONNACK_OK


def test_wss_wrong_client_certificate_refused(ws_broker, pki):
    b = ws_broker(tls_lines=pki.listener_lines())
    with pytest.raises((ssl.SSLError, OSError, ConnectionError)):
        c = WsClient(b.ws_port, ssl_context=client_ctx(pki, "client_other"))
        c.close()
    assert b.wait_log(r"notice\s+connection from 127\.0\.0\.1:\d+ on ws\+tls port %d refused: "
                      r"TLS handshake failed: certificate verify failed" % b.ws_port)


# ------------------------------------------------------------ MQTT.js

def npm_ready():
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return "node/npm not installed (scripts/deps.sh installs nodejs npm)"
    if os.path.isdir(os.path.join(JS_DIR, "node_modules", "mqtt")):
        return None
    try:
        r = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR,
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=180)
    except subprocess.TimeoutExpired:
        return "npm ci timed out"
    if r.returncode != 0:
        return "npm ci failed: " + r.stderr.decode()[-500:]
    return None


@pytest.fixture(scope="module")
def mqttjs():
    why = npm_ready()
    if why:
        pytest.skip(why)
    return os.path.join(JS_DIR, "mqttjs_client.js")


def run_js(script, url, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(["node", script, url], cwd=JS_DIR, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=30, env=env)


def test_mqttjs_over_ws(ws_broker, mqttjs, clients):
    b = ws_broker()
    tcp = clients(b.port)
    tcp.subscribe("js/#", qos=1)
    r = run_js(mqttjs, "ws://127.0.0.1:%d/mqtt" % b.ws_port)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    assert "ok" in r.stdout.decode()
    assert tcp.get().topic == "js/ws"


def test_mqttjs_over_wss_mtls(ws_broker, mqttjs, pki):
    b = ws_broker(tls_lines=pki.listener_lines())
    r = run_js(mqttjs, "wss://localhost:%d/mqtt" % b.ws_port,
               {"LMQ_CA": pki.path("ca.crt"), "LMQ_CERT": pki.path("client.crt"),
                "LMQ_KEY": pki.path("client.key")})
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    assert b.wait_log(r"client certificate: CN=dev1,O=Acme")


def test_mqttjs_over_tls_mtls(broker_factory, mqttjs, pki):
    b = broker_factory(extra_lines=pki.listener_lines())
    r = run_js(mqttjs, "mqtts://localhost:%d" % b.port,
               {"LMQ_CA": pki.path("ca.crt"), "LMQ_CERT": pki.path("client.crt"),
                "LMQ_KEY": pki.path("client.key")})
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()


def test_mqttjs_wss_wrong_certificate_refused(ws_broker, mqttjs, pki):
    b = ws_broker(tls_lines=pki.listener_lines())
    r = run_js(mqttjs, "wss://localhost:%d/mqtt" % b.ws_port,
               {"LMQ_CA": pki.path("ca.crt"), "LMQ_CERT": pki.path("client_other.crt"),
                "LMQ_KEY": pki.path("client_other.key")})
    assert r.returncode != 0
    assert b.wait_log(r"refused: TLS handshake failed: certificate verify failed")


# ------------------------------------------------------------ backpressure

@pytest.mark.parametrize("kind", ["ws", "wss", "tls"])
def test_slow_filtered_consumer_bounded_memory(ws_broker, broker_factory, pki, kind):
    """A TLS / WebSocket subscriber that never reads while 100 MiB of QoS 0
    is published: the filtered write path encodes only what the socket
    takes, so the broker's queue limits still apply (it drops for the slow
    client instead of buffering) and the publisher keeps being served."""
    import socket
    import threading
    import mqttraw as R
    tls = pki.listener_lines(cafile=False, require=False)
    if kind == "tls":
        tls_port = free_port()
        b = broker_factory(extra_lines=["listener %d 127.0.0.1" % tls_port] + tls)
        assert b.wait_log(r"listening on 127\.0\.0\.1:%d " % tls_port, timeout=10)
    else:
        b = ws_broker(tls_lines=tls if kind == "wss" else ())
    ctx = ssl.create_default_context(cafile=pki.path("ca.crt"))
    if kind == "tls":
        s = socket.create_connection(("127.0.0.1", tls_port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s = ctx.wrap_socket(s, server_hostname="localhost")
        s.sendall(R.connect_packet("slow", keepalive=0) +
                  R.subscribe_packet(1, [("flood/#", 0)]))
        slow = s
    else:
        c = WsClient(b.ws_port, ssl_context=ctx if kind == "wss" else None)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.send_binary(R.connect_packet("slow", keepalive=0) +
                      R.subscribe_packet(1, [("flood/#", 0)]))
        slow = c.sock
    time.sleep(0.3)  # it never reads again
    watcher = PahoClient(b.port, client_id="flood-watch")
    watcher.subscribe("other/#", 1)
    rss0 = b.rss_kb() or 0
    rss_max = [rss0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            v = b.rss_kb()
            if v:
                rss_max[0] = max(rss_max[0], v)
            time.sleep(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    pub = R.RawClient(b.port)
    pub.send(R.connect_packet("flood-pub"))
    pub.sock.settimeout(15)
    chunk = R.publish_packet("flood/x", b"\xab" * 65536, qos=0)
    try:
        for i in range(1600):  # 100 MiB
            pub.send(chunk)
            if i % 400 == 399:
                watcher.publish("other/t", b"%d" % i, qos=1, timeout=10)
    except socket.timeout:
        pytest.fail("broker stopped reading the publisher")
    finally:
        stop.set()
        t.join(5)
    got = watcher.get_n(4, timeout=10)
    assert len(got) == 4
    grew = rss_max[0] - rss0
    assert grew < 60 * 1024, "broker RSS grew by %d MB" % (grew // 1024)
    # the broker saw the client as slow (its queue filled up), i.e. the
    # filter did not swallow the flood into its own buffers
    assert b.wait_log(r"(warning|notice|error).*slow"), b.log()[-3000:]
    watcher.disconnect()
    pub.close()
    slow.close()
