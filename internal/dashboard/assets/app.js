// rhizome dashboard: reads GET /v1/status on this origin every second with the admin
// token and shows it. Every value from the node reaches the DOM as text (textContent,
// text nodes, element properties), never as markup.
"use strict";

const POLL_MS = 1000; // one status a second
const TIMEOUT_MS = 4000; // a status slower than this counts as the node being unreachable
const SPARK_MS = 60000; // the sparkline's window
const TOKEN_KEY = "rhizome.admin.token";
const SHORT_HASH = 16; // as `rhizome rollout status` prints bundle hashes
const LAST_REFUSALS = 5;
const LAST_RECORDS = 5;

const state = {
  token: "",
  gen: 0, // bumped on every token change: a poll of an older generation stops
  data: null, // the last status received
  at: null, // when it was received (Date)
  prev: null, // the sample before, for rates: {t, traffic, cache, stages, dns}
  rates: null, // rates over the last interval
  spark: [], // [{t, rps}] of the last SPARK_MS
  failingSince: null, // Date of the first failed poll in a row
};

// ---- DOM helpers: text only ----

function $(id) {
  return document.getElementById(id);
}

function add(parent, kid) {
  if (kid === null || kid === undefined || kid === false) return;
  if (kid instanceof Node) parent.appendChild(kid);
  else parent.appendChild(document.createTextNode(String(kid)));
}

function el(tag, cls, ...kids) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  for (const k of kids) add(e, k);
  return e;
}

function fill(id, ...kids) {
  const c = $(id);
  c.replaceChildren();
  for (const k of kids) add(c, k);
}

function empty(msg) {
  return el("div", "empty", msg);
}

// cell makes a <td>; v is text or a node, cls its classes, title a tooltip.
function cell(v, cls, title) {
  const td = el("td", cls || "", v);
  if (title) td.title = title;
  return td;
}

function num(v, extra) {
  return cell(v, "num" + (extra ? " " + extra : ""));
}

// table builds a table from header labels (a leading "#" marks a numeric column) and rows
// (arrays of cells, or {cells, cls}).
function table(heads, rows) {
  const t = el("table");
  const tr = el("tr");
  for (const h of heads) {
    const numeric = h.startsWith("#");
    tr.appendChild(el("th", numeric ? "num" : "", numeric ? h.slice(1) : h));
  }
  t.appendChild(el("thead", "", tr));
  const body = el("tbody");
  for (const r of rows) {
    const cells = Array.isArray(r) ? r : r.cells;
    const row = el("tr", Array.isArray(r) ? "" : r.cls || "");
    for (const c of cells) row.appendChild(c instanceof Node ? c : cell(c));
    body.appendChild(row);
  }
  t.appendChild(body);
  return t;
}

function badge(text, cls) {
  return el("span", "badge " + (cls || ""), text);
}

function line(...kids) {
  return el("div", "line", ...kids);
}

// ---- formatting ----

function fmtInt(n) {
  if (n === null || n === undefined) return "0";
  return Number(n).toLocaleString("en-US");
}

function fmtRate(r) {
  if (r === null || r === undefined) return "–";
  if (r === 0) return "0";
  if (r < 10) return r.toFixed(1);
  return Math.round(r).toLocaleString("en-US");
}

function fmtBytes(b) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = Number(b || 0);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return (i === 0 ? String(v) : v.toFixed(1)) + " " + units[i];
}

function fmtPct(x) {
  return (x * 100).toFixed(x >= 0.9995 || x === 0 ? 0 : 1) + "%";
}

function shortHash(h) {
  return h ? String(h).slice(0, SHORT_HASH) : "";
}

// parseTime returns a Date for a Go time in JSON, or null for none or the zero time.
function parseTime(s) {
  if (!s || String(s).startsWith("0001-")) return null;
  const d = new Date(s);
  return isNaN(d.getTime()) ? null : d;
}

function fmtClock(d) {
  const now = new Date();
  const t = d.toLocaleTimeString("en-GB", { hour12: false });
  return d.toDateString() === now.toDateString() ? t : d.toISOString().slice(0, 10) + " " + t;
}

