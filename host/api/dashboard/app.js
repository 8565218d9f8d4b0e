// The dashboard: four views of one node (overview, jobs, ledger,
// network), read from its /v1 API with the token and kept current by its
// event stream. Everything a peer or a job can name (job names, messages,
// findings) goes into the page as text, never as markup.

import { bars, line } from "./charts.js";

const TOKEN_KEY = "p2pc.token";
const VIEWS = ["overview", "jobs", "ledger", "network"];
/** Refreshes that events ask for are gathered for this long. */
const SETTLE_MS = 250;
/** Ranges of the charts, in minutes. */
const RANGES = [
  [60, "last hour"],
  [360, "last 6 hours"],
  [1440, "last 24 hours"],
];

const $ = (id) => document.getElementById(id);

/** An element with attributes and children (strings become text). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// ---- the API ----

class AuthError extends Error {}

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

let token = sessionStorage.getItem(TOKEN_KEY);

async function call(path, { raw = false } = {}) {
  let res;
  try {
    res = await fetch(path, { headers: { Authorization: `Bearer ${token}`, Accept: "application/json" } });
  } catch (e) {
    throw new ApiError(0, `the node did not answer (${e.message}); is it still running?`);
  }
  if (res.status === 401) throw new AuthError("the node refused this token");
  if (!res.ok) {
    let detail = res.statusText;
    try {
      const p = await res.json();
      detail = p.detail || p.title || detail;
    } catch {
      // Not a problem document: the status text says enough.
    }
    throw new ApiError(res.status, detail);
  }
  return raw ? res : res.json();
}

/** What the ledger routes answer on a node with no ledger (422). */
async function ledgerCall(path) {
  try {
    return await call(path);
  } catch (e) {
    if (e instanceof ApiError && e.status === 422) return { absent: e.message };
    throw e;
  }
}

// ---- what the page knows ----

const data = {
  node: null,
  price: null,
  balance: null,
  health: null,
  history: null,
  jobs: [],
  job: null,
  ops: null,
  holds: null,
  peers: [],
  offers: [],
  reputation: [],
};
let range = 60;
let view = "overview";
let detail = null;
const loaders = {
  node: async () => (data.node = await call("/v1/node")),
  price: async () => (data.price = await call("/v1/market/price")),
  balance: async () => (data.balance = await ledgerCall(`/v1/ledger/balance?account=${data.node.public_key}`)),
  health: async () => (data.health = await call("/v1/health")),
  history: async () => {
    data.history = await call("/v1/history");
    // What the history now holds is no longer the live minute's.
    const last = lastPoint();
    recent = recent.filter((e) => e.time_unix_ms > last);
  },
  jobs: async () => (data.jobs = (await call("/v1/jobs?limit=50")).jobs),
  job: async () => {
    if (!detail) return;
    const [job, tasks] = await Promise.all([call(`/v1/jobs/${detail}`), call(`/v1/jobs/${detail}/tasks`)]);
    data.job = { job, tasks };
  },
  ops: async () => (data.ops = await ledgerCall(`/v1/ledger/history?account=${data.node.public_key}&limit=50`)),
  holds: async () => (data.holds = await ledgerCall(`/v1/ledger/holds?account=${data.node.public_key}`)),
  peers: async () => (data.peers = await call("/v1/node/peers")),
  offers: async () => (data.offers = await call("/v1/market/offers")),
  reputation: async () => (data.reputation = await call("/v1/reputation")),
};
/** What each view shows, so only that is fetched. */
const NEEDS = {
  overview: ["node", "price", "balance", "health", "history"],
  jobs: ["node", "jobs", "job"],
  ledger: ["node", "balance", "history", "ops", "holds"],
  network: ["node", "peers", "offers", "reputation", "price", "history"],
};

/** The keys read at least once since the token was given. */
const loaded = new Set();

async function load(keys) {
  if (!data.node && !keys.includes("node")) keys = ["node", ...keys];
  // The node first: the ledger routes name its account.
  if (keys.includes("node")) await loaders.node();
  const rest = keys.filter((k) => k !== "node");
  await Promise.all(rest.map((k) => loaders[k]()));
  for (const k of keys) loaded.add(k);
}

async function show() {
  try {
    await load(NEEDS[view]);
    render();
    $("error").hidden = true;
  } catch (e) {
    failed(e);
  }
}

