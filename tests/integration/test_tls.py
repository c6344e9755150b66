"""TLS listeners (issue 3, point 3): mosquitto_pub/mosquitto_sub with
--cafile/--cert/--key (mTLS) over TLS 1.2 and 1.3, paho-mqtt over TLS,
refusal of a missing, self-signed or foreign client certificate with one
log line naming the peer and the reason, plain MQTT on a TLS port, and the
config checks. The CA and certificates are made at run time (tlscerts.py)."""
import os
import re
import socket
import ssl
import subprocess

import pytest

import paho.mqtt.client as mqtt

from conftest import IS_MOSQUITTO, LEDGERMQD, PahoClient, free_port, run_tool, wait_for
from tlscerts import Pki

pytestmark = pytest.mark.skipif(IS_MOSQUITTO, reason="TLS listeners configured the ledgermq way")

PUB = "/usr/bin/mosquitto_pub"
SUB = "/usr/bin/mosquitto_sub"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


def tls_broker(broker_factory, pki, cafile=True, require=True, **kw):
    return broker_factory(extra_lines=pki.listener_lines(cafile, require), **kw)


def tls_args(pki, cert="client", version=None):
    a = ["--cafile", pki.path("ca.crt")]
    if cert:
        a += ["--cert", pki.path(cert + ".crt"), "--key", pki.path(cert + ".key")]
    if version:
        a += ["--tls-version", version]
    return a


def pub(port, pki, topic, msg, cert="client", version=None, qos=1):
    return run_tool([PUB, "-h", "127.0.0.1", "-p", str(port), "-q", str(qos), "-t", topic,
                     "-m", msg] + tls_args(pki, cert, version), timeout=10)


class TlsPaho(PahoClient):
    """PahoClient over TLS: CERT names a client certificate of the pki (or
    None); MAX_VERSION caps the protocol (ssl.TLSVersion)."""

    def __init__(self, port, pki, cert="client", max_version=None, **kw):
        self.pki, self.cert, self.max_version = pki, cert, max_version
        super().__init__(port, **kw)

    def connect(self, expect_rc=0, timeout=5.0):
        ctx = ssl.create_default_context(cafile=self.pki.path("ca.crt"))
        if self.cert:
            ctx.load_cert_chain(self.pki.path(self.cert + ".crt"), self.pki.path(self.cert + ".key"))
        if self.max_version:
            ctx.maximum_version = self.max_version
        self.c.tls_set_context(ctx)
        super().connect(expect_rc, timeout)


@pytest.mark.parametrize("version", ["tlsv1.2", "tlsv1.3"])
def test_mosquitto_sub_pub_mtls(broker_factory, pki, version):
    b = tls_broker(broker_factory, pki)
    sub = subprocess.Popen([SUB, "-h", "127.0.0.1", "-p", str(b.port), "-t", "tls/#", "-q", "1",
                            "-C", "1", "-W", "10", "-v"] + tls_args(pki, version=version),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: b.log().count("client certificate: CN=dev1,O=Acme") >= 1, 5)
        assert b.wait_log(r"client \S+ connected from", timeout=5)
        r = pub(b.port, pki, "tls/a", "hello " + version, version=version)
        assert r.returncode == 0, r.stderr
        out, err = sub.communicate(timeout=10)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait(5)
    assert sub.returncode == 0, err
    assert out.decode().strip() == "tls/a hello " + version


def test_tls12_and_tls13_negotiated(broker_factory, clients, pki):
    """mosquitto_pub's --tls-version tlsv1.2 only sets a floor with OpenSSL 3;
    a paho client capped at 1.2 shows the 1.2 path really works."""
    b = tls_broker(broker_factory, pki)
    for cap, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (None, "TLSv1.3")):
        since = len(b.log())
        sub = TlsPaho(b.port, pki, max_version=cap)
        sub.subscribe("v/#", qos=1)
        sub.publish("v/x", name.encode(), qos=1)
        assert sub.get().payload == name.encode()
        sub.disconnect()
        m = b.wait_log(r"connection from 127\.0\.0\.1:\d+: (TLSv1\.\d) (\S+), "
                       r"client certificate: CN=dev1,O=Acme", since=since)
        assert m and m.group(1) == name, b.log()[since:]
        if name == "TLSv1.2":
            assert "ECDHE" in m.group(2)


