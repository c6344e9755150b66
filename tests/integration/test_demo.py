"""`make demo` (scripts/demo.sh) in a short mode: 2 meters for 2 seconds,
the meters also verifying their receipts with the SDK.
The script itself checks that every reading was acknowledged, every
receipt verifies offline, the watcher saw only consistent checkpoints and
the audit passed; here its summary is checked too."""
import os
import re
import subprocess

import pytest

from conftest import BUILD_DIR, REPO, ledgermq_only

pytestmark = ledgermq_only("the demo runs ledgermqd")


def test_demo_short(tmp_path):
    env = dict(os.environ, DEMO_METERS="2", DEMO_SECONDS="2", DEMO_DEVICE_VERIFY="1",
               DEMO_DIR=str(tmp_path / "demo"))
    p = subprocess.run(["bash", os.path.join(REPO, "scripts", "demo.sh"), BUILD_DIR], env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    out = p.stdout
    assert "\ndemo: OK\n" in out
    m = re.search(r"messages acknowledged:\s+(\d+) of (\d+) sent", out)
    assert m and int(m.group(1)) == int(m.group(2)) > 0
    acked = int(m.group(1))
    m = re.search(r"receipts verified:\s+(\d+) of (\d+) acknowledged readings offline .*"
                  r"; (\d+) also by the meters", out)
    assert m and int(m.group(1)) == int(m.group(2)) == int(m.group(3)) == acked
    m = re.search(r"ledger:\s+(\d+) records \(incl. 2 registrations\) in (\d+) blocks", out)
    assert m and int(m.group(1)) == acked + 2
    assert re.search(r"checkpoints:\s+%s signed" % m.group(2), out)
    assert "audit ok: %d records" % (acked + 2) in out
