"""The dashboard in a real headless Chromium against a real paid network
on loopback: every view loads without a console error and shows the
node's own values, a job submitted during the test appears and reaches
`done` without a reload, a wrong token is told clearly, the page works
from the keyboard, has no horizontal overflow on a phone, and its text
passes WCAG AA contrast in the light and the dark scheme."""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.sync_api import Page, ViewportSize, expect

from p2pc import ComputeNetwork

from .conftest import ARTEFACTS, Watched, testnet

PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1280, "height": 900}

# Every text element's contrast against what is behind it, composited
# from the root down; the WCAG 2 formula, 4.5:1 (3:1 for large text).
CONTRAST = """() => {
  const parse = (c) => {
    const m = c && c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, under) => {
    const a = top[3];
    return [0, 1, 2].map((i) => top[i] * a + under[i] * (1 - a)).concat(1);
  };
  const lum = (c) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
  };
  const behind = (el) => {
    const chain = [];
    for (let e = el; e; e = e.parentElement) chain.push(e);
    let bg = [255, 255, 255, 1];
    for (const e of chain.reverse()) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) bg = over(c, bg);
    }
    return bg;
  };
  const bad = [];
  let checked = 0;
  const seen = new Set();
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walk.nextNode()) {
    const text = walk.currentNode.textContent.trim();
    const el = walk.currentNode.parentElement;
    if (!text || !el || seen.has(el)) continue;
    seen.add(el);
    const box = el.getBoundingClientRect();
    const cs = getComputedStyle(el);
    if (!box.width || !box.height || cs.visibility === "hidden" || el.closest("title,desc,option,noscript")) continue;
    const bg = behind(el);
    const fg = over(parse(el instanceof SVGElement ? cs.fill : cs.color), bg);
    const [a, b] = [lum(fg), lum(bg)];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const size = parseFloat(cs.fontSize);
    const large = size >= 24 || (Number(cs.fontWeight) >= 700 && size >= 18.66);
    const need = large ? 3 : 4.5;
    checked++;
    if (ratio < need) bad.push(`${el.tagName.toLowerCase()} "${text.slice(0, 40)}": ${ratio.toFixed(2)} < ${need}`);
  }
  return { checked, bad };
}"""


def contrast_ok(page: Page, where: str) -> None:
    result: dict[str, Any] = page.evaluate(CONTRAST)
    assert result["checked"] > 10, f"{where}: only {result['checked']} text elements seen"
    assert not result["bad"], f"{where}: text below WCAG AA contrast: {result['bad']}"


def no_overflow(page: Page, where: str) -> None:
    widths = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], f"{where}: the page is {widths[0]} px wide on a {widths[1]} px screen"


def look(w: Watched, name: str) -> None:
    """Screenshots at desktop and phone width, the overflow check on the
    phone, and contrast in both colour schemes."""
    page = w.page
    for size, label in ((DESKTOP, "desktop"), (PHONE, "phone")):
        page.set_viewport_size(size)
        page.screenshot(path=str(ARTEFACTS / f"{name}-{label}.png"), full_page=True)
        if label == "phone":
            no_overflow(page, f"{name} on a phone")
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            contrast_ok(page, f"{name}, {label}, {scheme}")
        page.emulate_media(color_scheme="light")
    page.set_viewport_size(DESKTOP)


def api(node: Any, path: str) -> Any:
    r = httpx.get(f"{node.url}{path}", headers={"Authorization": f"Bearer {node.token}"}, timeout=30)
    r.raise_for_status()
    return r.json()


def test_a_wrong_token_is_told_clearly(network: Any, watched: Watched) -> None:
    page = watched.page
    page.goto(network.submitter.url + "/")
    expect(page.get_by_role("heading", name="This node's API token")).to_be_visible()
    page.get_by_role("textbox", name="Token").fill("0" * 64)
    page.get_by_role("button", name="Open the dashboard").click()
    alert = page.locator("#login-error")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("refused this token")
    expect(alert).to_contain_text("p2pctl node token")
    expect(page.get_by_role("textbox", name="Token")).to_be_focused()
    assert not watched.exceptions, watched.exceptions
    # The browser logs the refused call itself; nothing else may go wrong.
    assert all("401" in m for m in watched.console), watched.console
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / "wrong-token-desktop.png"))


