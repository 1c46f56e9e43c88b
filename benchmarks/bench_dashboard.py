"""Web dashboard load time in headless Chromium: first paint, first contentful paint and the time until
the first answers of the API are drawn (``body[data-updated]``), over ``--runs`` fresh page loads.

Needs a running ``netspectra api`` (``--url``, default http://127.0.0.1:8080) with data, Debian's
``chromium`` and ``chromium-driver``, and ``selenium``::

    python benchmarks/bench_dashboard.py --url http://127.0.0.1:8080 --runs 20
"""

from __future__ import annotations

import argparse
import statistics
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ARGS = (
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
TIMINGS = """
const p = Object.fromEntries(performance.getEntriesByType('paint').map(e => [e.name, e.startTime]));
const n = performance.getEntriesByType('navigation')[0];
return [p['first-paint'], p['first-contentful-paint'], n.domContentLoadedEventEnd,
        Number(document.body.dataset.updated || 0) - performance.timeOrigin];
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = ap.parse_args()
    options = webdriver.ChromeOptions()
    options.binary_location = args.chromium
    for a in ARGS:
        options.add_argument(a)
    driver = webdriver.Chrome(service=Service(args.chromedriver), options=options)
    rows = []
    try:
        for _ in range(args.runs):
            driver.get("about:blank")
            driver.get(f"{args.url}/?refresh=0")
            deadline = time.monotonic() + 60
            while not driver.execute_script("return document.body.dataset.updated"):
                if time.monotonic() > deadline:
                    raise SystemExit("the page drew no answer within 60 s (is the API up, with data?)")
                time.sleep(0.01)
            rows.append(driver.execute_script(TIMINGS))
    finally:
        driver.quit()
    print(f"{args.runs} loads of {args.url}/ (ms)          p50      max")
    for i, name in enumerate(("first paint", "first contentful paint", "DOMContentLoaded", "data drawn")):
        values = [r[i] for r in rows if r[i] is not None]
        print(f"  {name:<32} {statistics.median(values):8.1f} {max(values):8.1f}")


if __name__ == "__main__":
    main()