function fmtAgo(d) {
  let s = Math.round((Date.now() - d.getTime()) / 1000);
  const future = s < 0;
  s = Math.abs(s);
  let out;
  if (s < 60) out = s + "s";
  else if (s < 3600) out = Math.floor(s / 60) + "m" + (s % 60) + "s";
  else if (s < 86400) out = Math.floor(s / 3600) + "h" + Math.floor((s % 3600) / 60) + "m";
  else out = Math.floor(s / 86400) + "d" + Math.floor((s % 86400) / 3600) + "h";
  return future ? "in " + out : out + " ago";
}

function fmtWhen(s) {
  const d = parseTime(s);
  return d ? fmtClock(d) + " (" + fmtAgo(d) + ")" : "";
}

// ---- token ----

function tokenFromFragment() {
  const h = location.hash.replace(/^#/, "");
  if (!h) return "";
  const t = new URLSearchParams(h).get("token") || "";
  // Out of the address bar and the history: the token stays in this tab's storage only.
  history.replaceState(null, "", location.pathname + location.search);
  return t.trim();
}

function saveToken(t) {
  try {
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch (e) {
    // Storage disabled: the token lives in this page only.
  }
}

function loadToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  } catch (e) {
    return "";
  }
}

function showAuth(why, isError) {
  const p = $("auth-why");
  p.textContent = why;
  p.className = isError ? "error-text" : "";
  $("auth").hidden = false;
  $("forget").hidden = !state.token;
  $("auth-token").focus();
}

function useToken(t) {
  state.token = t;
  state.gen++;
  saveToken(t);
  $("forget").hidden = !t;
  if (!t) return;
  $("auth").hidden = true;
  setConn("connecting", "");
  poll(state.gen);
}

// ---- polling ----

function setConn(text, cls) {
  const c = $("conn");
  c.textContent = text;
  c.className = "conn " + (cls || "");
}

async function poll(gen) {
  if (gen !== state.gen) return;
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), TIMEOUT_MS);
  let res, data;
  try {
    res = await fetch("/v1/status", {
      headers: { Authorization: "Bearer " + state.token, Accept: "application/json" },
      cache: "no-store",
      credentials: "omit",
      signal: ctrl.signal,
    });
    if (res.ok) data = await res.json();
  } catch (e) {
    clearTimeout(timer);
    if (gen !== state.gen) return;
    const why = res ? "unreadable status (" + e.message + ")" : "node unreachable";
    failed(why);
    later(gen);
    return;
  }
  clearTimeout(timer);
  if (gen !== state.gen) return;
  if (res.status === 401) {
    // Polling stops until the operator gives another token.
    state.gen++;
    setConn("token refused (401)", "error");
    markStale(true);
    showAuth("The node refused this token (401): it is wrong, or the node's token changed. Paste the one in admin.token.", true);
    return;
  }
  if (!res.ok) {
    failed("node answered " + res.status);
    later(gen);
    return;
  }
  try {
    if (!data || typeof data !== "object") throw new Error("not a JSON object");
    received(data);
  } catch (e) {
    // A status this page cannot read (a newer node, a bug here): say so and keep polling.
    failed("status not understood (" + e.message + ")");
  }
  later(gen);
}

function later(gen) {
  setTimeout(() => poll(gen), POLL_MS);
}

function failed(why) {
  if (!state.failingSince) state.failingSince = new Date();
  let text = why + " since " + fmtClock(state.failingSince) + ", retrying";
  if (state.at) text += "; data shown is from " + fmtClock(state.at) + " (stale)";
  setConn(text, "stale");
  markStale(true);
}

function markStale(on) {
  document.body.classList.toggle("stale", on && state.data !== null);
}

// rate returns (cur - prev) / dt, or null when there is no previous figure or the counter
// went down (the node restarted).
function rate(cur, prev, dt) {
  if (prev === undefined || prev === null || cur === undefined || cur === null || dt <= 0) return null;
  if (cur < prev) return null;
  return (cur - prev) / dt;
}