def test_every_view_shows_the_nodes_values_and_a_job_goes_live(network: Any, watched: Watched) -> None:
    page = watched.page
    s = network.submitter
    page.goto(f"{s.url}/#token={s.token}")
    # The token leaves the address bar at once.
    expect(page).to_have_url(f"{s.url}/#overview")

    # Overview: the node's own values.
    expect(page.locator("#peer-id")).to_have_text(s.peer_id)
    balance = api(s, f"/v1/ledger/balance?account={s.public_key}")
    facts = page.locator("dl.facts")
    expect(facts).to_contain_text(f"{balance['available']:,}")
    status = api(s, "/v1/node")
    expect(facts).to_contain_text(status["version"])
    expect(page.locator("#live")).to_have_text("Live")
    expect(page.get_by_role("img", name="Peers' tasks run here, per minute")).to_be_visible()
    expect(page.get_by_role("heading", name="Health")).to_be_visible()
    look(watched, "overview")

    # Jobs: a job submitted now appears and reaches done with no reload.
    page.get_by_role("link", name="Jobs").click()
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible()
    page.evaluate("() => { window.__same_page = true; }")
    # The worker's own dashboard, open in another tab while its task runs.
    wn = network.worker
    worker = Watched(page.context.new_page())
    worker.page.goto(f"{wn.url}/#token={wn.token}")
    expect(worker.page.locator("#peer-id")).to_have_text(wn.peer_id)
    expect(worker.page.locator("#live")).to_have_text("Live")
    with ComputeNetwork(url=s.url, token=s.token) as net:
        hello = net.publish(testnet.guest("hello"), "hello", "1.0.0")
        job = net.submit(hello, "dashboard", to=network.worker.peer_id, max_price=3)
        row = page.locator(f'tr[data-job="{job.id}"]')
        expect(row).to_be_visible()
        expect(row.locator(".badge")).to_have_text("done")
        assert job.result(timeout=testnet.WAIT) == b"Hello, dashboard!"
    assert page.evaluate("() => window.__same_page === true"), "the page was reloaded"
    expect(row).to_contain_text(network.worker.peer_id[:8])
    look(watched, "jobs")
    # The task shows in the worker's chart as it ends, from the stream.
    ran = worker.page.get_by_role("img", name="Peers' tasks run here, per minute")
    expect(ran).to_have_accessible_description(re.compile(r"^1 done, 0 failed, 0 refused tasks"))
    # And after a reload too: the minute not yet in the history is replayed.
    worker.page.reload()
    expect(ran).to_have_accessible_description(re.compile(r"^1 done, 0 failed, 0 refused tasks"))
    assert not worker.exceptions and not worker.console, (worker.exceptions, worker.console)
    worker.page.close()

    # Click through: the tasks, the receipt and the output.
    row.get_by_role("link").click()
    expect(page).to_have_url(f"{s.url}/#jobs/{job.id}")
    expect(page.get_by_role("heading", name=f"Job {job.id}")).to_be_visible()
    tasks = api(s, f"/v1/jobs/{job.id}/tasks")
    escrow = tasks["tasks"][0]["escrow"]
    expect(page.get_by_role("region", name="Task attempts")).to_contain_text(escrow[:8])
    expect(page.locator("ol li")).to_have_count(len(tasks["receipts"]))
    page.get_by_role("button", name="Show the output").click()
    expect(page.get_by_label("The job's output")).to_have_text("Hello, dashboard!")
    look(watched, "job")

    # Ledger: the balance, this job's hold, the ops behind it.
    page.get_by_role("link", name="Ledger").click()
    expect(page.get_by_role("heading", name="Ledger")).to_be_visible()
    expect(page.locator("dl.facts")).to_contain_text(s.public_key)
    expect(page.get_by_role("region", name="Escrows this account is party to")).to_contain_text(escrow[:8])
    ops = page.get_by_role("region", name="The last ops that concern this account, newest first")
    expect(ops).to_contain_text("task_hold")
    expect(page.get_by_role("img", name="Balance over time")).to_be_visible()
    look(watched, "ledger")

    # Network: the peers, the worker's offer, its reputation.
    page.get_by_role("link", name="Network").click()
    expect(page.get_by_role("heading", name="Network", exact=True)).to_be_visible()
    peers = page.get_by_role("region", name="Peers connected now")
    expect(peers).to_contain_text(network.worker.peer_id)
    expect(peers).to_contain_text(network.arbiter.peer_id)
    expect(page.get_by_role("region", name="Workers' offers, cheapest first")).to_contain_text(
        network.worker.peer_id[:8]
    )
    expect(page.get_by_role("region", name="Workers this node has used, best first")).to_contain_text(
        network.worker.peer_id[:8]
    )
    expect(page.get_by_role("img", name="This node's price over time")).to_be_visible()
    look(watched, "network")

    assert not watched.exceptions, watched.exceptions
    assert not watched.console, watched.console


def test_the_views_are_reached_from_the_keyboard(network: Any, watched: Watched) -> None:
    page = watched.page
    s = network.submitter
    page.goto(f"{s.url}/#token={s.token}")
    expect(page.locator("#peer-id")).to_have_text(s.peer_id)
    page.locator("body").focus()
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.textContent") == "Network":
            break
    else:
        raise AssertionError("Tab never reached the Network link")
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{s.url}/#network")
    expect(page.get_by_role("link", name="Network")).to_have_attribute("aria-current", "page")
    expect(page.get_by_role("heading", name="Network", exact=True)).to_be_visible()
    # Forgetting the token brings the form back, focused.
    page.get_by_role("button", name="Forget token").press("Enter")
    expect(page.get_by_role("textbox", name="Token")).to_be_focused()
    assert not watched.exceptions, watched.exceptions
    assert not watched.console, watched.console
