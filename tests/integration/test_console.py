"""The console (``/console``) in a real headless Chromium, against real ``netspectra api`` processes.

Two stores, each filled by ``netspectra analyze --store`` with the alerter on (so alerts are stored):
the real capture ``gnutella.pcap`` (served with a token: the page asks for it and keeps it in the tab)
and a ``netspectra gen`` trace (served without). For every view the numbers the page shows (read back
from the DOM) equal the API's answer for the same request and the stored truth — the golden flows of
the capture (tests/golden/expected, Wireshark-checked), the generator's truth file. Also: the URL holds
the state (shareable, the back button walks back), the filter input completes and shows errors with a
caret, hostile filters are refused or harmless, and the browser logs no error. A screenshot of each
view is written to docs/console/ (refreshed by every run).

Needs Debian's ``chromium`` and ``chromium-driver`` and ``selenium`` (skipped with the reason without).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlparse

import httpx
import pytest

pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")
from api_process import CAPTURE, ROOT, ApiProcess, config_text, env
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select
from test_api import FLOWS, iso_ns
from test_dashboard import CHROME_ARGS, CHROMEDRIVER, CHROMIUM, browser_errors, wait_for

GOLDEN = json.loads((ROOT / "tests" / "golden" / "expected" / "gnutella.pcap.summary.json").read_text())
TOTALS = (GOLDEN["ip_packets"], GOLDEN["ip_bytes"], GOLDEN["flows"])
SHOTS = ROOT / "docs" / "console"
TOKEN = "console-token-0123456789abcdef"
WAIT_S = 60


def fill(tmp: Path, capture: Path, api: str = "") -> Path:
    """``netspectra analyze CAPTURE --store`` into an embedded store of its own; the configuration's path."""
    conf = tmp / "netspectra.yaml"
    conf.write_text(config_text(tmp / "chdb", api=api))
    res = subprocess.run(
        [sys.executable, "-m", "netspectra", "analyze", str(capture), "-c", str(conf), "--store", "--json"],
        cwd=tmp,
        env=env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode in (0, 1), res.stderr  # 1: alerts fired
    doc = json.loads(res.stdout)
    assert all(w["written"] >= 1 and w["dropped"] == 0 for w in doc["store"].values()), doc["store"]
    return conf


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium, as the dashboard test drives it (Debian's chromium and chromedriver)."""
    import shutil

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


class Served:
    """A running ``netspectra api`` and how to ask it (with the token when there is one)."""

    def __init__(self, proc: ApiProcess, token: str = "", truth: Any = None) -> None:
        self.proc = proc
        self.url = f"http://{proc.http}"
        self.token = token
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.truth = truth

    def get(self, path: str, **params: Any) -> Any:
        res = httpx.get(f"{self.url}{path}", params=params, headers=self.headers, timeout=WAIT_S)
        assert res.status_code == 200, res.text
        return res.json()


@pytest.fixture
def capture(capture_api: Served, browser: Any) -> Served:
    """The capture's API with its token in the browser tab (signed in)."""
    signed_in(browser, capture_api)
    return capture_api


@pytest.fixture(scope="module")
def capture_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("console-capture")
    conf = fill(tmp, CAPTURE, api=f"  auth: {{tokens: [{TOKEN}]}}\n")
    proc = ApiProcess(conf, tmp).start()
    try:
        yield Served(proc, TOKEN)
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("console-gen")
    trace = tmp / "gen.pcap"
    args = ["gen", str(trace), "--packets", "60000", "--flows", "4000", "--seed", "11", "--no-progress"]
    subprocess.run([sys.executable, "-m", "netspectra", *args], cwd=tmp, env=env(), check=True, timeout=600)
    truth = json.loads((tmp / "gen.truth.json").read_text())
    proc = ApiProcess(fill(tmp, trace), tmp).start()
    try:
        yield Served(proc, truth=truth)
    finally:
        proc.stop()


#: What the local chat-completions server answers to the alerter's AI analysis requests.
ANALYSIS = "## Assessment\n\nA host sends over 1 kB: `per_src` — look at O'Brien's <b>laptop</b>."


@pytest.fixture(scope="module")
def rolled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The capture's store with a rollup task besides the exact ones (same engine, same batches; keyed on
    the protocol and the source AS, from a ``networks`` map: 64500 for 0/1, 64501 for 128/1), and the
    alerter's AI analysis on (the AI gRPC service in front of a local chat-completions server)."""
    if str(ROOT / "tests") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests"))
    from fakes.openai_server import FakeOpenAI
    from netspectra.ai.service import serve
    from netspectra.config.models import AiConfig

    tmp = tmp_path_factory.mktemp("console-rollup")
    text = config_text(tmp / "chdb")
    writer = text.split("    writers: ", 1)[1].split("\n", 1)[0]
    text = text.replace("types: [exact, sketch, flows]", "types: [exact, sketch, flows, rollup]").replace(
        "alerter:\n",
        f"  rollup:\n    writers: {writer}\n"
        "    tasks:\n      - {name: traffic, dimensions: [Protocol, SrcAS]}\n"
        # two AS numbers by the address's top bit: SrcAS is a dimension the exact tasks are not keyed on
        "enrichment:\n  networks:\n    0.0.0.0/1: {asn: 64500}\n    128.0.0.0/1: {asn: 64501}\n"
        "alerter:\n",
    )
    conf = tmp / "netspectra.yaml"
    with FakeOpenAI(api_key="sk-console") as fake:
        fake.reply = ANALYSIS
        ai, port = serve(
            AiConfig(api_key="sk-console", model="m", base_url=fake.base_url),
            addr="127.0.0.1:0",
            max_retries=0,
        )
        try:
            conf.write_text(
                text.replace(
                    "alerter:\n  enabled: true\n",
                    "alerter:\n  enabled: true\n"
                    f"  ai_analysis: {{enabled: true, service_addr: '127.0.0.1:{port}', timeout: 60s}}\n",
                )
            )
            res = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "netspectra",
                    "analyze",
                    str(CAPTURE),
                    "-c",
                    str(conf),
                    "--store",
                    "--json",
                ],
                cwd=tmp,
                env=env(),
                capture_output=True,
                text=True,
                timeout=600,
            )
        finally:
            ai.stop(0)
    assert res.returncode in (0, 1), res.stderr
    assert fake.requests, "the alerter asked for no AI analysis"
    proc = ApiProcess(conf, tmp).start()
    try:
        yield Served(proc)
    finally:
        proc.stop()


