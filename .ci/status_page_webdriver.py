#!/usr/bin/env python3
"""Drives Ringway's status page in headless Chromium through chromedriver's WebDriver HTTP API,
with nothing but the Python standard library. Started by .ci/browser-test, which runs
`ringway demo` and chromedriver and passes their addresses in the environment:

  WEBDRIVER    chromedriver's URL               ADMIN    the admin URL (status page and API)
  PROXY        the demo's balancer URL          TOKEN    the admin token ringway was given
  CHROMIUM     the browser binary               PROFILE  a fresh user-data-dir for the browser
  RINGWAY_PID  the running ringway              RESTART  the command line that starts it again
  RESTART_PID  file to write the pid of the restarted ringway into
  SHOTS        directory for the screenshots

Every wait is bounded; the first failed check stops the run with a message saying what the page
showed instead.
"""

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

WEBDRIVER = os.environ["WEBDRIVER"]
ADMIN = os.environ["ADMIN"]
PROXY = os.environ["PROXY"]
TOKEN = os.environ["TOKEN"]
SHOTS = os.environ["SHOTS"]
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C web element key
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1440,1000",
    "--user-data-dir=" + os.environ["PROFILE"],
]
passed = 0


class Failed(Exception):
    pass


def check(ok, what):
    global passed
    if not ok:
        raise Failed(what)
    passed += 1
    print(f"ok {passed}: {what}", flush=True)