function failed(e) {
  if (e instanceof AuthError) {
    signOut("The node refused this token (401 Unauthorized). Run `p2pctl node token` on the node's machine and paste what it prints.");
    return;
  }
  const box = $("error");
  box.textContent = `Could not read the node: ${e.message}`;
  box.hidden = false;
  console.warn(e);
}

// ---- refreshes asked for by events ----

const pending = new Set();
let timer = null;

function refresh(...keys) {
  for (const k of keys) if (NEEDS[view].includes(k)) pending.add(k);
  if (pending.size && timer === null) {
    timer = setTimeout(async () => {
      const keys = [...pending];
      pending.clear();
      timer = null;
      try {
        await load(keys);
        render();
      } catch (e) {
        failed(e);
      }
    }, SETTLE_MS);
  }
}

// ---- the event stream ----

let socket = null;
let resume = null; // { epoch, seq }
let retry = 0;

function setLive(on, text) {
  const el = $("live");
  el.textContent = text;
  el.className = `live ${on ? "on" : "off"}`;
}

function connect() {
  if (socket) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  // The first time, every event kept: the tasks of the minute the history
  // has no point for yet are among them.
  const query = resume ? `?since=${resume.seq}&epoch=${encodeURIComponent(resume.epoch)}` : "?since=0";
  const ws = new WebSocket(`${scheme}://${location.host}/v1/events${query}`, ["p2pc.events.v1", `bearer.${token}`]);
  socket = ws;
  let opened = false;
  ws.onopen = () => {
    opened = true;
    retry = 0;
    setLive(true, "Live");
  };
  ws.onmessage = (m) => {
    let event;
    try {
      event = JSON.parse(m.data);
    } catch {
      return;
    }
    if (resume && resume.epoch !== event.epoch) refresh(...NEEDS[view]);
    resume = { epoch: event.epoch, seq: event.seq };
    apply(event);
  };
  ws.onclose = (c) => {
    socket = null;
    if (!token) return;
    if (!opened) {
      // Refused (a resume too old, a restarted node): start from now and
      // read everything again, so nothing missed stays unseen.
      resume = null;
      refresh(...NEEDS[view]);
    }
    const wait = Math.min(30000, 500 * 2 ** retry++);
    setLive(false, c.code === 4008 ? "Fell behind; catching up…" : `Reconnecting in ${Math.round(wait / 1000)} s…`);
    setTimeout(connect, wait);
  };
}

function apply(event) {
  switch (event.type) {
    case "job_state": {
      const row = data.jobs.find((j) => j.id === event.job);
      if (row) {
        row.status = { ...row.status, state: event.state };
        if (view === "jobs") render();
      }
      refresh("jobs", "node", "balance", "holds");
      if (event.job === detail) refresh("job");
      break;
    }
    case "task_state":
    case "progress":
      refresh("jobs");
      if (event.job === detail) refresh("job");
      break;
    case "task_ran":
    case "task_refused":
      if (event.time_unix_ms > lastPoint()) recent.push(event);
      refresh("node", "price");
      break;
    case "ledger_op":
      refresh("balance", "ops", "holds");
      break;
    case "peer_connected":
    case "peer_disconnected":
      refresh("node", "peers", "offers");
      break;
    case "health_finding":
    case "health_cleared":
      refresh("health");
      break;
    default:
      break;
  }
}

// ---- formatting ----

function ago(ms) {
  const s = Math.round((Date.now() - ms) / 1000);
  if (s < 0) return `in ${duration(-s)}`;
  return `${duration(s)} ago`;
}

function duration(secs) {
  if (secs < 60) return `${secs} s`;
  if (secs < 3600) return `${Math.floor(secs / 60)} min`;
  if (secs < 86400) return `${Math.floor(secs / 3600)} h ${Math.floor((secs % 3600) / 60)} min`;
  return `${Math.floor(secs / 86400)} d ${Math.floor((secs % 86400) / 3600)} h`;
}