def test_paho_over_tls_large_payload(broker_factory, pki):
    """Several TLS records per packet, both directions; the write path
    encodes the outq in chunks."""
    b = tls_broker(broker_factory, pki, config={"max_packet_size": 4 * 1024 * 1024})
    sub = TlsPaho(b.port, pki)
    sub.subscribe("big", qos=1)
    pubc = TlsPaho(b.port, pki)
    payloads = [os.urandom(n) for n in (1, 16384, 100000, 3 * 1024 * 1024)]
    for p in payloads:
        pubc.publish("big", p, qos=1)
    got = [sub.get(timeout=15).payload for _ in payloads]
    assert got == payloads
    pubc.disconnect()
    sub.disconnect()


def refused(b, since, reason):
    m = b.wait_log(r"notice\s+connection from 127\.0\.0\.1:\d+ on tls port %d refused: "
                   r"TLS handshake failed: %s" % (b.port, re.escape(reason)), since=since)
    assert m, b.log()[since:]


def test_no_client_certificate_refused(broker_factory, pki):
    b = tls_broker(broker_factory, pki)
    since = len(b.log())
    r = pub(b.port, pki, "t", "x", cert=None)
    assert r.returncode != 0
    refused(b, since, "peer did not return a certificate")
    assert "connected from" not in b.log()


def test_self_signed_client_certificate_refused(broker_factory, pki):
    b = tls_broker(broker_factory, pki)
    since = len(b.log())
    r = pub(b.port, pki, "t", "x", cert="selfsigned")
    assert r.returncode != 0
    refused(b, since, "certificate verify failed (self-signed certificate)")
    assert "connected from" not in b.log()


def test_client_certificate_of_other_ca_refused(broker_factory, pki):
    b = tls_broker(broker_factory, pki)
    since = len(b.log())
    r = pub(b.port, pki, "t", "x", cert="client_other")
    assert r.returncode != 0
    refused(b, since, "certificate verify failed (unable to get local issuer certificate)")
    assert "connected from" not in b.log()


def test_paho_wrong_certificate_refused(broker_factory, pki):
    b = tls_broker(broker_factory, pki)
    c = mqtt.Client(client_id="x", protocol=mqtt.MQTTv311)
    ctx = ssl.create_default_context(cafile=pki.path("ca.crt"))
    ctx.load_cert_chain(pki.path("client_other.crt"), pki.path("client_other.key"))
    c.tls_set_context(ctx)
    with pytest.raises((ssl.SSLError, OSError)):
        c.connect("127.0.0.1", b.port, 10)
        # TLS 1.3: the refusal arrives after the client's Finished.
        c.loop(timeout=2.0)
        c.loop(timeout=2.0)
        raise OSError("no error")
    c.socket() and c.socket().close()


def test_optional_client_certificate(broker_factory, pki):
    """cafile without require_certificate: a client without a certificate
    connects; one with a good certificate is identified; a bad one is
    still refused."""
    b = tls_broker(broker_factory, pki, require=False)
    since = len(b.log())
    assert pub(b.port, pki, "t", "x", cert=None).returncode == 0
    assert b.wait_log(r"client certificate: none", since=since)
    assert pub(b.port, pki, "t", "x").returncode == 0
    assert b.wait_log(r"client certificate: CN=dev1,O=Acme", since=since)
    assert pub(b.port, pki, "t", "x", cert="client_other").returncode != 0
    refused(b, since, "certificate verify failed")


def test_server_only_tls(broker_factory, pki):
    """No cafile: no client certificate is asked for."""
    b = tls_broker(broker_factory, pki, cafile=False, require=False)
    since = len(b.log())
    assert pub(b.port, pki, "t", "x", cert=None).returncode == 0
    assert b.wait_log(r"client certificate: none", since=since)