# ---- reading the page -------------------------------------------------------------------------------------


def updated(driver: Any) -> str:
    return driver.execute_script("return document.body.dataset.updated || ''")


def signed_in(driver: Any, served: Served) -> None:
    """The served API's token in this tab's sessionStorage for its origin, as the sign-in form leaves it."""
    if served.token and not driver.current_url.startswith(served.url):
        driver.get(f"{served.url}/api/v1/health")
        # a JSON page has no icon of its own: the browser asks /favicon.ico (once a session), which the
        # token guards (401); that error is this navigation's, not a console page's (those declare their
        # icon): wait a moment for it and drain the log of it here
        import time

        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not any("/favicon.ico" in e["message"] for e in seen):
            seen += browser_errors(driver)
            time.sleep(0.1)
        left = [e for e in seen if "/favicon.ico" not in e["message"]]
        assert left == [], left
    if served.token:
        driver.execute_script("sessionStorage.setItem('netspectra.token', arguments[0])", served.token)


def show(driver: Any, url: str) -> None:
    """Load ``url`` and wait until the page has drawn its answer (or failed)."""
    driver.get(url)
    wait_for(
        f"{url} drawn",
        lambda: updated(driver) or driver.execute_script("return document.body.dataset.failed"),
    )
    status = driver.find_element(By.ID, "status")
    assert status.get_attribute("class") != "error", status.text


def show_failing(driver: Any, url: str) -> str:
    """Load ``url``, which the page must answer with an error; the status line's text."""
    driver.get(url)
    wait_for(f"{url} failing", lambda: driver.execute_script("return document.body.dataset.failed || ''"))
    status = driver.find_element(By.ID, "status")
    assert status.get_attribute("class") == "error", status.text
    return status.text


def redrawn(driver: Any, action: Any) -> None:
    before = updated(driver)
    action()
    wait_for("a redraw", lambda: updated(driver) not in ("", before))


def rows(driver: Any, css: str) -> list[list[str]]:
    """Cells of the table rows matching ``css``: a number cell's exact value (data-value), else its text."""
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(r => [...r.querySelectorAll('td')]"
        ".map(td => td.dataset.value !== undefined ? td.dataset.value : td.textContent.trim()))",
        css,
    )


def query(driver: Any) -> dict[str, str]:
    parsed = urlparse(driver.current_url)
    return {k: v[0] for k, v in parse_qs(parsed.query).items()} | {"_path": parsed.path}