function received(data) {
  const now = performance.now();
  const b = data.bundle || null;
  const sample = {
    t: now,
    traffic: data.traffic || null,
    cache: data.cache || null,
    stages: (b && b.stages && b.stages.driver) || null,
    dns: (b && b.dns) || null,
  };
  const p = state.prev;
  let r = null;
  if (p) {
    const dt = (now - p.t) / 1000;
    r = { dt: dt, rps: null, classes: null, hitRatio: null, lookups: null, stages: {}, dnsQps: null, stageFailures: null };
    if (sample.traffic && p.traffic) {
      r.rps = rate(sample.traffic.requests, p.traffic.requests, dt);
      r.classes = (sample.traffic.responses || []).map((v, i) => rate(v, (p.traffic.responses || [])[i], dt));
      r.stageFailures = rate(sample.traffic.stage_failures, p.traffic.stage_failures, dt);
    }
    if (sample.cache && p.cache) {
      const dh = sample.cache.Hits - p.cache.Hits;
      const dm = sample.cache.Misses - p.cache.Misses;
      if (dh >= 0 && dm >= 0) {
        r.lookups = dh + dm;
        if (dh + dm > 0) r.hitRatio = dh / (dh + dm);
      }
    }
    if (sample.stages && p.stages) {
      for (const [name, c] of Object.entries(sample.stages)) {
        const o = p.stages[name];
        if (!o) continue;
        r.stages[name] = {
          runs: rate(c.runs, o.runs, dt),
          blocks: rate(c.blocks, o.blocks, dt),
          failures: rate(c.errors + c.timeouts + c.panics, o.errors + o.timeouts + o.panics, dt),
        };
      }
    }
    if (sample.dns && p.dns) r.dnsQps = rate(sample.dns.queries, p.dns.queries, dt);
  }
  if (r && r.rps !== null) state.spark.push({ t: now, rps: r.rps });
  state.spark = state.spark.filter((s) => now - s.t <= SPARK_MS);
  state.prev = sample;
  state.rates = r;
  state.data = data;
  state.at = new Date();
  state.failingSince = null;
  setConn("live · updated " + fmtClock(state.at), "live");
  markStale(false);
  $("main").hidden = false;
  render(data);
}

// ---- rendering ----

function render(d) {
  const b = d.bundle || null;
  renderHeader(d, b);
  renderTraffic(d);
  renderCache(d);
  renderMembers(b);
  renderRollout(b);
  renderOrigins(d);
  renderStages(d, b);
  renderSecurity(b);
  renderSites(d);
  renderDNS(b);
  renderRefused(b);
  $("version").textContent = d.version ? "config " + d.version : "";
}

function fact(dl, label, ...value) {
  dl.appendChild(el("div", "", el("dt", "", label), el("dd", "", ...value)));
}

function renderHeader(d, b) {
  $("node-name").textContent = b && b.node ? b.node : "rhizome";
  document.title = (b && b.node ? b.node + " · " : "") + "rhizome dashboard";
  const flags = $("node-flags");
  flags.replaceChildren();
  if (!b) add(flags, badge("proxy mode: not a mesh node", "dim"));
  if (b && b.draining) add(flags, badge("DRAINING: out of DNS answers", "warn"));
  const r = b && b.rollout;
  if (r && r.stopped && r.stopped.halted) add(flags, badge(r.stopped.rollback ? "ROLLED BACK" : "ROLLOUT HALTED", "bad"));
  if (r && r.watch && !r.watch.healthy) add(flags, badge("UNHEALTHY", "bad"));

  const dl = $("facts");
  dl.replaceChildren();
  if (b) {
    fact(dl, "region", b.region || "none set");
    fact(dl, "provider", b.provider || "none set");
    if (b.active) {
      const a = b.active;
      const since = parseTime(a.activated);
      const v = el("span", "", "serial " + a.serial + " · ");
      v.appendChild(el("span", "mono", shortHash(a.hash)));
      v.title = a.hash;
      if (since) add(v, " · since " + fmtClock(since) + " (" + fmtAgo(since) + ")");
      fact(dl, "bundle", v);
    } else {
      fact(dl, "bundle", el("span", "warn", "none yet: every request gets 421"));
    }
    if (b.pending) fact(dl, "pending", "serial " + b.pending.serial + (b.pending.waiting ? " · " + b.pending.waiting : ""));
  }
  fact(dl, "uptime", d.uptime || "");
  fact(dl, "updated", state.at ? fmtClock(state.at) : "");
}

