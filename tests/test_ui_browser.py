"""The analyst pages under /ui, driven in headless Chromium against the real server.

One world for the module: a small simulation, a model trained on it with the CLI, the real server
(uvicorn in a subprocess) fed every event through /v1/events:batch, and a workbench snapshot built
from the server's state with `distillguard workbench build`. The browser is Debian's `chromium`
driven by Playwright (never `playwright install`); without it the browser tests are skipped, unless
DISTILLGUARD_REQUIRE_BROWSER is set (.ci/run sets it), where that is a failure.

Screenshots go to a temporary folder, or to $DISTILLGUARD_SCREENSHOTS (docs/screenshots for the
committed ones).
"""

from __future__ import annotations

import html
import json
import os
import re
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pandas as pd
import pytest
from serving_helpers import AUTH, KEY, OTHER_KEY, Server
from serving_helpers import cli as _cli
from serving_helpers import payloads as _payloads

CHROMIUM = os.environ.get("DISTILLGUARD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# account ids the contract accepts that a path segment cannot hold unencoded
ODD_ACCOUNTS = ["team/alice", "org/../x y", "a b?c#d%e&f", "ünï/cödé/"]
ODD_PROMPTS = ["how long should sourdough proof in a cold kitchen?", "explain what a monad is in plain words",
               "suggest a name for a grey cat that likes boxes"]
SIM = {"harvest_fraction": 0.3, "campaigns_per_style": 1, "days": 7, "release_day": 4}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("ui")
    (root / "sim.json").write_text(json.dumps(SIM))
    _cli("simulate", "--out", str(root / "sim"), "--accounts", "120", "--seed", "4", "--config", str(root / "sim.json"))
    _cli("train", "--events", str(root / "sim" / "events.parquet"), "--labels", str(root / "sim" / "labels.csv"),
         "--mlruns", str(root / "mlruns"), "--store", str(root / "store"), "--no-time-to-detection")
    events = pd.read_parquet(root / "sim" / "events.parquet")
    # prompts up to the service default size; pages log at info, so the key checks see every line
    server = Server(root, "state", log_level="info", champion_poll_s=0, max_prompt_chars=32_000).start()
    try:
        payloads = _payloads(events.sort_values("ts", kind="stable"))
        for lo in range(0, len(payloads), 2_000):
            r = server.client.post("/v1/events:batch", json={"events": payloads[lo:lo + 2_000]})
            assert r.status_code == 200, r.text
        odd = [{"account_id": a, "prompt": p} for a in ODD_ACCOUNTS for p in ODD_PROMPTS]  # ids with "/", "?", "%"
        assert server.client.post("/v1/events:batch", json={"events": odd}).status_code == 200
        accounts = sorted(events["account_id"].unique()) + ODD_ACCOUNTS
        deadline = time.time() + 180
        while time.time() < deadline:
            if not any(server.client.get(f"/v1/accounts/{quote(a, safe='')}").json()["dirty"] for a in accounts):
                break
            time.sleep(0.5)
        else:
            raise AssertionError("accounts still unscored after 180 s")
        # pages before any snapshot exists say how to build one
        r = server.client.get("/ui/")
        assert r.status_code == 503 and "distillguard workbench build --state" in r.text
        _cli("workbench", "build", "--state", str(server.state), "--out", str(server.state / "workbench"),
             "--mlruns", str(root / "mlruns"), "--store", str(root / "store"))
    except BaseException:
        server.stop()
        raise
    from distillguard.workbench.queries import Workbench

    wb = Workbench.open(server.state / "workbench")
    flagged = [r for d in ("block", "review") for r in wb.ranked(decision=d, limit=500)[0] if r.component_size > 2]
    assert flagged, "no flagged account in a campaign of three or more"
    target = flagged[0]
    owners = events.groupby("prompt")["account_id"].nunique()
    mine = events[events["account_id"] == target.account_id]["prompt"]
    unique = sorted({p for p in mine if owners[p] == 1 and len(p) >= 30}, key=len)
    assert unique, "the flagged account sent no prompt of its own"
    yield {"root": root, "events": events, "server": server, "target": target, "wb": wb,
           "search_prompt": unique[len(unique) // 2],
           "prompts": sorted({p for p in mine if len(p) >= 20})}
    server.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("DISTILLGUARD_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("DISTILLGUARD_REQUIRE_BROWSER"):
            pytest.fail(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _shot(page, path: Path, max_height: int = 2_400) -> None:
    """The page from its top, at most `max_height` pixels of it."""
    height = min(page.evaluate("document.documentElement.scrollHeight"), max_height)
    page.screenshot(path=str(path), full_page=True, clip={"x": 0, "y": 0, "width": 1280, "height": height})


def _login(browser, base: str, target: str = "/ui/", key: str = KEY):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=base)
    page = context.new_page()
    external: list[str] = []  # requests leaving the app, and console errors (a CSP violation is one)
    page.on("request", lambda req: req.url.startswith(base) or req.url.startswith("data:") or external.append(req.url))
    page.on("console", lambda msg: msg.type == "error" and external.append(f"console: {msg.text}"))
    page.goto(target)
    assert "/ui/login" in page.url  # no session yet: the login form
    page.fill("#key", key)
    page.click("form button[type=submit]")
    page.wait_for_load_state()
    cookie = next(c for c in context.cookies() if c["name"] == "distillguard_ui")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and key not in cookie["value"]
    return context, page, external


def test_charts_escape_every_label():
    from distillguard.serving import ui_charts as charts

    evil = '<script>alert("x")</script>'
    svgs = [charts.volume_svg([("2026-03-02T10:00", 3), ("2026-03-02T12:00", 1)], [("2026-03-02T11:00:00Z", evil)]),
            charts.share_bars_svg([charts.ShareRow(evil, 0.5, 0.1, f"/ui/{evil}")]),
            charts.graph_svg([charts.GraphNode(evil, 0.9, "block", f"/ui/accounts/{evil}"),
                              charts.GraphNode("b", 0.2, evil)], [(evil, "b", 2)]).svg,
            charts.map_svg([(0.0, 0.0, "organic"), (1.0, 1.0, evil)])]
    for svg in svgs:
        assert svg.startswith("<svg") and "<script" not in svg and "&lt;script&gt;" in svg
    nodes = [charts.GraphNode(f"a{i}", i / 300, "allow") for i in range(300)]
    drawing = charts.graph_svg(nodes, [(a.id, b.id, 1) for a in nodes for b in nodes if a.id < b.id], max_nodes=150)
    assert drawing.nodes_dropped == 150 and drawing.svg.count("<circle") == 150
    assert drawing.edges_total == 150 * 149 // 2 and drawing.edges_drawn <= 150 * 6
    assert drawing.svg.count("<line") == drawing.edges_drawn


def test_pages_need_a_key(world):
    server = world["server"]
    bare = httpx.Client(base_url=server.url, timeout=30)
    assert bare.get("/ui/").status_code == 401
    assert bare.get("/ui/accounts/x", headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = bare.get(f"/ui/accounts/{world['target'].account_id}", headers={"Accept": "text/html"})
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?next=%2Fui%2Faccounts%2F")
    assert bare.get("/ui/static/ui.css").status_code == 200  # the stylesheet holds no data
    assert bare.post("/ui/login", data={"key": "nope"}).status_code == 401
    r = bare.post("/ui/login", data={"key": OTHER_KEY, "next": "//evil.example/"})
    assert r.status_code == 303 and r.headers["location"] == "/ui/"  # no open redirect
    session = r.cookies["distillguard_ui"]
    for cookie, status in (("1.2.3", 401), (session[:-1] + ("0" if session[-1] != "0" else "1"), 401), (session, 200)):
        with httpx.Client(base_url=server.url, timeout=30, cookies={"distillguard_ui": cookie}) as c:
            assert c.get("/ui/").status_code == status, cookie
    assert bare.get("/ui/", headers=AUTH).status_code == 200
    assert bare.get("/ui/", headers={"x-api-key": KEY}).status_code == 200
    log = server.log_path.read_text()
    assert KEY not in log and OTHER_KEY not in log


def test_odd_account_ids_are_linked_and_their_pages_open(world):
    server = world["server"]
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as c:
        ranked = ""
        for n in range(1, 6):  # 124 accounts, 50 a page
            r = c.get("/ui/", params={"page": n})
            assert r.status_code == 200
            ranked += r.text
        for account in ODD_ACCOUNTS:
            href = f"/ui/accounts/{quote(account, safe='')}"
            assert f'href="{href}"' in ranked, account  # the ranked list links to it, encoded
            assert c.get(f"/v1/accounts/{quote(account, safe='')}").json()["account_id"] == account
            page = c.get(href)
            assert page.status_code == 200 and html.escape(account, quote=False) in page.text, (account, page.status_code)
    with httpx.Client(base_url=server.url, timeout=60) as browser:  # the login form sends it back to the same page
        href = f"/ui/accounts/{quote(ODD_ACCOUNTS[0], safe='')}"
        r = browser.get(href, headers={"Accept": "text/html"})
        assert r.status_code == 303 and r.headers["location"] == f"/ui/login?next={quote(href, safe='')}"
        r = browser.post("/ui/login", data={"key": KEY, "next": href})
        assert r.status_code == 303 and r.headers["location"] == href
        assert browser.get(href).status_code == 200


def test_analyst_walks_from_the_ranked_list_to_the_campaign(world, browser, shots):
    server, target = world["server"], world["target"]
    context, page, external = _login(browser, server.url)
    assert page.url.endswith("/ui/")
    assert page.locator("table.accounts tbody tr").count() >= 50  # a full first page
    assert "accounts match" in page.inner_text("#count")
    _shot(page, shots / "ranked.png")

    # filter by decision, then click into the flagged account
    page.select_option("select[name=decision]", target.decision)
    page.click("form.filters button[type=submit]")
    page.wait_for_url(re.compile(rf"decision={target.decision}"))
    assert set(page.locator("table.accounts .decision").all_inner_texts()) == {target.decision}
    page.locator(f'table.accounts a.acct[href="/ui/accounts/{target.account_id}"]').first.click()
    page.wait_for_url(f"**/ui/accounts/{target.account_id}")
    assert target.account_id in page.inner_text("h1") and target.decision in page.inner_text("h1")
    assert page.locator("svg.volume rect.bar").count() >= 1
    assert page.locator("svg.shares rect.bar-account").count() >= 1
    clusters = page.locator("#neighbours details.cluster")
    assert clusters.count() >= 1
    first = clusters.first
    assert first.locator("ul.examples li .prompt").count() >= 1
    assert first.locator("table.organic tbody tr td.n").count() >= 1  # organic neighbours, with distances
    others = page.locator("#neighbours table.others a.acct")
    assert others.count() >= 1  # other accounts' prompts near this one's, linked
    assert target.account_id not in others.all_inner_texts()
    assert page.locator("svg.map circle.pt.account").count() >= 1
    _shot(page, shots / "account.png")

    # its campaign: the hydra graph and the other members
    page.click("#campaign-link")
    page.wait_for_url(f"**/ui/campaigns/{target.component}*")
    nodes = page.locator("#hydra svg.graph circle.node")
    assert nodes.count() == min(target.component_size, 150)
    assert page.locator("#hydra svg.graph line.edge").count() >= 1
    members = page.locator("#members table a.acct").all_inner_texts()
    assert target.account_id in members and len(members) == min(target.component_size, 200)
    _shot(page, shots / "campaign.png")

    # a node of the graph leads to that member's page
    other = next(m for m in members if m != target.account_id)
    page.locator(f'#hydra a[href="/ui/accounts/{other}"]').click()
    page.wait_for_url(f"**/ui/accounts/{other}")

    # an organic cluster of the account, and the map of its campaign
    page.goto(f"/ui/accounts/{target.account_id}")
    page.locator("#neighbours details.cluster summary a").first.click()
    page.wait_for_url(re.compile(r"/ui/clusters/\d+$"))
    assert page.locator("table.accounts a.acct").count() >= 1
    _shot(page, shots / "cluster.png")
    page.goto(f"/ui/map?component={target.component}")
    assert page.locator("svg.map rect.density").count() >= 1 and page.locator("svg.map circle.pt.campaign").count() >= 1
    _shot(page, shots / "map.png")
    page.goto("/ui/campaigns")
    assert page.locator(f'table.campaigns a[href="/ui/campaigns/{target.component}"]').count() == 1
    assert not external, f"pages fetched from outside the app or logged errors: {external}"
    context.close()


def test_search_a_pasted_prompt_finds_its_account(world, browser, shots):
    server, target = world["server"], world["target"]
    context, page, _ = _login(browser, server.url, "/ui/search")
    assert page.url.endswith("/ui/search")
    page.fill("#q", world["search_prompt"])
    page.click("form.search button[type=submit]")
    page.wait_for_selector("table.hits")
    first = page.locator("table.hits tbody tr").first
    assert float(first.locator("td.n").inner_text()) < 0.05
    assert page.locator(f'table.hits a.acct[href="/ui/accounts/{target.account_id}"]').count() >= 1
    assert world["search_prompt"] not in page.url  # the pasted prompt travelled in the body
    _shot(page, shots / "search.png")
    context.close()


def test_every_page_is_served_with_a_strict_policy(world):
    # how fast pages answer is measured by bench/workbench_pages.py (10,000 accounts), not here
    server, target = world["server"], world["target"]
    pages = ["/ui/", f"/ui/?decision={target.decision}&page=1", f"/ui/accounts/{target.account_id}", "/ui/campaigns",
             f"/ui/campaigns/{target.component}", f"/ui/map?account={target.account_id}", "/ui/clusters/0"]
    for path in pages:
        r = server.client.get(path)
        assert r.status_code == 200, (path, r.text[:500])
        assert r.headers["content-security-policy"].startswith("default-src 'none'")
        assert r.headers["cache-control"] == "no-store"
    assert server.client.post("/ui/search", data={"q": world["search_prompt"]}).status_code == 200
    assert server.client.get("/ui/accounts/no-such-account").status_code == 404


def test_redaction_mode_shows_no_prompt_text(world, browser, shots):
    first, target = world["server"], world["target"]
    server = Server(world["root"], "redacted", log_level="info", champion_poll_s=0, ui_redact_prompts=True,
                    workbench_path=str(first.state / "workbench")).start(ready="/healthz")  # pages need no model
    try:
        context, page, _ = _login(browser, server.url, f"/ui/accounts/{target.account_id}")
        page.wait_for_url(f"**/ui/accounts/{target.account_id}")
        assert page.locator(".redact-badge").count() == 1
        seen = []
        for path in (f"/ui/accounts/{target.account_id}", f"/ui/campaigns/{target.component}", "/ui/clusters/0"):
            page.goto(path)
            seen += [page.content(), page.inner_text("body")]
        page.goto("/ui/search")
        page.fill("#q", world["search_prompt"])
        page.click("form.search button[type=submit]")
        page.wait_for_selector("table.hits")
        seen += [page.content(), page.inner_text("body")]
        hits = page.locator("table.hits .prompt").all_inner_texts()
        assert hits and all(h.startswith("[redacted ") for h in hits)
        page.goto(f"/ui/accounts/{target.account_id}")
        assert page.locator(".prompt.redacted").count() >= 1
        assert page.locator(".prompt:not(.redacted)").count() == 0
        assert re.search(r"\[redacted [0-9a-f]{12} · \d+ chars\]", page.content())
        page.locator("#neighbours").scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "account_redacted.png"))
        campaign_prompts = world["events"][world["events"]["account_id"].isin(
            [m.account_id for m in world["wb"].campaign(target.component).members])]["prompt"]
        texts = set(world["prompts"]) | {p for p in campaign_prompts.unique() if len(p) >= 20}
        leaked = [(i, p) for p in texts for i, content in enumerate(seen) if p in content or html.escape(p) in content]
        assert not leaked, f"prompt text on a redacted page (page, text): {leaked[:3]}"
        context.close()
        # the pages render in a process of their own, which follows the server down, even a kill -9
        children = _page_processes(server.proc.pid)
        assert len(children) == 1
        server.proc.kill()
        server.proc.wait(10)
        deadline = time.time() + 10
        while time.time() < deadline and any(Path(f"/proc/{pid}").exists() and "Z" not in
                                             Path(f"/proc/{pid}/stat").read_text().split()[2] for pid in children):
            time.sleep(0.1)
        assert not _page_processes(server.proc.pid)
    finally:
        server.stop()


ANALYST_KEY = "analyst-key-7f3c9a1e5b2d4c6f"


def test_analyst_sets_verdicts_from_the_account_and_campaign_pages(world, browser, shots):
    first, target = world["server"], world["target"]
    account_url = f"/ui/accounts/{target.account_id}"
    server = Server(world["root"], "verdicts_ui", log_level="info", champion_poll_s=0,
                    analyst_keys={"alice": ANALYST_KEY},
                    workbench_path=str(first.state / "workbench")).start(ready="/healthz")  # pages need no model
    try:
        def session(key: str) -> httpx.Client:
            r = httpx.post(f"{server.url}/ui/login", data={"key": key}, timeout=30)
            assert r.status_code == 303
            return httpx.Client(base_url=server.url, timeout=60, cookies={"distillguard_ui": r.cookies["distillguard_ui"]})

        # a gateway key's session sees no verdict form, and its posts are refused
        gateway = session(KEY)
        page_html = gateway.get(account_url).text
        assert "Log in with an analyst key to set verdicts" in page_html and 'name="csrf"' not in page_html
        assert gateway.post(f"{account_url}/verdict", data={"action": "organic"}).status_code == 403
        # an analyst session must send its page's CSRF token (another session's does not do)
        analyst, other = session(ANALYST_KEY), session(ANALYST_KEY)
        token = re.search(r'name="csrf" value="([0-9a-f]{64})"', analyst.get(account_url).text).group(1)
        other_token = re.search(r'name="csrf" value="([0-9a-f]{64})"', other.get(account_url).text).group(1)
        for data in ({"action": "organic"}, {"action": "organic", "csrf": other_token}):
            assert analyst.post(f"{account_url}/verdict", data=data).status_code == 403
        assert server.client.get("/v1/verdicts").json()["count"] == 0
        r = analyst.post(f"{account_url}/verdict", data={"action": "harvesting", "csrf": token})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "campaign"]

        # in the browser: confirm the account, see the gateway block it, undo
        context, page, external = _login(browser, server.url, account_url, key=ANALYST_KEY)
        page.wait_for_url(f"**{account_url}")
        page.fill("#verdict-campaign", "wrapper-x")
        page.fill("#verdict-note", "same wrapper as the campaign")
        page.click("#verdict-harvesting")
        page.wait_for_selector("#verdict-now .verdict.harvesting")
        assert "wrapper-x" in page.inner_text("#verdict-now") and "alice" in page.inner_text("#verdict-now")
        v = server.client.post("/v1/check", json={"account_id": target.account_id, "prompt": "hello"}).json()
        assert v["decision"] == "block" and v["reasons"][0] == "analyst verdict", v
        page.locator("#verdict").scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "account_verdict.png"))
        page.click("#verdict-undo")
        page.wait_for_selector("#verdict-now .verdict", state="detached")
        assert page.locator("table.verdict-history tbody tr").count() == 2
        v = server.client.post("/v1/check", json={"account_id": target.account_id, "prompt": "hello"}).json()
        assert "analyst verdict" not in v["reasons"] and v["analyst_verdict"] is None, v

        # the whole campaign at once, under one campaign name
        members = {m.account_id for m in world["wb"].campaign(target.component).members}
        page.goto(f"/ui/campaigns/{target.component}")
        page.fill("#verdict-campaign", "hydra-1")
        page.click("#verdict-harvesting")
        page.wait_for_selector(f"#verdict-now:has-text('{len(members)} harvesting')")
        listed = server.client.get("/v1/verdicts").json()["verdicts"]
        assert {v["account_id"] for v in listed} == members
        assert all(v["campaign"] == "hydra-1" and v["by"] == "alice" and v["via"] == "ui" for v in listed)
        other_member = min(members - {target.account_id})
        v = server.client.post("/v1/check", json={"account_id": other_member, "prompt": "hello"}).json()
        assert v["decision"] == "block" and v["analyst_verdict"]["campaign"] == "hydra-1", v
        page.goto(account_url)
        assert "hydra-1" in page.inner_text("#verdict-now")
        assert not external, f"pages fetched from outside the app or logged errors: {external}"
        context.close()
        assert ANALYST_KEY not in server.log_path.read_text()
    finally:
        server.stop()


def _page_processes(parent: int) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"distillguard.serving.ui_pages" in args and str(parent).encode() in args:
            found.append(int(cmdline.parent.name))
    return found