def test_ed25519_client_certificate(broker_factory, pki):
    """The raw Ed25519 key reaches the server's getter (the form the device
    registry stores): the log line shows it, equal to openssl's."""
    b = tls_broker(broker_factory, pki)
    since = len(b.log())
    assert pub(b.port, pki, "t", "x", cert="client_ed").returncode == 0
    der = subprocess.run(["openssl", "pkey", "-in", pki.path("client_ed.key"), "-pubout",
                          "-outform", "DER"], capture_output=True, check=True, timeout=10).stdout
    m = b.wait_log(r"TLSv1\.3 \S+, client certificate: CN=dev-ed,O=Acme \(Ed25519 key ([0-9a-f]{64})\)",
                   since=since)
    assert m, b.log()[since:]
    assert m.group(1) == der[-32:].hex()


def test_ec_client_certificate_key_reported(broker_factory, pki):
    b = tls_broker(broker_factory, pki)
    since = len(b.log())
    assert pub(b.port, pki, "t", "x").returncode == 0
    assert b.wait_log(r"client certificate: CN=dev1,O=Acme \(SPKI key, 91 bytes\)", since=since)


def test_plain_mqtt_on_tls_port_refused(broker_factory, pki):
    b = tls_broker(broker_factory, pki)
    since = len(b.log())
    s = socket.create_connection(("127.0.0.1", b.port), timeout=5)
    try:
        # CONNECT, MQTT 3.1.1, client id "p"
        s.sendall(bytes([0x10, 13, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 1]) + b"p")
        data = b""
        while True:
            d = s.recv(4096)
            if not d:
                break
            data += d
        assert not data.startswith(b"\x20")  # no CONNACK
    finally:
        s.close()
    refused(b, since, "wrong version number")
    assert b.running()


def test_stalled_handshake_dropped_by_connect_timeout(broker_factory, pki):
    b = tls_broker(broker_factory, pki, config={"connect_timeout": 1})
    s = socket.create_connection(("127.0.0.1", b.port), timeout=10)
    try:
        s.sendall(b"\x16\x03\x01")  # the start of a ClientHello, then nothing
        assert s.recv(100) == b""
    finally:
        s.close()


def test_plain_and_tls_listeners_side_by_side(broker_factory, pki, clients):
    tls_port = free_port()
    b = broker_factory(extra_lines=["listener %d 127.0.0.1" % tls_port] +
                       pki.listener_lines())
    assert b.wait_log(r"listening on 127\.0\.0\.1:%d " % tls_port, timeout=10), b.log()
    plain = clients(b.port)
    plain.subscribe("mix/#", qos=1)
    r = pub(tls_port, pki, "mix/a", "over tls")
    assert r.returncode == 0, r.stderr
    assert plain.get().payload == b"over tls"


def daemon_error(tmp_path, lines):
    conf = tmp_path / "bad.conf"
    conf.write_text("data_dir %s\nlistener %d 127.0.0.1\n" % (tmp_path / "d", free_port()) +
                    "\n".join(lines) + "\n")
    r = subprocess.run([LEDGERMQD, "-c", str(conf)], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=15)
    assert r.returncode != 0
    return str(conf), (r.stdout + r.stderr).decode()


def test_config_certfile_without_keyfile(tmp_path, pki):
    path, out = daemon_error(tmp_path, ["certfile " + pki.path("server.crt")])
    assert "%s:2: listener" % path in out and "certfile needs a keyfile" in out, out


def test_config_require_certificate_without_cafile(tmp_path, pki):
    path, out = daemon_error(tmp_path, pki.listener_lines(cafile=False, require=False) +
                             ["require_certificate true"])
    assert "%s:2: listener" % path in out and "require_certificate needs a cafile" in out, out


def test_config_missing_certfile_named(tmp_path, pki):
    path, out = daemon_error(tmp_path, ["certfile /nonexistent/server.crt",
                                        "keyfile " + pki.path("server.key")])
    assert "certfile /nonexistent/server.crt: No such file or directory" in out, out


def test_config_key_not_matching_certificate(tmp_path, pki):
    path, out = daemon_error(tmp_path, ["certfile " + pki.path("server.crt"),
                                        "keyfile " + pki.path("client.key")])
    assert "keyfile %s: key values mismatch" % pki.path("client.key") in out, out
