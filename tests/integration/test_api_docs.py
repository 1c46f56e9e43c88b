"""docs/api.md as a user runs it: every ``curl`` line of the page against a live ``netspectra api`` (the
``https://`` ones against one with tokens and TLS), with the task names the page uses; and the vendored
Swagger UI files are the ones their README names (version and checksums)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_process import ROOT, ApiProcess, env, fill_store, issue, make_ca

DOC = ROOT / "docs" / "api.md"
SWAGGER = ROOT / "src" / "netspectra" / "api" / "static" / "swagger-ui"
TOKEN = "docs-token-0123456789abcdefgh"

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def curl_lines() -> list[str]:
    """The ``curl`` command lines inside the page's code blocks."""
    lines, inside = [], False
    for line in DOC.read_text().splitlines():
        if line.startswith("```"):
            inside = not inside
        elif inside and line.startswith("curl "):
            lines.append(line)
    return lines


def test_the_page_has_examples() -> None:
    lines = curl_lines()
    assert len(lines) >= 8 and any(" -d '" in x for x in lines) and any("https://" in x for x in lines)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fill_store(tmp_path_factory.mktemp("docs"), ss="ss_src_dst", cm="cm_src_left")


@pytest.fixture(scope="module")
def plain(store: Path) -> Iterator[ApiProcess]:
    proc = ApiProcess(store, store.parent).start()
    try:
        yield proc
    finally:
        proc.stop()


def run(line: str, port: int, cwd: Path, extra: dict[str, str] | None = None) -> str:
    command = line.replace("localhost:8080", f"localhost:{port}")
    res = subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env={**env(), **(extra or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, (line, res.stderr)
    return res.stdout


def check_answer(line: str, out: str) -> None:
    assert out.strip(), line
    doc = json.loads(out)
    assert not (isinstance(doc, dict) and {"code", "message"} <= set(doc)), (line, doc)
    assert doc, (line, doc)  # every example answers something (the store holds gnutella.pcap)


def test_every_plain_curl_line(plain: ApiProcess, store: Path) -> None:
    lines = [x for x in curl_lines() if "https://" not in x]
    assert len(lines) >= 7
    for line in lines:
        check_answer(line, run(line, plain.http_port, store.parent))


@pytest.fixture(scope="module")
def secured(store: Path, plain: ApiProcess) -> Iterator[ApiProcess]:
    plain.stop()  # one process per chdb data directory
    tmp = store.parent
    ca = make_ca(tmp, "docs-ca")
    shutil.copy(ca[0], tmp / "ca.pem")
    crt, key = issue(tmp, ca, "docs-server", server=True)
    conf = tmp / "secured.yaml"
    conf.write_text(
        store.read_text().replace(
            "  http_listen_addr: '127.0.0.1:0'\n",
            f"  http_listen_addr: '127.0.0.1:0'\n  auth: {{tokens: [{TOKEN}]}}\n"
            f"  tls: {{cert_file: {json.dumps(str(crt))}, key_file: {json.dumps(str(key))}}}\n",
        )
    )
    proc = ApiProcess(conf, tmp).start()
    try:
        yield proc
    finally:
        proc.stop()


def test_every_https_curl_line(secured: ApiProcess, store: Path) -> None:
    lines = [x for x in curl_lines() if "https://" in x]
    assert lines
    for line in lines:
        check_answer(line, run(line, secured.http_port, store.parent, {"NETSPECTRA_API_TOKEN": TOKEN}))
        # and without the token, the same line is refused
        out = run(line, secured.http_port, store.parent, {"NETSPECTRA_API_TOKEN": ""})
        assert json.loads(out)["code"] == "UNAUTHENTICATED"


def test_vendored_swagger_ui_matches_its_readme() -> None:
    readme = (SWAGGER / "README.md").read_text()
    assert "swagger-ui-dist 5.35.0" in readme
    sums = dict(re.findall(r"\| (swagger-ui[\w.-]+) \| ([0-9a-f]{64}) \|", readme))
    assert set(sums) == {"swagger-ui-bundle.js", "swagger-ui.css"}
    for name, digest in sums.items():
        assert hashlib.sha256((SWAGGER / name).read_bytes()).hexdigest() == digest, name
    assert "Apache License" in (SWAGGER / "LICENSE").read_text()
    assert (SWAGGER / "NOTICE").read_text().startswith("swagger-ui")
