"""A throwaway PKI for the TLS tests, made with the openssl CLI in a temp
dir at run time (never committed): a CA, a server certificate for
127.0.0.1/localhost, a good client certificate (CN=dev1) and an Ed25519 one
(CN=dev-ed), a client certificate from another CA, and a self-signed
client certificate."""
import os
import subprocess

OPENSSL = "/usr/bin/openssl"


def _run(args, cwd):
    subprocess.run([OPENSSL] + args, cwd=cwd, check=True, capture_output=True,
                   stdin=subprocess.DEVNULL, timeout=30)


def _key(d, name, kind="ec"):
    if kind == "ed25519":
        _run(["genpkey", "-algorithm", "ed25519", "-out", name + ".key"], d)
    else:
        _run(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
              "-out", name + ".key"], d)


def _ca(d, name, cn):
    _key(d, name)
    _run(["req", "-x509", "-new", "-key", name + ".key", "-out", name + ".crt",
          "-days", "2", "-subj", "/O=ledgermq test/CN=" + cn,
          "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign"], d)


def _leaf(d, name, ca, subj, ext, kind="ec"):
    _key(d, name, kind)
    _run(["req", "-new", "-key", name + ".key", "-out", name + ".csr", "-subj", subj], d)
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write(ext)
    _run(["x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
          "-CAcreateserial", "-out", name + ".crt", "-days", "2",
          "-extfile", name + ".ext"], d)


class Pki:
    def __init__(self, d):
        self.dir = str(d)
        os.makedirs(self.dir, exist_ok=True)
        d = self.dir
        _ca(d, "ca", "test CA")
        _ca(d, "otherca", "other CA")
        _leaf(d, "server", "ca", "/O=ledgermq test/CN=localhost",
              "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
              "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        client_ext = "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"
        _leaf(d, "client", "ca", "/O=Acme/CN=dev1", client_ext)
        _leaf(d, "client_ed", "ca", "/O=Acme/CN=dev-ed", client_ext, kind="ed25519")
        _leaf(d, "client_other", "otherca", "/O=Evil/CN=dev1", client_ext)
        _key(d, "selfsigned")
        _run(["req", "-x509", "-new", "-key", "selfsigned.key", "-out", "selfsigned.crt",
              "-days", "2", "-subj", "/O=Acme/CN=dev1"], d)

    def path(self, name):
        return os.path.join(self.dir, name)

    def listener_lines(self, cafile=True, require=True):
        lines = ["certfile " + self.path("server.crt"),
                 "keyfile " + self.path("server.key")]
        if cafile:
            lines.append("cafile " + self.path("ca.crt"))
        if require:
            lines.append("require_certificate true")
        return lines