function short(id) {
  return id && id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-6)}` : id ?? "–";
}

function num(n) {
  return n === null || n === undefined ? "–" : Number(n).toLocaleString("en");
}

const badge = (state) => h("span", { class: `badge ${state}` }, state);

function facts(items) {
  return h("dl", { class: "facts" },
    items.map(([label, value, extra, wide]) =>
      h("div", { class: wide ? "wide" : null }, h("dt", {}, label), h("dd", {}, value, extra ? [" ", h("small", {}, extra)] : []))));
}

function table(caption, headings, rows, empty) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h("div", { class: "scroll", tabindex: "0", role: "region", "aria-label": caption },
    h("table", {},
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, headings.map(([t, n]) => h("th", { scope: "col", class: n ? "num" : null }, t)))),
      h("tbody", {}, rows)));
}

const td = (v, cls) => h("td", { class: cls }, v);

function lastPoint() {
  const points = data.history?.points ?? [];
  return points.length ? points[points.length - 1].t_unix_ms : 0;
}

/** Peers' tasks seen on the stream since the history's last point. */
let recent = [];

/** The minute the history has no point for yet, from live events and
 * the figures read now. */
function livePoint() {
  const p = {
    t_unix_ms: Date.now(),
    tasks_ok: 0,
    tasks_failed: 0,
    tasks_refused: 0,
    fuel_used: 0,
    price: data.price ? (data.price.paid ? data.price.price : 0) : null,
    balance: data.balance && !data.balance.absent ? data.balance.available : null,
    peers: data.node ? data.node.peers : null,
  };
  for (const e of recent) {
    if (e.type === "task_refused") p.tasks_refused++;
    else if (e.outcome === "ok") p.tasks_ok++;
    else p.tasks_failed++;
    p.fuel_used += e.fuel_used ?? 0;
  }
  return p;
}

function since(minutes) {
  const points = [...(data.history?.points ?? []), livePoint()];
  const from = Date.now() - minutes * 60000;
  return points.filter((p) => p.t_unix_ms >= from);
}

function rangePicker() {
  const select = h("select", {
    id: "range",
    onchange: (e) => {
      range = Number(e.target.value);
      render();
      $("range")?.focus();
    },
  }, RANGES.map(([m, label]) => h("option", { value: m, selected: m === range }, label)));
  return h("div", { class: "toolbar" }, h("label", { for: "range" }, "Charts show the"), select);
}

// ---- views ----

function overview() {
  const n = data.node;
  const p = data.price;
  const b = data.balance;
  const busy = n.slots - n.free_slots;
  const ledger = b && !b.absent
    ? [
      ["Balance", num(b.available), "credits"],
      ["In escrow", num(b.held), "credits held"],
      ["Collateral", num(b.bonded), "credits bonded"],
      ["Pending", num(b.pending), "credits to come"],
    ]
    : [["Ledger", "none", "unpaid network"]];
  const points = since(range);
  const times = points.map((p) => p.t_unix_ms);
  const health = data.health;
  return [
    h("h2", {}, "Overview"),
    facts([
      ["Peer id", h("span", { class: "mono", id: "peer-id" }, n.peer_id), null, true],
      ["Version", n.version || "–"],
      ["Uptime", duration(n.uptime_secs)],
      ["Peers", num(n.peers), `${num(n.workers_known)} workers known`],
      ["Slots", `${busy} / ${n.slots}`, `busy, ${n.free_slots} free${n.draining ? ", draining" : ""}`],
      ["Price", p.paid ? num(p.price) : "free", p.paid ? `credits / Mfuel, heading to ${num(p.target)}` : "unpaid tasks"],
      ...ledger,
    ]),
    h("h2", {}, "Health ", health ? badge(health.status) : null),
    health && health.findings.length
      ? h("ul", { class: "findings" }, health.findings.map((f) =>
        h("li", {},
          h("p", {}, badge(f.severity), " ", h("strong", {}, f.summary)),
          h("p", { class: "what" }, `Evidence: ${f.evidence}`),
          h("p", {}, `What to do: ${f.action}`),
          h("p", { class: "what" }, `${f.check}${f.subject ? ` · ${f.subject}` : ""} · since ${ago(f.since_unix_ms)}`))))
      : h("p", { class: "empty" }, `No findings: ${health ? health.checks.length : 0} checks passed ${health ? ago(health.checked_unix_ms) : ""}.`),
    h("h2", {}, "Activity"),
    rangePicker(),
    h("div", { class: "charts" },
      bars("Peers' tasks run here, per minute", times, [
        { name: "done", cls: "ok", values: points.map((p) => p.tasks_ok) },
        { name: "failed", cls: "failed", values: points.map((p) => p.tasks_failed) },
        { name: "refused", cls: "refused", values: points.map((p) => p.tasks_refused) },
      ], "tasks"),
      bars("Fuel used, per minute", times, [
        { name: "fuel", cls: "ok", values: points.map((p) => p.fuel_used) },
      ], "fuel")),
  ];
}

function jobState(job) {
  return job.status?.state ?? "submitted";
}

function jobs() {
  if (detail) return jobDetail();
  const rows = data.jobs.map((j) => {
    const workers = [...new Set(j.tasks.map((t) => t.worker).filter(Boolean))];
    const fuel = j.tasks.reduce((a, t) => a + (t.fuel_used ?? 0), 0);
    const cost = j.tasks.reduce((a, t) => a + (t.cost ?? 0), 0);
    const attempts = j.tasks.reduce((a, t) => Math.max(a, t.attempt ?? 1), 0);
    return h("tr", { "data-job": j.id },
      td(h("a", { href: `#jobs/${j.id}`, class: "mono" }, short(j.id))),
      td(j.name),
      td(badge(jobState(j)), "state"),
      td(j.progress ? `${j.progress.done} / ${j.progress.total}` : "–", "num"),
      td(workers.map(short).join(", ") || "–", "mono"),
      td(num(attempts || null), "num"),
      td(num(fuel), "num"),
      td(num(cost), "num"),
      td(ago(j.submitted_unix_ms)));
  });
  return [
    h("h2", {}, "Jobs"),
    h("p", { class: "muted" }, "Jobs this node submitted, newest first, updated as their events arrive."),
    table("Jobs", [["Job"], ["Name"], ["State"], ["Progress", 1], ["Workers"], ["Attempts", 1], ["Fuel", 1], ["Cost", 1], ["Submitted"]],
      rows, "No jobs yet. Submit one with `p2pctl job submit` or the Python SDK."),
  ];
}