def http(method, url, body=None, headers=None, timeout=10):
    """One HTTP exchange; returns (status, parsed JSON or None)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        raw = e.read()
        status = e.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


class Browser:
    """The few WebDriver commands the test needs."""

    def __init__(self):
        caps = {
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": os.environ["CHROMIUM"],
                        "args": CHROMIUM_FLAGS,
                    },
                    "goog:loggingPrefs": {"browser": "ALL"},
                    "timeouts": {"implicit": 0, "pageLoad": 20000, "script": 10000},
                }
            }
        }
        status, answer = http("POST", WEBDRIVER + "/session", caps, timeout=60)
        if status != 200:
            raise Failed(f"chromedriver refused a session: {status} {answer}")
        self.base = WEBDRIVER + "/session/" + answer["value"]["sessionId"]

    def cmd(self, method, path, body=None):
        status, answer = http(method, self.base + path, body if body is not None else (
            {} if method == "POST" else None), timeout=30)
        if status != 200:
            raise Failed(f"WebDriver {method} {path}: {status} {answer}")
        return answer["value"]

    def go(self, url):
        self.cmd("POST", "/url", {"url": url})

    def js(self, script, *args):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def find(self, css):
        return self.cmd("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def click(self, css):
        self.cmd("POST", f"/element/{self.find(css)}/click")

    def type(self, css, text):
        el = self.find(css)
        self.cmd("POST", f"/element/{el}/clear")
        self.cmd("POST", f"/element/{el}/value", {"text": text})

    def screenshot(self, path):
        # Grow the window to the whole page, so one picture shows every pool.
        height = self.js("return Math.ceil(document.documentElement.scrollHeight)")
        self.cmd("POST", "/window/rect", {"width": 1440, "height": min(max(height + 40, 800), 4000)})
        self.js("window.scrollTo(0, 0)")
        png = base64.b64decode(self.cmd("GET", "/screenshot"))
        with open(path, "wb") as f:
            f.write(png)
        return len(png)

    def console(self):
        try:
            return self.cmd("POST", "/se/log", {"type": "browser"})
        except Failed:
            return []

    def quit(self):
        try:
            http("DELETE", self.base, timeout=10)
        except OSError:
            pass


def wait_for(what, probe, limit=15.0):
    """Polls `probe` until it returns something truthy, for at most `limit` seconds."""
    deadline = time.monotonic() + limit
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.1)
    raise Failed(f"{what}: not within {limit:.0f} s (last seen: {last!r})")


ROWS = """
const out = {};
for (const sec of document.querySelectorAll('section.pool')) {
  out[sec.dataset.pool] = [...sec.querySelectorAll('tbody tr[data-server]')].map(tr => ({
    server: tr.dataset.server,
    status: tr.querySelector('.badge').textContent,
    weight: tr.querySelector('td.weight').textContent,
  }));
}
return out;
"""

NOTICE = """
const m = document.querySelector(`section.pool[data-pool="${arguments[0]}"] .pool-msg`);
const text = m.firstChild.textContent.trim();
return text ? {text, error: m.classList.contains('error')} : null;
"""


def server_api(pool, server):
    status, s = http("GET", f"{ADMIN}/api/v1/pools/{pool}/servers/{server}")
    if status != 200:
        raise Failed(f"GET /api/v1/pools/{pool}/servers/{server}: {status} {s}")
    return s


def statuses(b, pool):
    return {r["server"]: r["status"] for r in b.js(ROWS).get(pool, [])}


def run(b):
    b.go(ADMIN + "/")
    check(b.js("return document.title") == "Ringway status", "the status page loads")
    rooms = wait_for("the three rooms servers listed as up", lambda: (
        lambda s: s if s == {"rooms-1": "up", "rooms-2": "up", "rooms-3": "up"} else None
    )(statuses(b, "rooms")))
    check(True, f"pool rooms lists its servers with their states: {rooms}")
    cache = wait_for("pool cache listed", lambda: statuses(b, "cache") or None)
    check(sorted(cache) == ["rooms-1", "rooms-2", "rooms-3"], f"pool cache lists {cache}")
    heads = b.js("return [...document.querySelectorAll('#routes thead th')].map(t => t.textContent)")
    check("Host" in heads, f"the routes table has a host column: {heads}")
    listeners = b.js("return [...document.querySelectorAll('#listeners tbody th')].map(t => t.textContent)")
    check(listeners == ["demo"], f"the listeners table shows the demo listener: {listeners}")
    algo = b.js("return document.querySelector('section.pool[data-pool=\"cache\"] .algo').textContent")
    check(algo.startswith("Consistent hashing on the path"), f"pool cache's algorithm in words: {algo!r}")

    # Some traffic, so the figures and the chart have something to show.
    for i in range(30):
        http("GET", f"{PROXY}/rooms")
        http("GET", f"{PROXY}/cache/rooms/{i}")
    arcs = wait_for("the ring of pool cache drawn", lambda: b.js(
        "return document.querySelectorAll('section.pool[data-pool=\"cache\"] .ring-svg path.seg').length"))
    check(arcs > 0, f"pool cache's ring is drawn ({arcs} arcs)")
    check(b.js("return document.querySelector('section.pool[data-pool=\"rooms\"] .ring').hidden"),
          "a round-robin pool has no ring")

    # Without the token the server refuses, and the page says so readably.
    b.click('section.pool[data-pool="rooms"] button[data-action="drain"][data-server="rooms-2"]')
    refused = wait_for("the 401 shown", lambda: (lambda n: n if n and n["error"] else None)(b.js(NOTICE, "rooms")))
    check("401" in refused["text"] and "token" in refused["text"], f"a 401 is shown: {refused['text']!r}")
    check(server_api("rooms", "rooms-2")["state"] == "ready", "the refused drain changed nothing")
    b.click('section.pool[data-pool="rooms"] .pool-msg button')

    b.type("#token", TOKEN)
    b.click('#token-form button[type="submit"]')
    state = b.js("return [document.getElementById('token-state').textContent, "
                 "sessionStorage.getItem('ringway.admin-token'), location.href, document.cookie]")
    check(state[0].startswith("Token set") and state[1] == TOKEN, "the token is kept in session storage")
    check(TOKEN not in state[2] and state[3] == "", "the token is in neither the URL nor a cookie")

    # Drain rooms-2 from the page; the page shows it and the API confirms it.
    b.click('section.pool[data-pool="rooms"] button[data-action="drain"][data-server="rooms-2"]')
    wait_for("rooms-2 shown as drain", lambda: statuses(b, "rooms").get("rooms-2") == "drain")
    s = server_api("rooms", "rooms-2")
    check(s["state"] == "drain" and s["status"] == "drain",
          f"GET /api/v1/pools/rooms/servers/rooms-2 says drain: state {s['state']}, status {s['status']}")
    others = {n: server_api("rooms", n)["state"] for n in ("rooms-1", "rooms-3")}
    check(others == {"rooms-1": "ready", "rooms-3": "ready"}, f"the other servers stay ready: {others}")
    done = wait_for("the confirmation", lambda: b.js(NOTICE, "rooms"))
    check(not done["error"] and "drain" in done["text"], f"the page confirms: {done['text']!r}")

    # Change a weight from the page.
    b.type('section.pool[data-pool="rooms"] input[data-server="rooms-1"]', "3")
    b.click('section.pool[data-pool="rooms"] button[data-action="weight"][data-server="rooms-1"]')
    wait_for("rooms-1's weight 3 through the API", lambda: server_api("rooms", "rooms-1")["weight"] == 3)
    check(True, "the weight of rooms-1 is 3 through the API")

    # "What moves if this server goes" in the hashed pool.
    b.click('section.pool[data-pool="cache"] button[data-action="plan"][data-server="rooms-3"]')
    plan = wait_for("the ring planner's answer", lambda: b.js(
        "const p = document.querySelector('section.pool[data-pool=\"cache\"] .plan');"
        "return p && !p.hidden && p.textContent.includes('would move') ? p.textContent : null"))
    check("from rooms-3 to" in plan, f"the preview shows what moves: {plan!r}")
    # The preview must stay open across a refresh: wait for the next one ("updated …" changes).
    updated = b.js("return document.getElementById('meta').textContent")
    wait_for("a refresh", lambda: b.js("return document.getElementById('meta').textContent") != updated)
    check(b.js("const p = document.querySelector('section.pool[data-pool=\"cache\"] .plan');"
               "return !p.hidden && p.textContent.includes('would move')"),
          "the preview stays open across a refresh")

    size = b.screenshot(os.path.join(SHOTS, "status-page.png"))
    check(size > 10000, f"screenshot saved to {SHOTS}/status-page.png ({size} bytes)")

    b.click('section.pool[data-pool="rooms"] button[data-action="ready"][data-server="rooms-2"]')
    wait_for("rooms-2 ready again through the API", lambda: server_api("rooms", "rooms-2")["state"] == "ready")
    check(True, "restored rooms-2 from the page")

    errors = [e for e in b.console() if e.get("level") == "SEVERE"
              and ("Content Security Policy" in e.get("message", "") or "Uncaught" in e.get("message", ""))]
    check(not errors, f"no script error or policy violation in the console: {errors}")

    # The admin goes away: a banner says so; it comes back: the banner goes.
    os.kill(int(os.environ["RINGWAY_PID"]), signal.SIGTERM)
    banner = wait_for("the banner", lambda: b.js(
        "const x = document.getElementById('banner'); return x.hidden ? null : x.textContent"))
    check("Disconnected" in banner, f"the banner says the admin is unreachable: {banner!r}")
    b.screenshot(os.path.join(SHOTS, "status-page-offline.png"))
    restart_ringway()
    wait_for("the banner gone", lambda: b.js("return document.getElementById('banner').hidden"), limit=20)
    wait_for("the servers listed again", lambda: statuses(b, "rooms") == {
        "rooms-1": "up", "rooms-2": "up", "rooms-3": "up"})
    check(True, "the page recovers when the admin answers again")


def restart_ringway():
    # The old process must have let go of the admin port before the new one binds it.
    deadline = time.monotonic() + 15
    pid = int(os.environ["RINGWAY_PID"])
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    log = open(os.path.join(SHOTS, "browser-test-ringway-2.log"), "wb")
    env = dict(os.environ, RINGWAY_ADMIN_TOKEN=TOKEN)
    child = subprocess.Popen(os.environ["RESTART"].split(), stdout=log, stderr=log,
                             stdin=subprocess.DEVNULL, env=env)
    with open(os.environ["RESTART_PID"], "w") as f:
        f.write(str(child.pid))


def main():
    started = time.monotonic()
    b = Browser()
    try:
        run(b)
    except Failed as e:
        try:
            b.screenshot(os.path.join(SHOTS, "status-page-failed.png"))
        except Failed:
            pass
        print(f"FAILED: {e}", file=sys.stderr)
        print(f"status-page: {passed} passed, 1 failed")
        return 1
    finally:
        b.quit()
    print(f"status page checks took {time.monotonic() - started:.1f} s")
    print(f"status-page: {passed} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