function renderTraffic(d) {
  const t = d.traffic;
  const r = state.rates;
  document.querySelector(".traffic").hidden = !t;
  $("traffic-empty").hidden = !!t;
  if (!t) {
    $("traffic-empty").textContent = "this node reports no traffic counters";
    return;
  }
  const rps = $("rps");
  rps.textContent = fmtRate(r ? r.rps : null);
  rps.title = r ? "over the last " + r.dt.toFixed(1) + " s" : "needs two polls";

  const cls = r && r.classes ? r.classes : [null, null, null, null, null];
  const tr = el("tr");
  cls.forEach((v, i) => tr.appendChild(num(fmtRate(v), i === 4 && v > 0 ? "warn" : "")));
  $("classes").tBodies[0].replaceChildren(tr);

  const sfRate = r ? r.stageFailures : null;
  const h = el("tr");
  h.appendChild(num(fmtInt(t.requests)));
  h.appendChild(num(fmtInt(t.node_errors), t.node_errors > 0 ? "warn" : ""));
  h.appendChild(num(fmtInt(t.panics), t.panics > 0 ? "hot" : ""));
  h.appendChild(num(fmtInt(t.stage_failures), sfRate > 0 ? "hot" : t.stage_failures > 0 ? "warn" : ""));
  $("node-health").tBodies[0].replaceChildren(h);
  renderSpark();
}

function renderSpark() {
  const svg = $("spark");
  const NS = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  const now = performance.now();
  const pts = state.spark;
  const max = Math.max(1, ...pts.map((p) => p.rps));
  $("spark-max").textContent = pts.length ? "max " + fmtRate(max) + "/s" : "collecting";
  if (pts.length < 2) return;
  const xy = pts.map((p) => {
    const x = 300 - ((now - p.t) / SPARK_MS) * 300;
    const y = 46 - (p.rps / max) * 42;
    return x.toFixed(1) + "," + y.toFixed(1);
  });
  const area = document.createElementNS(NS, "polygon");
  area.setAttribute("points", xy[0].split(",")[0] + ",48 " + xy.join(" ") + " " + xy[xy.length - 1].split(",")[0] + ",48");
  svg.appendChild(area);
  const pl = document.createElementNS(NS, "polyline");
  pl.setAttribute("points", xy.join(" "));
  svg.appendChild(pl);
}

function renderCache(d) {
  const c = d.cache;
  if (!c) {
    fill("cache", empty("caching is off on this node"));
    return;
  }
  const r = state.rates;
  let ratio = "–";
  let title = "needs two polls";
  if (r && r.lookups === 0) {
    ratio = "no lookups";
    title = "no cache lookup in the last " + r.dt.toFixed(1) + " s";
  } else if (r && r.hitRatio !== null) {
    ratio = fmtPct(r.hitRatio);
    title = r.lookups + " lookups in the last " + r.dt.toFixed(1) + " s";
  }
  fill(
    "cache",
    table(
      ["#hit ratio (last interval)", "#hits", "#misses", "#memory objects", "#memory", "#disk objects", "#disk", "#evictions", "#purged"],
      [
        [
          cell(ratio, "num", title),
          num(fmtInt(c.Hits)),
          num(fmtInt(c.Misses)),
          num(fmtInt(c.MemoryObjects)),
          num(fmtBytes(c.MemoryBytes)),
          num(fmtInt(c.DiskObjects)),
          num(fmtBytes(c.DiskBytes)),
          num(fmtInt(c.Evictions)),
          num(fmtInt(c.Purged)),
        ],
      ],
    ),
  );
}

function stateClass(s) {
  switch (s) {
    case "alive":
    case "healthy":
      return "ok";
    case "suspect":
    case "ejected":
      return "warn";
    default:
      return "bad";
  }
}

function renderMembers(b) {
  if (!b) {
    fill("members", empty("not a mesh node (rhizome proxy mode): no members"));
    return;
  }
  const members = b.members || [];
  if (members.length === 0) {
    fill("members", empty("this node is not in a mesh: no members"));
    return;
  }
  const peers = {};
  for (const p of b.peers || []) peers[p.name] = p;
  const watch = b.rollout && b.rollout.watch;
  const rows = members.map((m) => {
    const self = m.name === b.node;
    const meta = m.meta || {};
    let serial, health, draining;
    if (self) {
      serial = b.active ? String(b.active.serial) : "none";
      health = watch && !watch.healthy ? cell("this node · unhealthy", "bad", watch.reason || "") : cell("this node", "ok");
      draining = b.draining;
    } else if (peers[m.name]) {
      const p = peers[m.name];
      serial = p.serial ? String(p.serial) : "none";
      if (p.error) health = cell("report not believed", "bad", p.error);
      else if (!p.bundle) health = cell("no report yet", "dim");
      else health = p.healthy ? cell("healthy", "ok") : cell("unhealthy", "bad");
      draining = p.draining;
    } else {
      serial = "";
      health = cell(m.state === "alive" ? "no report" : "no report (" + m.state + ")", "dim");
      draining = null;
    }
    const since = parseTime(m.since);
    return {
      cls: (self ? "self " : "") + (m.state === "dead" || m.state === "left" ? "down" : ""),
      cells: [
        m.name,
        cell(m.state, stateClass(m.state)),
        meta.region || "",
        meta.provider || "",
        num(serial),
        health,
        draining === null ? cell("", "dim") : draining ? cell("draining", "warn") : cell("no", "dim"),
        cell(m.addr, "mono"),
        since ? cell(fmtAgo(since), "", fmtClock(since)) : "",
      ],
    };
  });
  fill("members", table(["name", "state", "region", "provider", "#serial", "health", "draining", "address", "state since"], rows));
}