function jobDetail() {
  const d = data.job;
  if (!d || d.job.id !== detail) return [h("p", { class: "empty" }, "Loading the job…")];
  const { job, tasks } = d;
  const state = jobState(job);
  const s = job.status;
  const rows = tasks.tasks.map((t) => h("tr", {},
    td(t.step), td(num(t.attempt), "num"), td(badge(t.state)), td(short(t.worker), "mono"),
    td(t.outcome ?? "–"), td(num(t.fuel_used), "num"), td(num(t.cost), "num"), td(short(t.escrow), "mono"),
    td(t.message ?? "", "wrap")));
  const output = h("div", { id: "output" }, outputView(job.id, state));
  return [
    h("p", {}, h("a", { href: "#jobs" }, "← All jobs")),
    h("h2", {}, "Job ", h("span", { class: "mono" }, job.id)),
    facts([
      ["Name", job.name],
      ["State", badge(state), s?.outcome ?? s?.error ?? s?.reason ?? ""],
      ["Validation", job.validation || "none", job.unreplicated ? `${job.unreplicated} unreplicated` : ""],
      ["Input", `${num(job.input_len)} bytes`],
      ["Fuel", num(s?.fuel_used ?? tasks.tasks.reduce((a, t) => a + (t.fuel_used ?? 0), 0))],
      ["Cost", num(tasks.tasks.reduce((a, t) => a + (t.cost ?? 0), 0)), "credits"],
      ["Submitted", ago(job.submitted_unix_ms)],
      ["Bundle", h("span", { class: "mono" }, job.bundle), null, true],
    ]),
    s?.message ? h("p", { class: state === "done" ? "muted" : "problem" }, s.message) : null,
    h("h3", {}, "Tasks"),
    table("Task attempts", [["Step"], ["Attempt", 1], ["State"], ["Worker"], ["Outcome"], ["Fuel", 1], ["Cost", 1], ["Hold"], ["Message"]],
      rows, "No task has been placed yet."),
    h("h3", {}, "Receipts"),
    tasks.receipts.length
      ? h("ol", {}, tasks.receipts.map((r) => h("li", { class: "mono" }, `${r.slice(0, 48)}… (${num(r.length / 2)} bytes, signed)`)))
      : h("p", { class: "empty" }, "No receipt yet."),
    h("h3", {}, "Output"),
    output,
  ];
}

/** Outputs read so far, by job: what a re-render shows again. */
const outputs = new Map();
/** The most output shown as text; the rest is in the download. */
const PREVIEW = 65536;

