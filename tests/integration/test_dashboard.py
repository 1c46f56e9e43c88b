"""The web dashboard (``GET /`` for browsers) in a real headless Chromium, driven by Selenium.

The API serves a store filled from ``gnutella.pcap`` through the engine (as in test_api) with uvicorn in
a thread on 127.0.0.1; the page must show what the API answers (read back from the DOM): the traffic
series ending at the golden totals, the top-talkers table, the heavy-hitter and super-spreader tables;
the task picker, the time range and the live refresh must work, and the browser log must have no
errors. A screenshot goes to the test's temporary directory (and to ``$NETSPECTRA_SCREENSHOT_DIR`` when
set); the first paint time (Performance API) is printed.

Needs Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``, ``/usr/bin/chromedriver``) and
the ``selenium`` package; skipped with the reason when one is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the HTTP app needs fastapi (pip install fastapi uvicorn httpx)")
pytest.importorskip("uvicorn", reason="the dashboard test serves the app with uvicorn")
pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")
import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select
from test_api import ALL, FLOWS, config_text, fill_store

from netspectra.api.grpc_service import QueryCore
from netspectra.api.http_app import create_app
from netspectra.config import parse_config_text

CHROMIUM = os.environ.get("NETSPECTRA_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("NETSPECTRA_CHROMEDRIVER", "/usr/bin/chromedriver")
# what works on a machine without outside network (see .library/env/machines/python.md)
CHROME_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1100",
)
WAIT_S = 30


class ServedApp:
    """uvicorn serving ``app`` in a thread, on a free port of 127.0.0.1."""

    def __init__(self, app: Any) -> None:
        # IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted connections (as netspectra.api.server does)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.core: QueryCore | None = None

    def __enter__(self) -> ServedApp:
        self.thread.start()
        deadline = time.monotonic() + WAIT_S
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture(scope="module")
def served(chdb_data_dir: Path) -> Iterator[ServedApp]:
    """Two exact tasks (per_five_tuple, per_src) and two sketch tasks (ss: SuperSpread, cm: CountMin)."""
    db = f"ns_dash_{uuid.uuid4().hex[:10]}"
    cfg = parse_config_text(
        config_text({"data_dir": str(chdb_data_dir), "database": db, "history_resolution": "60s"})
    )
    fill_store(cfg)
    core = QueryCore(cfg)
    try:
        with ServedApp(create_app(core)) as app:
            app.core = core
            yield app
    finally:
        core.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.path.exists(path) or shutil.which(path)):
            pytest.skip(f"{path} is absent: apt-get install -y chromium chromium-driver (Debian's {package})")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in CHROME_ARGS:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(what: str, check: Callable[[], Any], timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def updated(driver: Any) -> str:
    return driver.find_element(By.TAG_NAME, "body").get_attribute("data-updated") or ""


def refreshed(driver: Any, before: str) -> None:
    """Wait until the page has drawn an answer newer than ``before``."""
    wait_for("a refresh", lambda: updated(driver) not in ("", before))


def latest(driver: Any, metric: str) -> tuple[int, str]:
    value, text = driver.execute_script(
        "const b = document.querySelector(`figure[data-metric='${arguments[0]}'] .latest`);"
        "return [b.dataset.value, b.textContent];",
        metric,
    )
    return int(value), text


def table_rows(driver: Any, css: str) -> list[list[str]]:
    """The cells of a table, read in one script: the page redraws its tables at every refresh, so reading
    them element by element from here could straddle a redraw."""
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0] + ' tbody tr.row')]"
        ".map(r => [...r.querySelectorAll('td')].map(td => td.textContent));",
        css,
    )


def shown(row: list[Any]) -> list[str]:
    """How the page writes an API table row: numbers with thousands separators."""
    return [f"{v:,}" if isinstance(v, int) else str(v) for v in row]


def api_table(url: str, target: str, rng: dict[str, int]) -> list[list[Any]]:
    body = {"range": rng, "targets": [{"target": target, "payload": {"limit": 10}}]}
    res = httpx.post(f"{url}/query", json=body, timeout=WAIT_S)
    assert res.status_code == 200, res.text
    return res.json()[0]["rows"]


def browser_errors(driver: Any) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def test_dashboard_in_chromium(browser: Any, served: ServedApp, tmp_path: Path) -> None:
    browser.get(f"{served.url}/?refresh=2")
    wait_for("the first answer", lambda: updated(browser))
    assert browser.title == "NetSpectra"
    assert browser.find_element(By.ID, "status").get_attribute("class") != "error"

    # the task picker offers the exact tasks; the first is shown
    picker = Select(browser.find_element(By.ID, "task"))
    assert [o.get_attribute("value") for o in picker.options] == ["per_five_tuple", "per_src"]
    assert picker.first_selected_option.get_attribute("value") == "per_five_tuple"

    # traffic over time: the golden totals as the newest points, two snapshots each
    packets, bytes_, flows = ALL
    assert latest(browser, "packets") == (packets, f"{packets:,}")
    assert latest(browser, "bytes") == (bytes_, f"{bytes_:,}")
    assert latest(browser, "flows") == (flows, f"{flows:,}")
    for metric in ("packets", "bytes", "flows"):
        points, dots, path = browser.execute_script(
            "const f = document.querySelector(`figure[data-metric='${arguments[0]}']`);"
            "return [f.dataset.points, f.querySelectorAll('svg circle.dot').length,"
            " f.querySelector('svg path.line').getAttribute('d')];",
            metric,
        )
        assert (points, dots) == ("2", 2) and path.startswith("M"), (metric, points, dots, path)

    # tables: exactly what /query answers (the page asks for everything stored: from 0 to now)
    rng = {"from": 0, "to": int(time.time() * 1000)}
    top = api_table(served.url, "per_five_tuple:top", rng)
    assert len(top) == 10
    assert table_rows(browser, "#top-table") == [shown(r) for r in top]
    golden_top = sorted(((int(r["ByteCount"]), int(r["PacketCount"])) for r in FLOWS), reverse=True)[:10]
    assert [(r[6], r[5]) for r in top] == golden_top
    heads = browser.execute_script(
        "return [...document.querySelectorAll('#top-table thead th')].map(th => th.textContent)"
    )
    assert heads == ["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol", "Packets", "Bytes"]
    for css, target in (
        ("#hitter-tables", "cm:count"),
        ("#hitter-tables", "cm:size"),
        ("#spreader-tables", "ss:spread"),
    ):
        rows = api_table(served.url, target, rng)
        assert rows, target
        hh = {"taskName": target.split(":")[0], "type": {"count": 0, "size": 1, "spread": 2}[target[3:]]}
        rest = httpx.post(f"{served.url}/api/v1/heavy-hitters", json=hh | {"limit": 10}, timeout=WAIT_S)
        assert rows == [[h["flow"], int(h["value"])] for h in rest.json()["hitters"]]
        assert table_rows(browser, f'{css} table[data-target="{target}"]') == [shown(r) for r in rows]

    # the page polls by itself
    refreshed(browser, updated(browser))

    # first paint, from the Performance API
    paints = dict(
        browser.execute_script("return performance.getEntriesByType('paint').map(e => [e.name, e.startTime])")
    )
    assert "first-paint" in paints or "first-contentful-paint" in paints, paints
    nav = browser.execute_script("return performance.getEntriesByType('navigation')[0].toJSON()")
    print(
        f"\ndashboard: first paint {paints.get('first-paint', float('nan')):.1f} ms, first contentful paint "
        f"{paints.get('first-contentful-paint', float('nan')):.1f} ms, DOMContentLoaded "
        f"{nav['domContentLoadedEventEnd']:.1f} ms"
    )

    png = tmp_path / "dashboard.png"
    assert browser.save_screenshot(str(png)) and png.stat().st_size > 10_000
    if os.environ.get("NETSPECTRA_SCREENSHOT_DIR"):
        out = Path(os.environ["NETSPECTRA_SCREENSHOT_DIR"])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(png, out / "dashboard.png")

    # another task: per source IP, the same packets and bytes, one flow per source
    before = updated(browser)
    picker.select_by_value("per_src")
    refreshed(browser, before)
    wait_for("per_src's flows", lambda: latest(browser, "flows")[0] == len({r["SrcIP"] for r in FLOWS}))
    assert latest(browser, "packets")[0] == packets and latest(browser, "bytes")[0] == bytes_
    src_top = api_table(served.url, "per_src:top", {"from": 0, "to": int(time.time() * 1000)})
    assert table_rows(browser, "#top-table") == [shown(r) for r in src_top]

    # a range with nothing in it (the capture is stored at 2024-01-01): empty charts and tables
    before = updated(browser)
    Select(browser.find_element(By.ID, "range")).select_by_value("300")
    refreshed(browser, before)
    points, top_text = browser.execute_script(
        "return [document.querySelector(`figure[data-metric='packets']`).dataset.points,"
        " document.getElementById('top-table').textContent]"
    )
    assert points == "0" and "nothing in this range" in top_text
    assert table_rows(browser, "#top-table") == []

    assert browser_errors(browser) == []


def test_dashboard_reports_api_errors(browser: Any, served: ServedApp) -> None:
    """An unknown task in the URL is ignored (the first task is shown); a failing request shows its
    message in the status line instead of a blank page (the console keeps the network error)."""
    browser.get(f"{served.url}/?task=nope&refresh=0")
    wait_for("the first answer", lambda: updated(browser))
    assert Select(browser.find_element(By.ID, "task")).first_selected_option.get_attribute("value") == (
        "per_five_tuple"
    )
    browser.execute_script(
        "const s = document.getElementById('task');"
        "s.append(new Option('gone', 'gone')); s.value = 'gone'; s.dispatchEvent(new Event('change'));"
    )
    status = browser.find_element(By.ID, "status")
    wait_for("the error", lambda: status.get_attribute("class") == "error")
    assert "NOT_FOUND" in status.text and "gone" in status.text


TOKEN = "dashboard-token-0123456789abcdef"


@pytest.fixture(scope="module")
def served_with_token(served: ServedApp) -> Iterator[ServedApp]:
    """The same store behind an app that needs a token (api.auth)."""
    from netspectra.auth import TokenSet

    with ServedApp(create_app(served.core, tokens=TokenSet([TOKEN]))) as app:
        yield app


def test_dashboard_url_presets_the_pickers_lack(browser: Any, served: ServedApp) -> None:
    """``range`` in seconds (the docs' word) that no option has gets its own option, ``refresh=off`` is
    off; anything else keeps the default. Such a value left the picker blank, and a blank range asked for
    the empty range [now, now]: "no data in this range" for a store full of traffic."""
    browser.get(f"{served.url}/?refresh=off&range=7200")
    wait_for("the first answer", lambda: updated(browser))
    rng, every = Select(browser.find_element(By.ID, "range")), Select(browser.find_element(By.ID, "refresh"))
    chosen = rng.first_selected_option
    assert (chosen.get_attribute("value"), chosen.text) == ("7200", "last 7,200 s")
    assert every.first_selected_option.get_attribute("value") == "0"
    browser.get(f"{served.url}/?refresh=fast&range=soon")
    wait_for("the first answer", lambda: updated(browser))
    rng, every = Select(browser.find_element(By.ID, "range")), Select(browser.find_element(By.ID, "refresh"))
    assert rng.first_selected_option.get_attribute("value") == "all"
    assert every.first_selected_option.get_attribute("value") == "5"
    assert latest(browser, "packets")[0] == ALL[0]


def test_dashboard_with_a_token(browser: Any, served_with_token: ServedApp) -> None:
    """The page asks for the token, keeps it in the tab's sessionStorage (never in the URL), sends it as a
    header; a wrong one is refused with a message; "Forget token" drops it."""
    url = served_with_token.url
    browser.get_log("browser")  # drop what earlier tests left in the log
    browser.get(f"{url}/?refresh=0")
    form = browser.find_element(By.ID, "auth")
    status = browser.find_element(By.ID, "status")
    wait_for("the token form", lambda: form.is_displayed())
    assert "needs a token" in status.text and status.get_attribute("class") == "error"
    field = browser.find_element(By.ID, "token")
    assert field.get_attribute("type") == "password"
    field.send_keys("wrong-token-0123456789abcdef")
    browser.find_element(By.ID, "sign-in").click()
    wait_for("the refusal", lambda: "refused" in status.text)
    assert form.is_displayed() and not updated(browser)

    field.send_keys(TOKEN)
    browser.find_element(By.ID, "sign-in").click()
    wait_for("the first answer", lambda: updated(browser))
    assert not form.is_displayed() and browser.find_element(By.ID, "sign-out").is_displayed()
    assert latest(browser, "packets")[0] == ALL[0]
    assert TOKEN not in browser.current_url
    assert browser.execute_script("return sessionStorage.getItem('netspectra.token')") == TOKEN
    assert browser.execute_script("return localStorage.length") == 0
    # a reload in the same tab keeps the token
    browser.get(f"{url}/?refresh=0")
    wait_for("the answer after a reload", lambda: updated(browser))
    # forgetting it asks again
    browser.find_element(By.ID, "sign-out").click()
    wait_for("the token form again", lambda: browser.find_element(By.ID, "auth").is_displayed())
    assert browser.execute_script("return sessionStorage.getItem('netspectra.token')") is None
    # the 401s of the page are network errors in the console; nothing else is
    errors = [e for e in browser_errors(browser) if "401" not in e["message"]]
    assert errors == []


def test_swagger_ui_works_offline(browser: Any, served_with_token: ServedApp) -> None:
    """/docs renders every operation from files the package serves (no CDN: this machine has no outside
    network, so an asset from elsewhere would fail), and offers the bearer token (Authorize)."""
    url = served_with_token.url
    browser.get_log("browser")
    browser.get(f"{url}/docs")
    wait_for("the operations", lambda: len(browser.find_elements(By.CSS_SELECTOR, ".opblock")) >= 10)
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(r.startswith(url + "/") for r in resources), resources
    assert f"{url}/static/swagger-ui/swagger-ui-bundle.js" in resources
    assert browser.find_elements(By.CSS_SELECTOR, ".btn.authorize")
    assert browser_errors(browser) == []
    html = httpx.get(f"{url}/docs", timeout=WAIT_S).text
    assert "cdn" not in html.lower() and "https://" not in html


@pytest.fixture(scope="module")
def served_rollup(chdb_data_dir: Path) -> Iterator[ServedApp]:
    """An exact task and a rollup task (auto dimensions, no enrichment) over the same capture."""
    db = f"ns_dash_rollup_{uuid.uuid4().hex[:10]}"
    # fill_store writes with a manual clock in 2024, and retention judges a partition by its newest write
    # against the real clock: the first writer's retention sweep would drop the rollup partitions if the
    # rollup writer had written before it (a race between the writers' threads, lost about once in 15
    # runs on a loaded machine). This test is about traffic time, not retention: keep the rollups.
    forever = {f"rollup_{r}_retention": "0s" for r in ("1m", "5m", "1h")}
    ch = {"data_dir": str(chdb_data_dir), "database": db, **forever}
    base = config_text(ch).split("  sketch:")[0].replace("types: [exact, sketch]", "types: [exact, rollup]")
    writer = base.split("writers: ", 1)[1].split("\n", 1)[0]
    cfg = parse_config_text(f"{base}  rollup:\n    writers: {writer}\n    tasks: [{{name: traffic}}]\n")
    fill_store(cfg)
    core = QueryCore(cfg)
    try:
        with ServedApp(create_app(core)) as app:
            app.core = core
            yield app
    finally:
        core.close()


def test_dashboard_shows_the_traffic_in_its_own_time(browser: Any, served_rollup: ServedApp) -> None:
    """The capture's packets are from its own time (1970-01-01, ten minutes), stored decades later: the
    rollup chart of "everything stored" shows those ten minutes, one point each, from the 1-minute table —
    not one point at the moment of the analysis."""
    from test_api import CAPTURE

    from netspectra.capture.reader import read_captures

    url = served_rollup.url
    browser.get_log("browser")
    browser.get(f"{url}/?refresh=0&range=all")
    wait_for("the first answer", lambda: updated(browser))
    assert browser.find_element(By.ID, "timeline").is_displayed()
    picker = Select(browser.find_element(By.ID, "rollup-task"))
    assert [o.get_attribute("value") for o in picker.options] == ["traffic"]
    ts = np.concatenate([b.ts_ns for b in read_captures([CAPTURE])])
    minutes, counts = np.unique(ts // (60 * 10**9), return_counts=True)
    want = [[int(c), int(m) * 60_000] for m, c in zip(minutes, counts, strict=True)]
    assert len(want) == 10
    body = {
        "range": {"from": 0, "to": int(time.time() * 1000)},
        "targets": [{"target": "rollup:traffic:packets"}],
    }
    (answer,) = httpx.post(f"{url}/query", json=body, timeout=WAIT_S).json()
    assert answer["datapoints"] == want
    assert answer["meta"]["table"] == "rollup_1m" and answer["meta"]["step_s"] == 60
    drawn = browser.execute_script(
        "const f = document.querySelector(\"figure[data-rollup='packets']\");"
        "return [f.dataset.points, f.querySelectorAll('svg circle.dot').length,"
        " [...f.querySelectorAll('svg text')].map(t => t.textContent),"
        " document.getElementById('rollup-table').textContent];"
    )
    points, dots, labels, which = drawn
    assert (points, dots) == ("10", 10)
    assert "1970-01-01 00:00:00" in labels and "1970-01-01 00:09:00" in labels
    assert which == "60 s steps from rollup_1m"
    # a step without traffic has no point: the line breaks there instead of crossing it (two captures
    # years apart were joined by one straight line, as if traffic had flowed in between)
    lines = "return [f.querySelector('svg path.line').getAttribute('d').split('M').length - 1,"
    lines += " f.querySelectorAll('svg circle.dot').length];"
    whole = browser.execute_script(
        "const f = document.querySelector(\"figure[data-rollup='packets']\");" + lines
    )
    assert whole == [1, 10]
    gapped = browser.execute_script(
        "const f = document.querySelector(\"figure[data-rollup='bytes']\");"
        "drawChart(f, arguments[0].filter((p, i) => i !== 4), 60000);" + lines,
        want,
    )
    assert gapped == [2, 9]
    assert (
        int(
            browser.find_element(By.CSS_SELECTOR, "figure[data-rollup='packets'] .latest").get_attribute(
                "data-value"
            )
        )
        == want[-1][0]
    )
    assert browser_errors(browser) == []