function renderRollout(b) {
  const r = b && b.rollout;
  if (!r || r.state === "none" || !r.bundle) {
    fill("rollout", empty(b ? "no rollout in progress: this node holds no bundle" : "no rollout in progress: not a mesh node"));
    return;
  }
  const waves = r.waves || [];
  const complete = r.state === "active" && waves.every((w) => (w.members || []).every((m) => m.running));
  const halted = !!(r.stopped && r.stopped.halted);
  const kids = [];
  const head = line(
    "serial " + r.serial + " · ",
    el("span", "mono", shortHash(r.bundle)),
    " · ",
    badge(r.state, r.state === "active" ? "ok" : r.state === "pending" ? "warn" : "bad"),
  );
  kids.push(head);
  if (complete) kids.push(line(el("span", "ok", "no rollout in progress: every member runs serial " + r.serial)));
  if (r.stopped && r.stopped.reason) kids.push(line(el("span", "bad", (r.stopped.rollback ? "rolled back: " : "halted: ") + r.stopped.reason)));
  if (!complete) kids.push(line("this node is in wave " + r.wave + (r.waiting ? "; waiting: " + r.waiting : "")));
  const w = r.watch || {};
  if (w.bundle) {
    if (!w.healthy) kids.push(line(el("span", "bad", "this node: unhealthy on " + shortHash(w.bundle) + ": " + (w.reason || ""))));
    else if (!w.done) kids.push(line("this node: healthy so far on " + shortHash(w.bundle) + ", " + (w.left || "") + " of watch left"));
  }
  if (w.last_unhealthy) kids.push(line(el("span", "warn", "this node was " + w.last_unhealthy)));

  const rows = waves.map((wv, i) => {
    const ms = wv.members || [];
    const running = ms.filter((m) => m.running).length;
    let st;
    if (ms.length === 0) st = cell("no members", "dim");
    else if (running === ms.length) st = cell("done", "ok");
    else if (halted) st = cell("halted", "bad");
    else if (running > 0) st = cell("in progress", "warn");
    else st = cell("waiting", "dim");
    const chips = el("div", "chips");
    for (const m of ms) {
      const c = el("span", "chip" + (m.running ? (m.healthy ? " run" : " sick") : ""), m.name);
      c.title = m.running ? "runs it" + (m.for ? " for " + m.for : "") + (m.healthy ? ", healthy" : ", unhealthy") : "does not run it yet";
      chips.appendChild(c);
    }
    if (ms.length === 0) add(chips, empty("none"));
    return { cls: i === r.wave ? "self" : "", cells: [num(String(i)), wv.target, wv.bake, num(running + "/" + ms.length), cell(chips, "wrap"), st] };
  });
  kids.push(waves.length ? table(["#wave", "target", "bake", "#run it", "members", "state"], rows) : empty("the bundle has no waves"));

  const recs = (r.records || []).slice(-LAST_RECORDS).reverse();
  if (recs.length) {
    kids.push(el("h3", "", "Control records (newest " + recs.length + ")"));
    kids.push(
      table(
        ["when", "kind", "what", "by", "reason"],
        recs.map((rc) => {
          let what = rc.serial ? "serial " + rc.serial : shortHash(rc.bundle);
          if (rc.kind === "killswitch") what = rc.stage + " (" + (rc.site || "all sites") + ") " + (rc.on ? "on" : "off");
          const at = rc.at ? new Date(rc.at) : null;
          return [at ? cell(fmtAgo(at), "", fmtClock(at)) : "", rc.kind, what, rc.kind === "unhealthy" ? "node " + rc.node : "key " + rc.key_id, cell(rc.reason || "", "wrap")];
        }),
      ),
    );
  }
  fill("rollout", ...kids);
}