function outputView(id, state) {
  const got = outputs.get(id);
  if (!got) {
    if (state !== "done") return h("p", { class: "empty" }, "No output: the job has not finished well.");
    return h("button", { type: "button", id: "show-output", onclick: () => readOutput(id) }, "Show the output");
  }
  if (got.error) return h("p", { class: "problem" }, `Could not read the output: ${got.error}`);
  return [
    got.text !== null
      ? h("pre", { class: "output", tabindex: "0", id: "output-text", "aria-label": "The job's output" }, got.text)
      : h("p", {}, `${num(got.length)} bytes, not text.`),
    got.length > PREVIEW ? h("p", { class: "muted" }, `The first 64 KiB of ${num(got.length)} bytes.`) : null,
    h("p", {}, h("a", { href: got.url, download: `${id}.out`, id: "download-output" }, "Download the output")),
  ];
}

async function readOutput(id) {
  try {
    const res = await call(`/v1/jobs/${id}/output`, { raw: true });
    const bytes = new Uint8Array(await res.arrayBuffer());
    let text;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(0, PREVIEW));
    } catch {
      text = null;
    }
    const url = URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" }));
    outputs.set(id, { text, length: bytes.length, url });
  } catch (e) {
    if (e instanceof AuthError) return failed(e);
    outputs.set(id, { error: e.message });
  }
  render();
  document.getElementById("output-text")?.focus();
}

function holdState(x) {
  if (x.final) return "final";
  if (x.settled) return "settled";
  return "open";
}

function decision(d) {
  if (!d) return "–";
  if (d === "refund" || d === "confirm") return d;
  if (typeof d === "object" && "pay" in d) return `pay ${num(d.pay)}`;
  return JSON.stringify(d);
}

function ledgerView() {
  const b = data.balance;
  if (!b || b.absent) {
    return [h("h2", {}, "Ledger"), h("p", { class: "empty" }, `This node keeps no ledger: ${b?.absent ?? "it has not joined a network's genesis file"}.`)];
  }
  const points = since(range);
  const times = points.map((p) => p.t_unix_ms);
  const holds = (data.holds?.holds ?? []).map((x) => h("tr", {},
    td(short(x.escrow), "mono"), td(badge(holdState(x))), td(short(x.worker), "mono"), td(short(x.arbiter), "mono"),
    td(num(x.amount), "num"), td(num(x.collateral), "num"),
    td(x.deadline_ms ? ago(x.deadline_ms) : "–"), td(decision(x.final ?? x.settled?.outcome)), td(short(x.task), "mono")));
  const ops = [...(data.ops?.ops ?? [])].reverse().map((o) => h("tr", {},
    td(ago(o.time_ms)), td(o.kind), td(short(o.author), "mono"),
    td(num(o.amount ?? o.price ?? null), "num"), td(short(o.to ?? o.worker ?? o.escrow), "mono"), td(o.status)));
  return [
    h("h2", {}, "Ledger"),
    facts([
      ["Account", h("span", { class: "mono" }, b.account), null, true],
      ["Available", num(b.available), "credits"],
      ["Balance", num(b.balance), b.incoming ? `+${num(b.incoming)} incoming` : ""],
      ["In escrow", num(b.held), "credits held"],
      ["Collateral", num(b.bonded), "credits bonded"],
      ["Pending", num(b.pending), "credits to come"],
      ["Chain", num(b.seq), b.frozen ? "FROZEN: equivocated" : "ops"],
    ]),
    rangePicker(),
    h("div", { class: "charts" }, line("Balance over time", times, points.map((p) => p.balance), "credits")),
    h("h3", {}, "Holds"),
    table("Escrows this account is party to", [["Escrow"], ["State"], ["Worker"], ["Arbiter"], ["Amount", 1], ["Collateral", 1], ["Deadline"], ["Decision"], ["Task"]],
      holds, "No holds."),
    h("h3", {}, "Recent ops"),
    table("The last ops that concern this account, newest first", [["When"], ["Kind"], ["Author"], ["Amount / price", 1], ["To"], ["Status"]],
      ops, "No ops yet."),
  ];
}

