"""The HTML report in headless Chromium, offline: a legend click hides a curve, a header click
sorts the rows, the filter box hides rows, and no request leaves the page.

Chromium is driven over the Chrome DevTools Protocol (a websocket, the `websockets` package);
every request the page makes shows up as a Network.requestWillBeSent event and is counted. The
browser also runs with a proxy that refuses everything and a resolver that resolves nothing,
so even an uncounted request could not reach the network. Skipped only when no chromium binary
is installed (CI installs Debian's `chromium`).
"""

import json
import shutil
import subprocess
import time
import urllib.request

import pytest

from fixtures.make_runs import make_runs
from nnopt.analysis import aggregate as ag
from nnopt.config.studies import parse_config
from nnopt.report import build as report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
websockets = pytest.importorskip("websockets.sync.client", reason="websockets not installed")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                                "(apt-get install chromium)")

CONFIG = {
    "defaults": {"budget": {"epochs": 3}},
    "seeds": 2,
    "studies": [{"name": "lr", "title": "Rates </script><b>x</b>",
                 "grid": {"optimizer.lr": [0.3, 0.1, 0.03, 0.01, 0.003, 0.001, 3e-4, 1e-4,
                                           3e-5, 1e-5]},
                 "metrics": ["test_accuracy"]}],
}


class _Page:
    """A minimal CDP client: send a command, collect the events that arrive meanwhile."""

    def __init__(self, ws_url: str):
        self.ws = websockets.connect(ws_url, max_size=None, open_timeout=20).__enter__()
        self.next_id, self.events = 0, []

    def send(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=30))
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, method: str, timeout_s: float = 30):
        end = time.monotonic() + timeout_s
        while not any(e.get("method") == method for e in self.events):
            self.events.append(json.loads(self.ws.recv(timeout=max(0.1, end - time.monotonic()))))

    def js(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    config = parse_config(CONFIG)
    make_runs(config, root / "runs", sd=0.02)
    ag.aggregate(config, root / "runs", root)
    (root / "config.json").write_text(json.dumps(CONFIG))
    (root / "claims.yaml").write_text("claims: []\n")
    html = root / "report.html"
    report.build_report(root / "config.json", root, root / "claims.yaml", html)
    profile = root / "profile"
    profile.mkdir()
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-extensions", f"--user-data-dir={profile}",
         "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
         "--remote-debugging-port=0", "--window-size=1280,2000", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        for _ in range(300):
            if port_file.exists() and port_file.read_text().strip():
                break
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            targets = json.load(r)
        cdp = _Page(next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"])
        cdp.send("Network.enable")
        cdp.send("Page.enable")
        cdp.events.clear()
        cdp.send("Page.navigate", url=html.as_uri())
        cdp.wait_for("Page.loadEventFired")
        cdp.html_uri = html.as_uri()
        yield cdp
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_no_request_leaves_the_page(page):
    requests = [e["params"]["request"]["url"] for e in page.events
                if e.get("method") == "Network.requestWillBeSent"]
    assert requests == [page.html_uri]  # the document itself, nothing else
    assert page.js("document.querySelectorAll('.interactive[data-study]:not([hidden])').length") == 1


def test_a_legend_click_hides_a_curve(page):
    shown = "document.querySelectorAll('path.curve[display=\"inline\"]').length"
    before = page.js(shown)
    assert before == 8  # the static figure's eight; the other two start toggled off
    assert page.js("document.querySelectorAll('path.curve').length") == 10  # every curve
    config = page.js("var p = document.querySelector('path.curve[display=\"inline\"]');"
                     "document.querySelector('.legend-item[data-config=\"' + "
                     "p.getAttribute('data-config') + '\"]').click(); p.getAttribute('data-config')")
    assert page.js(shown) == before - 1
    assert page.js(f"document.querySelector('path.curve[data-config=\"{config}\"]')"
                   ".getAttribute('display')") == "none"
    page.js(".".join(["document.querySelector('.legend-item.off')", "click()"]))
    assert page.js(shown) == before


def test_a_header_click_sorts_rows_and_the_filter_hides_rows(page):
    col = ("Array.from(document.querySelectorAll('table.results tbody tr'))"
           ".map(r => parseFloat(r.cells[1].getAttribute('data-sort')))")
    page.js("document.querySelectorAll('table.results thead th')[1].click()")
    ascending = page.js(col)
    assert len(ascending) == 10 and ascending == sorted(ascending)
    page.js("document.querySelectorAll('table.results thead th')[1].click()")
    assert page.js(col) == sorted(ascending, reverse=True)
    visible = ("Array.from(document.querySelectorAll('table.results tbody tr'))"
               ".filter(r => r.style.display !== 'none').length")
    page.js("var b = document.querySelector('section.study input.table-filter');"
            "b.value = '0.003';"
            "b.dispatchEvent(new Event('input'))")
    assert page.js(visible) == 1


def test_the_log_axis_and_the_x_switch_redraw(page):
    page.js("var s = document.querySelector('.curve-x'); s.value = 'step';"
            "s.dispatchEvent(new Event('change'))")
    assert page.js("document.querySelector('.curve-svg').textContent.includes('Step')")
    page.js("var s = document.querySelector('.curve-y'); s.value = 'log';"
            "s.dispatchEvent(new Event('change'))")
    assert page.js("document.querySelectorAll('path.curve').length") == 10


def test_a_config_string_cannot_break_out_of_the_data(page):
    # The title holds '</script><b>x</b>': it shows as text and the data still parses.
    assert page.js("document.querySelector('section.study h1').textContent") == \
        "Rates </script><b>x</b>"
    assert page.js("document.querySelectorAll('h1 b, .finding b').length") == 0
    assert page.js("JSON.parse(document.getElementById('data-lr').textContent)"
                   ".series.length") == 10