function renderOrigins(d) {
  const groups = d.upstreams || [];
  const rows = [];
  for (const g of groups) {
    for (const p of g.pools || []) {
      for (const o of p.origins || []) {
        const down = o.state !== "healthy";
        let stateCell = cell(o.state, stateClass(o.state));
        if (o.state === "ejected" && parseTime(o.ejected_until)) stateCell = cell(o.state + " until " + fmtClock(parseTime(o.ejected_until)), "warn");
        let check;
        const lc = parseTime(o.last_check);
        if (!lc) check = cell("no active check", "dim");
        else if (o.last_check_ok) check = cell("ok " + fmtAgo(lc), "ok", fmtClock(lc));
        else check = cell("failed " + fmtAgo(lc) + (o.last_check_error ? ": " + o.last_check_error : ""), "bad wrap", fmtClock(lc));
        const site = g.panic_picks > 0 ? cell(g.key + " (" + fmtInt(g.panic_picks) + " panic picks)", "bad") : g.key;
        rows.push({
          cls: down ? "down" : "",
          cells: [
            site,
            p.name,
            cell(o.url, "mono"),
            stateCell,
            num(String(o.weight)),
            num(o.latency_ewma_ms > 0 ? o.latency_ewma_ms.toFixed(1) + " ms" : "none yet"),
            num(fmtInt(o.inflight)),
            num(fmtPct(o.error_rate || 0), o.error_rate > 0 ? "warn" : ""),
            num(fmtInt(o.requests)),
            num(fmtInt(o.failures), o.consecutive_failures > 0 ? "warn" : ""),
            check,
          ],
        });
      }
    }
  }
  if (rows.length === 0) {
    fill("origins", empty(groups.length ? "no origin in any pool" : "no origins: this node serves no site"));
    return;
  }
  fill("origins", table(["site", "pool", "origin", "state", "#weight", "#latency", "#in flight", "#error rate (60 s)", "#requests", "#failures", "last check"], rows));
}

function renderStages(d, b) {
  const st = b && b.stages;
  const sw = (b && b.kill_switches) || [];
  const on = sw.filter((s) => s.on);
  if (on.length) {
    fill(
      "switches",
      table(
        ["stage", "site", "set", "by key"],
        on.map((s) => {
          const at = s.at ? new Date(s.at) : null;
          return { cls: "down", cells: [cell(s.stage, "bad"), s.site || "all sites", at ? cell(fmtAgo(at), "", fmtClock(at)) : "", cell(s.key_id, "mono")] };
        }),
      ),
    );
  } else {
    fill("switches", empty(b ? "no kill switch on" + (sw.length ? " (" + sw.length + " set off)" : "") : "not a mesh node: no kill switches"));
  }
  if (!st) {
    fill("stages", empty("no request stages on this node"));
    return;
  }
  const names = Object.keys(st.driver || {}).sort();
  const r = state.rates;
  const kids = [];
  const sf = d.traffic ? d.traffic.stage_failures : 0;
  if (sf > 0) {
    const sfr = r ? r.stageFailures : null;
    kids.push(line(el("span", sfr > 0 ? "bad" : "warn", fmtInt(sf) + " stage failures since start" + (sfr > 0 ? ", " + fmtRate(sfr) + "/s now" : ""))));
  }
  if (names.length === 0) {
    kids.push(empty("no stage has counted anything yet"));
  } else {
    const rows = names.map((n) => {
      const c = st.driver[n];
      const rr = (r && r.stages[n]) || {};
      const hot = (v) => (rr.failures > 0 && v > 0 ? "hot" : v > 0 ? "warn" : "");
      return [
        n,
        num(fmtRate(rr.runs)),
        num(fmtRate(rr.blocks)),
        num(fmtInt(c.runs)),
        num(fmtInt(c.blocks)),
        num(fmtInt(c.errors), hot(c.errors)),
        num(fmtInt(c.timeouts), hot(c.timeouts)),
        num(fmtInt(c.panics), hot(c.panics)),
        num(fmtInt(c.bypasses), c.bypasses > 0 ? "warn" : ""),
      ];
    });
    kids.push(table(["stage", "#runs/s", "#blocks/s", "#runs", "#blocks", "#errors", "#timeouts", "#panics", "#bypasses"], rows));
  }
  fill("stages", ...kids);
}