function network() {
  const points = since(range);
  const times = points.map((p) => p.t_unix_ms);
  const peers = data.peers.map((p) => h("tr", {},
    td(p.peer_id, "mono wrap"), td(p.rtt_us === null || p.rtt_us === undefined ? "–" : `${(p.rtt_us / 1000).toFixed(1)} ms`, "num"),
    td(p.agent ?? "–"), td(p.addresses.map((a) => h("div", {}, a)), "mono")));
  const offers = data.offers.map((o) => h("tr", {},
    td(short(o.peer), "mono"), td(num(o.price), "num"), td(`${o.free_slots} / ${o.slots}`, "num"),
    td(`${(o.load_permille / 10).toFixed(0)} %`, "num"), td(num(o.collateral), "num"),
    td(o.executors.join(", ")), td(o.reputation === null || o.reputation === undefined ? "–" : o.reputation.toFixed(2), "num"),
    td([o.arbiter ? "arbiter" : null, o.draining ? "draining" : null].filter(Boolean).join(", ") || "–"),
    td(ago(o.expires_unix_ms))));
  const reps = data.reputation.map((r) => h("tr", {},
    td(short(r.peer), "mono"), td(r.score.toFixed(2), "num"), td(num(r.valid_run), "num"), td(r.trusted ? "yes" : "no"),
    td(num(r.success), "num"), td(num(r.replicated), "num"), td(num(r.timeout), "num"), td(num(r.cheat), "num")));
  return [
    h("h2", {}, "Network"),
    rangePicker(),
    h("div", { class: "charts" },
      line("This node's price over time", times, points.map((p) => p.price), "credits / Mfuel"),
      line("Peers connected", times, points.map((p) => p.peers), "peers")),
    h("h3", {}, "Peers"),
    table("Peers connected now", [["Peer"], ["Round trip", 1], ["Agent"], ["Addresses"]], peers, "No peers connected."),
    h("h3", {}, "Offers"),
    table("Workers' offers, cheapest first", [["Worker"], ["Price", 1], ["Free / slots", 1], ["Load", 1], ["Collateral", 1], ["Executors"], ["Reputation", 1], ["Also"], ["Expires"]],
      offers, "No offers heard yet."),
    h("h3", {}, "Reputation"),
    table("Workers this node has used, best first", [["Worker"], ["Score", 1], ["Valid run", 1], ["Trusted"], ["Verified", 1], ["Replicated", 1], ["Timeouts", 1], ["Cheats", 1]],
      reps, "No worker used yet."),
  ];
}

function render() {
  if (!data.node) return;
  if (!NEEDS[view].every((k) => loaded.has(k) || (k === "job" && !detail))) {
    $("view").replaceChildren(h("p", { class: "empty" }, "Loading…"));
    return;
  }
  const build = { overview, jobs, ledger: ledgerView, network }[view];
  // Keep the focused control focused across a re-render: found again by
  // its id, or a link by where it goes.
  const active = document.activeElement;
  const inView = active && $("view").contains(active);
  const id = inView ? active.id : null;
  const href = inView && active.tagName === "A" ? active.getAttribute("href") : null;
  $("view").replaceChildren(...build().flat().filter(Boolean));
  const again = id ? document.getElementById(id) : href ? $("view").querySelector(`a[href="${CSS.escape(href)}"]`) : null;
  again?.focus({ preventScroll: true });
}

// ---- navigation and the token ----

function route() {
  const hash = location.hash.replace(/^#/, "");
  const match = hash.match(/^token=([^&]+)/);
  if (match) {
    // A link with the token in its fragment (never sent to the server):
    // keep the token, drop it from the address bar and the history.
    token = decodeURIComponent(match[1]);
    sessionStorage.setItem(TOKEN_KEY, token);
    history.replaceState(null, "", "#overview");
    return route();
  }
  const [name, id] = hash.split("/");
  view = VIEWS.includes(name) ? name : "overview";
  detail = view === "jobs" && id ? id : null;
  if (!detail) data.job = null;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.view === view) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `p2pc node · ${view[0].toUpperCase()}${view.slice(1)}`;
  return true;
}

function signOut(message) {
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  socket?.close();
  socket = null;
  data.node = null;
  loaded.clear();
  $("view").replaceChildren();
  $("signout").hidden = true;
  $("error").hidden = true;
  const err = $("login-error");
  err.textContent = message ?? "";
  err.hidden = !message;
  $("login").hidden = false;
  setLive(false, "Not connected");
  $("token").focus();
}

async function start() {
  $("login").hidden = true;
  $("signout").hidden = false;
  try {
    await load(NEEDS[view]);
  } catch (e) {
    failed(e);
    return;
  }
  render();
  connect();
}

$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const given = $("token").value.trim();
  if (!given) return;
  token = given;
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token").value = "";
  start();
});
$("signout").addEventListener("click", () => signOut());
window.addEventListener("hashchange", () => {
  route();
  if (!token) return;
  render();
  show();
  $("main").focus({ preventScroll: true });
});
// Relative times and the charts' window move on even when nothing happens.
setInterval(() => {
  if (token && data.node) refresh("node", "history");
}, 30000);

route();
if (token) start();
else signOut();