def screenshot(driver: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.execute_script("window.scrollTo(0, 0)")
    assert driver.save_screenshot(str(SHOTS / f"{name}.png"))


def no_errors(driver: Any, allowed: tuple[str, ...] = ()) -> None:
    bad = [e for e in browser_errors(driver) if not any(a in e["message"] for a in allowed)]
    assert bad == [], bad


def golden_sums(pred: Any) -> tuple[int, int, int]:
    rows_ = [r for r in FLOWS if pred(r)]
    return (
        sum(int(r["PacketCount"]) for r in rows_),
        sum(int(r["ByteCount"]) for r in rows_),
        len(rows_),
    )


# ---- the capture store, behind a token ------------------------------------------------------------------


def test_the_console_asks_for_the_token(browser: Any, capture_api: Served) -> None:
    capture = capture_api
    browser.get(f"{capture.url}/api/v1/health")
    browser.execute_script("sessionStorage.clear()")  # a tab that never signed in
    browser.get_log("browser")
    browser.get(f"{capture.url}/console")
    form = browser.find_element(By.ID, "auth")
    wait_for("the token form", form.is_displayed)
    assert browser.current_url.endswith("/console/visualize")  # the bare /console shows the default view
    field = browser.find_element(By.ID, "token")
    field.send_keys("wrong-token-0123456789abcdef")
    browser.find_element(By.ID, "sign-in").click()
    wait_for("the refusal", lambda: "refused" in browser.find_element(By.ID, "status").text)
    field.send_keys(TOKEN)
    browser.find_element(By.ID, "sign-in").click()
    wait_for("the first answer", lambda: updated(browser))
    assert browser.execute_script("return sessionStorage.getItem('netspectra.token')") == TOKEN
    assert TOKEN not in browser.current_url
    no_errors(browser, allowed=("401",))  # the refused requests are network errors in the log


def test_visualize_equals_the_api_and_the_capture(browser: Any, capture: Served) -> None:
    show(browser, f"{capture.url}/console/visualize?dims=DstPort,Protocol&limit=5")
    api = capture.get("/api/v1/console/visualize", dims="DstPort,Protocol", limit=5, points=120)
    page = rows(browser, "#viz-table tbody tr")
    assert len(page) == 5 + 2  # five series, Other, Total
    for r, s in zip(page, api["series"], strict=False):
        assert r[1:6] == [
            str(s["key"]["DstPort"]),
            str(s["key"]["Protocol"]),
            *(str(s[m]) for m in ("packets", "bytes", "flows")),
        ]
    other, total = page[-2], page[-1]
    assert other[1] == "Other" and other[2:5] == [str(api["other"][m]) for m in ("packets", "bytes", "flows")]
    assert total[1] == "Total" and tuple(map(int, total[2:5])) == TOTALS
    # the golden grouping: the top combination by bytes
    groups: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in FLOWS:
        g = groups[(int(r["DstPort"]), int(r["Protocol"]))]
        g[0], g[1], g[2] = g[0] + int(r["PacketCount"]), g[1] + int(r["ByteCount"]), g[2] + 1
    best = max(groups.items(), key=lambda kv: kv[1][1])
    assert page[0][1:6] == [str(best[0][0]), str(best[0][1]), *map(str, best[1])]
    svg = browser.find_element(By.CSS_SELECTOR, "#viz-chart svg")
    assert svg.get_attribute("data-kind") == "stacked"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#viz-chart g.series")) == 6
    assert int(svg.get_attribute("data-points")) == len(api["times"])
    note = browser.find_element(By.ID, "viz-note").text
    assert "traffic time" in note and "first packet" in note
    screenshot(browser, "visualize")

    # the other charts draw the same rows
    chart = Select(browser.find_element(By.ID, "chart"))
    redrawn(browser, lambda: chart.select_by_value("lines"))
    assert browser.find_element(By.CSS_SELECTOR, "#viz-chart svg").get_attribute("data-kind") == "lines"
    assert query(browser)["chart"] == "lines"
    redrawn(browser, lambda: chart.select_by_value("grid"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#viz-chart .grid-cell")) == 6
    redrawn(browser, lambda: chart.select_by_value("sankey"))
    weights = browser.execute_script(
        "const n = {}; document.querySelectorAll('#viz-chart rect.node').forEach(r => {"
        "n[r.dataset.dim] = (n[r.dataset.dim] || 0) + Number(r.dataset.weight)}); return n"
    )
    assert weights == {"DstPort": TOTALS[1], "Protocol": TOTALS[1]}  # every column carries all the bytes
    screenshot(browser, "sankey")
    # per second: the same totals in the table, a rate on the chart
    redrawn(browser, lambda: Select(browser.find_element(By.ID, "unit")).select_by_value("rate"))
    assert rows(browser, "#viz-table tbody tr.total")[0][2:5] == [str(t) for t in TOTALS]
    no_errors(browser)


def test_the_url_holds_the_state_and_back_walks_back(browser: Any, capture: Served) -> None:
    show(browser, f"{capture.url}/console/visualize?dims=Protocol")
    redrawn(browser, lambda: Select(browser.find_element(By.ID, "metric")).select_by_value("packets"))
    assert query(browser)["metric"] == "packets" and query(browser)["dims"] == "Protocol"
    redrawn(browser, lambda: Select(browser.find_element(By.ID, "dim-1")).select_by_value("SrcIP"))
    assert query(browser)["dims"] == "Protocol,SrcIP"
    redrawn(browser, lambda: browser.find_element(By.CSS_SELECTOR, "#views a[data-view=flows]").click())
    assert query(browser)["_path"] == "/console/flows" and query(browser)["dims"] == "Protocol,SrcIP"
    redrawn(browser, browser.back)
    assert query(browser)["_path"] == "/console/visualize"
    assert (
        Select(browser.find_element(By.ID, "dim-1")).first_selected_option.get_attribute("value") == "SrcIP"
    )
    redrawn(browser, browser.back)
    assert "dims" in query(browser) and query(browser)["dims"] == "Protocol"
    assert Select(browser.find_element(By.ID, "dim-1")).first_selected_option.get_attribute("value") == ""
    # a shared URL shows the same view in a fresh tab (same state)
    shared = browser.current_url
    show(browser, shared)
    assert (
        Select(browser.find_element(By.ID, "metric")).first_selected_option.get_attribute("value")
        == "packets"
    )
    no_errors(browser)


def test_filter_completion_errors_and_results(browser: Any, capture: Served) -> None:
    show(browser, f"{capture.url}/console/visualize?dims=Protocol")
    box = browser.find_element(By.ID, "filter")
    box.clear()
    box.send_keys("Dst")

    def items() -> list[str]:  # read in one script: the list is redrawn as the suggestions arrive
        return browser.execute_script(
            "const l = document.getElementById('completion'); return l.hidden ? [] : "
            "[...l.querySelectorAll('li')].map(li => li.textContent)"
        )

    wait_for("field names", lambda: items() == ["DstIP", "DstPort"])
    box.send_keys(Keys.ARROW_DOWN, Keys.ARROW_DOWN, Keys.ENTER)
    assert box.get_attribute("value") == "DstPort "
    wait_for("operators", lambda: "IN" in items() and "<<" not in items())
    box.send_keys("= ")
    wait_for("values from the store", lambda: len(items()) >= 5 and all(i.isdigit() for i in items()))
    ports = capture.get("/api/v1/console/complete", text="DstPort = ", cursor=10)["options"]
    assert items() == [o["text"] for o in ports][: len(items())]
    box.send_keys(Keys.ESCAPE)
    # a filter the language refuses: the caret under the position, the URL keeps the last good state
    box.clear()
    box.send_keys("DstPort = 70000")
    browser.find_element(By.ID, "apply-filter").click()
    err = browser.find_element(By.ID, "filter-error")
    wait_for("the error", err.is_displayed)
    assert err.get_attribute("data-position") == "10"
    assert err.text.splitlines()[1].startswith(" " * 10 + "^ 70000 is outside what DstPort holds")
    assert "filter" not in query(browser)
    # a good one: what the golden flows say
    box.clear()
    box.send_keys("Protocol = udp AND NOT SrcIP << 10.0.0.0/8")
    redrawn(browser, lambda: box.send_keys(Keys.ENTER))
    assert query(browser)["filter"] == "Protocol = udp AND NOT SrcIP << 10.0.0.0/8"
    assert not err.is_displayed()
    total = rows(browser, "#viz-table tbody tr.total")[0]
    want = golden_sums(lambda r: r["Protocol"] == "17" and not r["SrcIP"].startswith("10."))
    assert tuple(map(int, total[2:5])) == want
    # drill down: "+" beside a value adds it to the filter
    redrawn(
        browser, lambda: browser.find_element(By.CSS_SELECTOR, "#viz-table tbody tr.row button.drill").click()
    )
    assert query(browser)["filter"] == "(Protocol = udp AND NOT SrcIP << 10.0.0.0/8) AND Protocol = 17"
    no_errors(browser)


HOSTILE = [
    "DstPort = 1; DROP TABLE flow_metrics",
    "DstPort = 1 -- x",
    "DstPort = 1 /* x */",
    "SrcIP = '10.0.2.15' OR '1'='1'",
    "SrcIP = 10.0.2.15' OR 1=1 --",
    'SrcIP = "x\\" OR 1=1',
    "`SrcIP` = 1",
    "DstPort = %(flt_0)s",
    "SrcIP = 'ｆｅ80::1'",
    "DstPort = ١٢",
    "(" * 40 + "DstPort = 1" + ")" * 40,
    "DstPort IN (" + ",".join(["1"] * 1200) + ")",
]


def test_hostile_filters_are_refused_or_harmless(browser: Any, capture: Served) -> None:
    for text in HOSTILE:
        status = show_failing(browser, f"{capture.url}/console/visualize?filter={quote(text)}")
        assert "INVALID_ARGUMENT" in status, (text, status)
        err = browser.find_element(By.ID, "filter-error")
        assert err.is_displayed() and "^" in err.text, text
    # quotes and Unicode inside a string are a value like any other: harmless, and nothing matches
    quoted = quote("SrcIP = '10.0.2.15 OR 1=1'")
    show_failing(browser, f"{capture.url}/console/visualize?filter={quoted}")
    assert "is not an IP address" in browser.find_element(By.ID, "status").text
    show(browser, f"{capture.url}/console/flows?filter={quote('DstPort IN (53) AND Protocol = 17')}")
    # and the store is as it was
    show(browser, f"{capture.url}/console/visualize?dims=Protocol")
    assert tuple(map(int, rows(browser, "#viz-table tbody tr.total")[0][2:5])) == TOTALS
    no_errors(browser, allowed=("status of 400",))


def test_flows_view(browser: Any, capture: Served) -> None:
    show(browser, f"{capture.url}/console/flows")
    api = capture.get("/api/v1/console/flows", limit=50)
    page = rows(browser, "#flows-table tbody tr.row")
    heads = browser.execute_script(
        "return [...document.querySelectorAll('#flows-table th')].map(t => t.dataset.column)"
    )
    assert (
        heads
        == api["columns"]
        == ["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol", "FirstSeen", "LastSeen", "Packets", "Bytes"]
    )
    assert page == [[("" if v is None else str(v)) for v in r] for r in api["rows"]]
    by_bytes = sorted(FLOWS, key=lambda r: -int(r["ByteCount"]))
    assert page[0][8] == by_bytes[0]["ByteCount"] and page[0][5] == str(iso_ns(by_bytes[0]["StartTime"]))
    screenshot(browser, "flows")
    # sort by packets (click the header), then the next page
    redrawn(
        browser,
        lambda: browser.find_element(By.CSS_SELECTOR, "#flows-table th[data-column=Packets] a").click(),
    )
    assert query(browser)["sort"] == "Packets"
    api = capture.get("/api/v1/console/flows", sort="Packets", limit=50)
    assert rows(browser, "#flows-table tbody tr.row")[0] == [str(v) for v in api["rows"][0]]
    assert [int(r[7]) for r in rows(browser, "#flows-table tbody tr.row")] == sorted(
        (int(r["PacketCount"]) for r in FLOWS), reverse=True
    )[:50]
    redrawn(browser, lambda: browser.find_element(By.ID, "flows-next").click())
    assert query(browser)["offset"] == "50"
    api = capture.get("/api/v1/console/flows", sort="Packets", limit=50, offset=50)
    assert rows(browser, "#flows-table tbody tr.row") == [
        [("" if v is None else str(v)) for v in r] for r in api["rows"]
    ]
    # an address links to its host page
    redrawn(browser, lambda: browser.find_element(By.CSS_SELECTOR, "#flows-table a.host").click())
    assert query(browser)["_path"] == "/console/host" and query(browser)["ip"]
    no_errors(browser)


def test_host_view(browser: Any, capture: Served) -> None:
    ip = "10.0.2.15"
    show(browser, f"{capture.url}/console/host?ip={ip}")
    totals = {r[0]: tuple(map(int, r[1:])) for r in rows(browser, "#host-totals tbody tr")}
    assert totals == {
        "sent": golden_sums(lambda r: r["SrcIP"] == ip),
        "received": golden_sums(lambda r: r["DstIP"] == ip),
    }
    api = capture.get("/api/v1/console/host", ip=ip, limit=10)
    for facet, values in api["facets"].items():
        page = rows(browser, f'table[data-facet="{facet}"] tbody tr')
        assert page == [[str(v) for v in r] for r in values], facet
    hitters = rows(browser, "#host-hitters tbody tr.row")
    assert len(hitters) == len(api["hitters"]) >= 1
    assert [h[3] for h in hitters] == [str(h["value"]) for h in api["hitters"]]
    alerts = rows(browser, "#host-alerts tbody tr.row")
    assert len(alerts) == len(api["alerts"]) >= 1  # the spread_over_5 rule fired on it
    assert browser.find_element(By.CSS_SELECTOR, "#host-chart svg").get_attribute("data-kind") == "lines"
    screenshot(browser, "host")
    no_errors(browser)


def test_alerts_view_links_to_the_traffic(browser: Any, capture: Served) -> None:
    show(browser, f"{capture.url}/console/alerts")
    api = capture.get("/api/v1/alerts", limit=500)["alerts"]
    page = browser.execute_script(
        "return [...document.querySelectorAll('#alerts-table tbody tr.row')]"
        ".map(r => [r.dataset.time, r.dataset.task, r.dataset.rule])"
    )
    assert page == [[a["timeNs"], a["task"], a["rule"]] for a in api] and len(page) >= 2
    assert {a["task"] for a in api} == {"per_src", "ss"}
    screenshot(browser, "alerts")
    # a super-spreader alert names its source: the link filters on it, on the stored-time axis
    link = browser.find_element(By.CSS_SELECTOR, '#alerts-table tr[data-task="ss"] a.traffic')
    redrawn(browser, link.click)
    q = query(browser)
    flow = next(a["flow"] for a in api if a["task"] == "ss")
    assert (q["axis"], q["range"], q["filter"]) == ("snapshot", "abs", f"SrcIP = {flow}")
    total = rows(browser, "#viz-table tbody tr.total")[0]
    assert tuple(map(int, total[2:5])) == golden_sums(lambda r: r["SrcIP"] == flow)
    no_errors(browser)


def test_live_view(browser: Any, capture: Served) -> None:
    show(browser, f"{capture.url}/console/live?refresh=2")
    assert tuple(map(int, rows(browser, "#live-totals tbody tr")[0][1:])) == TOTALS
    api = capture.get("/api/v1/console/live", limit=10)
    assert rows(browser, "#live-by-total tbody tr.row") == [[str(v) for v in r] for r in api["byTotal"]]
    first = updated(browser)
    wait_for("the next refresh", lambda: updated(browser) != first, timeout=20)
    screenshot(browser, "live")
    Select(browser.find_element(By.ID, "live-refresh")).select_by_value("0")
    no_errors(browser)


def test_catalog_says_what_the_store_lacks(browser: Any, capture: Served) -> None:
    show(browser, f"{capture.url}/console/visualize")
    # everything the page loads comes from this server (it works offline)
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(r.startswith(capture.url + "/") for r in resources), resources
    assert f"{capture.url}/static/console/charts.js" in resources
    note = browser.find_element(By.ID, "tables-note").text
    # nothing is lacking: the migrations create the flows, rollup (4) and exporters (5) tables, empty or not
    assert note == ""
    tables = {t["name"]: t["present"] for t in capture.get("/api/v1/console/catalog")["tables"]}
    assert tables["flows"] and tables["rollup_1m"] and tables["exporters"]
    options = [o.get_attribute("value") for o in Select(browser.find_element(By.ID, "source")).options]
    assert options == ["flow_metrics:per_five_tuple", "flow_metrics:per_src", "flows:flows"]
    dims = [o.get_attribute("value") for o in Select(browser.find_element(By.ID, "dim-0")).options]
    assert dims == ["", "SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"]
    redrawn(
        browser, lambda: Select(browser.find_element(By.ID, "source")).select_by_value("flow_metrics:per_src")
    )
    dims = [o.get_attribute("value") for o in Select(browser.find_element(By.ID, "dim-0")).options]
    assert dims == ["", "SrcIP"]  # per_src keys on SrcIP only
    assert tuple(map(int, rows(browser, "#viz-table tbody tr.total")[0][2:4])) == TOTALS[:2]
    no_errors(browser)


def js_text(v: Any) -> str:
    """A JSON value as the page writes it (String(v); null: empty): 1153.0 is "1153" there."""
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def all_records(served: Served) -> list[dict[str, Any]]:
    """Every record of the flows task through main's REST ListFlows (``POST /api/v1/flows``), paged."""
    out: list[dict[str, Any]] = []
    token = ""
    while True:
        body = {"taskName": "flows", "pageSize": 1000, **({"pageToken": token} if token else {})}
        res = httpx.post(f"{served.url}/api/v1/flows", json=body, headers=served.headers, timeout=WAIT_S)
        assert res.status_code == 200, res.text
        doc = res.json()
        out += doc.get("flows", [])
        token = doc.get("nextPageToken", "")
        if not token:
            assert len(out) == int(doc["total"])
            return out


def test_flow_records_light_up(browser: Any, capture: Served) -> None:
    """The ``flows`` table the configuration's flows task filled (migration 2): a source of its own whose
    visualize, flows list and host page equal the console API and the records ``ListFlows`` gives."""
    records = all_records(capture)
    n = lambda r, k: int(r.get(k, 0))  # noqa: E731 (proto JSON leaves zeros out)
    rec_p = [n(r, "srcToDstPackets") + n(r, "dstToSrcPackets") for r in records]
    rec_b = [n(r, "srcToDstBytes") + n(r, "dstToSrcBytes") for r in records]
    assert len(records) > 10 and sum(rec_p) == TOTALS[0]  # every packet of the capture is in one record
    src = "flows:flows"
    show(browser, f"{capture.url}/console/visualize?source={src}&dims=ConnState&limit=20")
    api = capture.get("/api/v1/console/visualize", source=src, dims="ConnState", limit=20, points=120)
    page = rows(browser, "#viz-table tbody tr")
    states: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r, p, b in zip(records, rec_p, rec_b, strict=True):
        states[r.get("connState", "")][0] += p
        states[r.get("connState", "")][1] += b
    for r, s in zip(page, api["series"], strict=False):
        state = "" if s["key"]["ConnState"] is None else s["key"]["ConnState"]
        assert r[1:5] == [state, str(s["packets"]), str(s["bytes"]), str(s["flows"])]
        assert [s["packets"], s["bytes"]] == states[state], state
    total = rows(browser, "#viz-table tbody tr.total")[0]
    assert tuple(map(int, total[2:4])) == (sum(rec_p), sum(rec_b))
    screenshot(browser, "records")
    # the flows list: records with their state, flags and end reason, largest first
    show(browser, f"{capture.url}/console/flows?source={src}")
    api = capture.get("/api/v1/console/flows", source=src, limit=50)
    heads = browser.execute_script(
        "return [...document.querySelectorAll('#flows-table th')].map(t => t.dataset.column)"
    )
    assert heads == api["columns"] and {"ConnState", "EndReason", "SrcToDstTCPFlags"} <= set(heads)
    page = rows(browser, "#flows-table tbody tr.row")
    assert page == [[js_text(v) for v in r] for r in api["rows"]]
    bytes_at = heads.index("Bytes")
    assert [int(r[bytes_at]) for r in page] == sorted(rec_b, reverse=True)[:50]
    screenshot(browser, "records-flows")
    # the host page reads the records too
    ip = "10.0.2.15"
    show(browser, f"{capture.url}/console/host?ip={ip}&source={src}")
    totals = {r[0]: tuple(map(int, r[1:])) for r in rows(browser, "#host-totals tbody tr")}
    sent = [(p, b) for r, p, b in zip(records, rec_p, rec_b, strict=True) if r.get("srcIp") == ip]
    assert totals["sent"] == (sum(p for p, _ in sent), sum(b for _, b in sent), len(sent)) and sent
    no_errors(browser)


# ---- the gen trace, no token ------------------------------------------------------------------------------


def test_gen_trace(browser: Any, gen: Served) -> None:
    truth = gen.truth
    show(browser, f"{gen.url}/console/visualize?dims=Protocol")
    total = tuple(map(int, rows(browser, "#viz-table tbody tr.total")[0][2:5]))
    t = truth["totals"]
    assert total == (t["packets"], t["bytes"], t["distinct_five_tuples"])
    by_proto = {int(r[1]): int(r[2]) for r in rows(browser, "#viz-table tbody tr.row")}
    packets = t["protocol_packets"]
    assert (by_proto[6], by_proto[17]) == (packets["tcp"], packets["udp"])
    assert by_proto.get(1, 0) + by_proto.get(58, 0) == packets["icmp"]  # ICMP and ICMPv6
    # the traffic's own time: the trace's minute, not the moment it was analysed
    api = gen.get("/api/v1/console/visualize", dims="Protocol", points=120)
    assert t["first_ts_ns_at_least"] <= api["start"] <= api["end"] < t["last_ts_ns_below"]
    # the planted heavy hitter sends what the truth says; the DDoS victim receives it
    hh = truth["heavy_hitters"][0]
    show(browser, f"{gen.url}/console/host?ip={hh['src_ip']}")
    sent = rows(browser, '#host-totals tbody tr[data-direction="sent"]')[0]
    assert (int(sent[1]), int(sent[2])) == (hh["packets"], hh["bytes"])
    victim = truth["ddos_victims"][0]
    show(browser, f"{gen.url}/console/host?ip={victim['dst_ip']}")
    received = rows(browser, '#host-totals tbody tr[data-direction="received"]')[0]
    assert (int(received[1]), int(received[2])) == (victim["packets"], victim["bytes"])
    assert int(received[3]) >= victim["distinct_src"]  # flows: one per source at least
    # the flows view: the biggest flow first
    show(browser, f"{gen.url}/console/flows?filter={quote('SrcIP = ' + hh['src_ip'])}")
    page = rows(browser, "#flows-table tbody tr.row")
    redrawn(browser, lambda: browser.find_element(By.ID, "flows-next").click())
    page += rows(browser, "#flows-table tbody tr.row")
    assert not browser.find_element(By.ID, "flows-next").is_enabled()
    assert len(page) == hh["flows"] and all(r[0] == hh["src_ip"] for r in page)
    assert sum(int(r[7]) for r in page) == hh["packets"] and sum(int(r[8]) for r in page) == hh["bytes"]
    no_errors(browser)


def test_the_pages_curl_lines(gen: Served) -> None:
    """Every ``curl`` line of docs/console.md answers 200 with JSON from a live ``netspectra api``."""
    import shutil

    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    lines, inside = [], False
    for line in (ROOT / "docs" / "console.md").read_text().splitlines():
        if line.startswith("```"):
            inside = not inside
        elif inside and line.startswith("curl "):
            lines.append(line)
    assert len(lines) >= 6
    port = gen.url.rsplit(":", 1)[1]
    for line in lines:
        command = line.replace("curl -s", "curl -s -w '\\n%{http_code}'").replace(
            "localhost:8080", f"127.0.0.1:{port}"
        )
        res = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
        body, _, code = res.stdout.rpartition("\n")
        assert code == "200", (line, res.stdout[-500:])
        assert isinstance(json.loads(body), dict), line


def test_visualize_from_the_coarsest_rollup(browser: Any, rolled: Served) -> None:
    """Six hours around the capture at 120 points: 5-minute steps, answered by rollup_5m (the page says so);
    the page's numbers are the API's, and the totals those of the full-resolution table."""
    whole = rolled.get("/api/v1/console/visualize", dims="Protocol", resolution="full")
    hour = 3600 * 10**9
    lo = whole["start"] // hour * hour
    hi = lo + 6 * hour - 10**9
    iso = [dt.datetime.fromtimestamp(t // 10**9, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S") for t in (lo, hi)]
    q = {"dims": "Protocol", "points": 120, "start": lo // 10**6, "end": hi // 10**6}
    auto = rolled.get("/api/v1/console/visualize", **q)
    full = rolled.get("/api/v1/console/visualize", **q, resolution="full")
    assert (auto["table"], auto["resolution"], auto["rollupTask"], auto["step"]) == (
        "rollup_5m",
        "5m",
        "traffic",
        300 * 10**9,
    )
    assert full["table"] == "flow_metrics" and full["total"]["flows"] == TOTALS[2]
    assert [auto["total"][m] for m in ("packets", "bytes")] == [
        full["total"][m] for m in ("packets", "bytes")
    ]
    show(browser, f"{rolled.url}/console/visualize?dims=Protocol&range=abs&start={iso[0]}&end={iso[1]}")
    note = browser.find_element(By.ID, "viz-note")
    assert note.get_attribute("data-table") == "rollup_5m" and note.get_attribute("data-resolution") == "5m"
    assert "from rollup_5m (5m buckets of rollup task traffic; flows not counted)" in note.text
    assert "each packet's traffic in the bucket of its own time" in note.text
    page = rows(browser, "#viz-table tbody tr.row")
    assert [r[1:5] for r in page] == [
        [str(s["key"]["Protocol"]), str(s["packets"]), str(s["bytes"]), "—"] for s in auto["series"]
    ]
    total = rows(browser, "#viz-table tbody tr.total")[0]
    assert total[2:5] == [str(full["total"]["packets"]), str(full["total"]["bytes"]), "—"]
    screenshot(browser, "visualize-rollup")
    no_errors(browser)


def test_alerts_view_shows_the_ai_analysis(browser: Any, rolled: Served) -> None:
    """The analysis text the alerts were sent with (stored since migration 6) is in the Alerts view, as the
    API gives it: text, not markup."""
    api = rolled.get("/api/v1/alerts", limit=500)["alerts"]
    assert api and {(a["aiStatus"], a["aiAnalysis"]) for a in api} == {("ok", ANALYSIS)}
    show(browser, f"{rolled.url}/console/alerts")
    shown = browser.execute_script(
        "return [...document.querySelectorAll('#alerts-table tbody tr.row')].map(r => {"
        "const d = r.querySelector('td.ai .analysis'); return [r.dataset.time, d ? d.textContent : null]})"
    )
    assert shown == [[a["timeNs"], ANALYSIS] for a in api]
    assert not browser.find_elements(By.CSS_SELECTOR, "#alerts-table td.ai b")  # shown as text
    browser.execute_script("document.querySelector('#alerts-table td.ai details').open = true")
    screenshot(browser, "alerts-ai")
    no_errors(browser)


def test_a_rollup_task_is_a_source_in_the_page(browser: Any, rolled: Served) -> None:
    """The rollup task is offered as a source of its own ("traffic (rollups)"): Visualize on it shows the
    API's answer from a rollup table, the flow views are marked unavailable, and asking one says why."""
    api = rolled.get("/api/v1/console/visualize", source="rollup:traffic", dims="Protocol")
    assert api["table"].startswith("rollup_") and api["rollupTask"] == "traffic"
    full = rolled.get("/api/v1/console/visualize", dims="Protocol", resolution="full")
    assert [api["total"][m] for m in ("packets", "bytes")] == [full["total"][m] for m in ("packets", "bytes")]
    show(browser, f"{rolled.url}/console/visualize?source=rollup:traffic&dims=Protocol")
    sel = Select(browser.find_element(By.ID, "source"))
    assert sel.first_selected_option.text == "traffic (rollups)"
    assert sel.options[0].get_attribute("value").startswith("flow_metrics:")
    note = browser.find_element(By.ID, "viz-note")
    assert note.get_attribute("data-table") == api["table"] and "rollup task traffic" in note.text
    page = rows(browser, "#viz-table tbody tr.row")
    assert [r[1:4] for r in page] == [
        [str(s["key"]["Protocol"]), str(s["packets"]), str(s["bytes"])] for s in api["series"]
    ]
    flows = browser.find_element(By.CSS_SELECTOR, "#views a[data-view=flows]")
    assert "unavailable" in flows.get_attribute("class") and "holds no flows" in flows.get_attribute("title")
    no_errors(browser)
    said = show_failing(browser, flows.get_attribute("href"))
    assert "rollup:traffic holds a rollup task's traffic" in said and "not flows" in said, said


def test_visualize_a_rollup_source_by_source_as(browser: Any, rolled: Served) -> None:
    """Traffic by SrcAS over time — no exact task is keyed on it — from the rollup source in the page: the
    table holds the API's series (the two AS numbers of the networks map, 0 where unknown), whose sum is the
    full-resolution total; picking the 1h resolution in the page asks rollup_1h (same totals), and "full" is
    not offered."""
    api = rolled.get("/api/v1/console/visualize", source="rollup:traffic", dims="SrcAS")
    full = rolled.get("/api/v1/console/visualize", dims="Protocol", resolution="full")
    keys = [s["key"]["SrcAS"] for s in api["series"]]
    assert {64500, 64501} <= set(keys) <= {0, 64500, 64501}, keys  # 0: no IPv4 source (unknown)
    assert sum(s["bytes"] for s in api["series"]) == full["total"]["bytes"] == api["total"]["bytes"]
    browser_errors(browser)  # read (and so cleared): an earlier test's refused flows view logged its 400
    show(browser, f"{rolled.url}/console/visualize?source=rollup:traffic&dims=SrcAS")
    assert Select(browser.find_element(By.ID, "dim-0")).first_selected_option.text == "SrcAS"
    # the axis says what a rollup's time is: no first packet, each packet's bucket
    assert (
        Select(browser.find_element(By.ID, "axis")).first_selected_option.text
        == "traffic time (rollup buckets)"
    )
    assert "in the bucket of its own time" in browser.find_element(By.ID, "axis-note").text
    page = rows(browser, "#viz-table tbody tr.row")
    assert [r[1:4] for r in page] == [
        [str(s["key"]["SrcAS"]), str(s["packets"]), str(s["bytes"])] for s in api["series"]
    ]
    assert browser.find_elements(By.CSS_SELECTOR, "#viz-chart svg"), "no chart drawn"
    screenshot(browser, "visualize-rollup-source")
    res = Select(browser.find_element(By.ID, "resolution"))
    assert not browser.find_element(By.CSS_SELECTOR, "#resolution option[value=full]").is_enabled()
    redrawn(browser, lambda: res.select_by_value("1h"))
    assert query(browser)["resolution"] == "1h"
    note = browser.find_element(By.ID, "viz-note")
    assert note.get_attribute("data-table") == "rollup_1h" and note.get_attribute("data-resolution") == "1h"
    total = rows(browser, "#viz-table tbody tr.total")[0]
    assert total[2:4] == [str(api["total"]["packets"]), str(api["total"]["bytes"])]
    no_errors(browser)