function renderSecurity(b) {
  const st = b && b.stages;
  if (!st) {
    fill("bots", empty("no request stages on this node"));
    fill("waf");
    fill("ratelimit");
    return;
  }
  const bots = st.bots || {};
  const classes = Object.keys(bots).sort();
  fill(
    "bots",
    el("h3", "", "Bot classes"),
    classes.length
      ? table(
          ["class", "#seen", "#verified", "#blocked"],
          classes.map((k) => [k, num(fmtInt(bots[k].seen)), num(fmtInt(bots[k].verified)), num(fmtInt(bots[k].blocked), bots[k].blocked > 0 ? "warn" : "")]),
        )
      : empty("no request classified yet"),
  );
  const w = st.waf || {};
  fill(
    "waf",
    el("h3", "", "WAF"),
    table(
      ["#inspected", "#blocked", "#detected", "#over limit", "#too large", "#read errors", "#oversized"],
      [[w.inspected, w.blocked, w.detected, w.over_limit, w.too_large, w.read_errors, w.oversized].map((v) => num(fmtInt(v)))],
    ),
  );
  const rl = st.ratelimit || {};
  fill("ratelimit", el("h3", "", "Rate limit"), table(["#keys", "#blocked", "#logged"], [[num(fmtInt(rl.keys)), num(fmtInt(rl.blocked)), num(fmtInt(rl.logged))]]));
}

function renderSites(d) {
  const sites = d.sites || [];
  if (sites.length === 0) {
    fill("sites", empty("no sites: this node has no bundle yet, or its bundle serves none"));
    return;
  }
  fill(
    "sites",
    table(
      ["site", "hosts", "pools", "cache"],
      sites.map((s) => [s.name, cell((s.hosts || []).join(", "), "wrap"), cell((s.pools || []).join(", "), "wrap"), s.cache ? cell("on", "ok") : cell("off", "dim")]),
    ),
  );
}

function renderDNS(b) {
  const s = b && b.dns;
  if (!s) {
    fill("dns", empty("no DNS on this node"));
    return;
  }
  const r = state.rates;
  fill(
    "dns",
    table(
      ["#queries/s", "#queries", "#refused", "#nxdomain", "#nodata", "#fail open", "#truncated", "#rate limited"],
      [
        [
          num(fmtRate(r ? r.dnsQps : null)),
          num(fmtInt(s.queries)),
          num(fmtInt(s.refused)),
          num(fmtInt(s.nxdomain)),
          num(fmtInt(s.nodata)),
          num(fmtInt(s.fail_open), s.fail_open > 0 ? "warn" : ""),
          num(fmtInt(s.truncated)),
          num(fmtInt(s.rate_limited)),
        ],
      ],
    ),
  );
}

function renderRefused(b) {
  const list = ((b && b.refused) || []).slice(-LAST_REFUSALS).reverse();
  if (list.length === 0) {
    fill("refused", empty(b ? "no bundle refused" : "not a mesh node: takes no bundles"));
    return;
  }
  fill(
    "refused",
    table(
      ["when", "#serial", "hash", "reason"],
      list.map((f) => {
        const at = parseTime(f.time);
        return [at ? cell(fmtAgo(at), "", fmtClock(at)) : "", num(f.serial ? String(f.serial) : ""), cell(shortHash(f.hash), "mono"), cell(f.reason, "wrap bad")];
      }),
    ),
  );
}

// ---- start ----

function init() {
  $("auth-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const t = $("auth-token").value.trim();
    $("auth-token").value = "";
    if (t) useToken(t);
  });
  $("forget").addEventListener("click", () => {
    useToken("");
    setConn("no token", "");
    showAuth("Token forgotten. Paste a token to read this node's status.", false);
  });
  // A link with another token opened in this tab changes the fragment only.
  window.addEventListener("hashchange", () => {
    const t = tokenFromFragment();
    if (t) useToken(t);
  });
  const t = tokenFromFragment() || loadToken();
  if (t) {
    useToken(t);
  } else {
    setConn("no token", "");
    showAuth("This page reads the node's status with its admin token. None was given: paste it here.", false);
  }
}

init();
