// halb's dashboard: the status every second from /api/v1/status, the events as they happen
// from /api/v1/events/stream (which also brings the next status forward). No libraries.
"use strict";

const HISTORY = 60;          // rate points kept per real server (one a second)
const CHECK_HISTORY = 30;    // verdicts kept per checker
const TIMELINE = 300;        // events kept on the page

const rates = new Map();     // "service|dest" -> [{t, conns}]
const verdicts = new Map();  // "vs/rs/checker" -> [true|false]
let snapshot = null;
let soon = null;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function keyText(key) {
  if (key.Addr) return `${key.Addr.protocol.toUpperCase()} ${key.Addr.addr}`;
  if (key.Fwmark) return `FWM ${key.Fwmark.mark}`;
  return JSON.stringify(key);
}

function keyIp(key) {
  if (!key.Addr) return null;
  const a = key.Addr.addr;
  return a.startsWith("[") ? a.slice(1, a.indexOf("]")) : a.slice(0, a.lastIndexOf(":"));
}

function setLink(up, text) {
  const l = document.getElementById("link");
  l.className = "link " + (up ? "up" : "down");
  l.textContent = text;
}

async function refresh() {
  clearTimeout(soon);
  soon = null;
  try {
    const r = await fetch("/api/v1/status?connections=false", { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    snapshot = await r.json();
    render(snapshot);
  } catch (e) {
    setLink(false, "status: " + e.message);
  }
}

function refreshSoon() {
  if (soon === null) soon = setTimeout(refresh, 100);
}

// The VIPs this director holds now: those of its MASTER instances.
function heldVips(s) {
  const held = new Set();
  for (const v of s.vrrp) {
    if (v.state !== "MASTER") continue;
    for (const a of v.virtual_addresses) held.add(a.split("/")[0]);
  }
  return held;
}

function serving(vs, s, held) {
  if (s.vrrp.length === 0) return true;             // no VRRP: this host serves
  const ips = vs.services.map(keyIp).filter(Boolean);
  if (ips.length === 0) return s.vrrp.some(v => v.state === "MASTER");
  return ips.some(ip => held.has(ip));
}

function render(s) {
  document.getElementById("version").textContent = s.version;
  document.getElementById("dataplane").textContent = s.dataplane ? "data plane: " + s.dataplane : "";
  const now = Date.now() / 1000;

  const vrrp = document.querySelector("#vrrp tbody");
  vrrp.replaceChildren(...s.vrrp.map(v => el("tr", { "data-instance": v.name, "data-state": v.state },
    el("td", {}, v.name), el("td", {}, v.interface), el("td", {}, v.vrid),
    el("td", {}, el("span", { class: "state " + v.state }, v.state)),
    el("td", {}, v.effective_priority === v.priority ? v.priority : `${v.effective_priority} (base ${v.priority})`),
    el("td", {}, v.virtual_addresses.join(" ")),
    el("td", {}, v.last_master || ""))));
  if (s.vrrp.length === 0) vrrp.append(el("tr", {}, el("td", { colspan: 7 }, "no VRRP instance")));

  const dests = new Map();
  for (const svc of s.services) {
    const k = keyText(svc.key);
    for (const d of svc.dests) {
      dests.set(k + "|" + d.addr, d);
      const h = rates.get(k + "|" + d.addr) || [];
      if (h.length === 0 || now - h[h.length - 1].t >= 0.9) {
        h.push({ t: now, conns: d.counters.conns });
        if (h.length > HISTORY + 1) h.shift();
      }
      rates.set(k + "|" + d.addr, h);
    }
  }

  const held = heldVips(s);
  const writes = [];
  const box = document.getElementById("virtual-servers");
  box.replaceChildren(...s.virtual_servers.map(vs => {
    const here = serving(vs, s, held);
    const rows = vs.real_servers.map((rs, rsIndex) => {
      const ds = vs.services.map(k => [keyText(k), dests.get(keyText(k) + "|" + rs.addr)]).filter(([, d]) => d);
      const weight = ds.length ? Math.max(...ds.map(([, d]) => d.weight)) : null;
      const active = ds.reduce((n, [, d]) => n + d.active, 0);
      const inactive = ds.reduce((n, [, d]) => n + d.inactive, 0);
      const takes = here && rs.alive && weight !== null && weight > 0;
      if (takes) writes.push(`${rs.addr} (${vs.name})`);
      const canvas = el("canvas", { class: "spark", width: 120, height: 24 });
      drawRates(canvas, ds.map(([k]) => rates.get(k + "|" + rs.addr) || []));
      return el("tr", { class: rs.alive ? "up" : "down", "data-rs": rs.addr, "data-health": rs.alive ? "up" : "down" },
        el("td", {}, rs.addr, " ", takes ? el("span", { class: "badge writes", title: "in the pool of a virtual server this director serves" }, "takes writes") : null),
        el("td", { class: "health" }, rs.alive ? "UP" : "DOWN"),
        el("td", {}, weight === null ? "–" : weight),
        el("td", {}, `${active} / ${inactive}`),
        el("td", {}, canvas),
        el("td", {}, rs.checkers.map((c, ci) => el("div", { class: "checker " + (c.up ? "up" : "down") },
          c.kind, " ", history(`${vs.index}/${rsIndex}/${ci}`), " ",
          el("span", { class: "detail" }, c.detail)))));
    });
    return el("div", { class: "vs", "data-vs": vs.name },
      el("h3", {}, vs.name,
        vs.quorum_up ? null : el("span", { class: "badge quorum-down" }, "quorum down"),
        vs.sorry_server_active ? el("span", { class: "badge sorry" }, "sorry server in") : null,
        here ? null : el("span", { class: "detail" }, "VIP not on this director")),
      el("table", {},
        el("thead", {}, el("tr", {}, ["real server", "health", "weight", "active / inactive", "connections/s", "checkers"].map(h => el("th", {}, h)))),
        el("tbody", {}, rows)));
  }));
  if (s.virtual_servers.length === 0) box.append(el("p", { class: "detail" }, "no virtual server"));

  const w = document.getElementById("writes");
  if (writes.length) w.textContent = "Takes writes through this director: " + writes.join(", ");
  else if (s.virtual_servers.length) w.textContent = "No real server takes writes through this director" +
    (s.vrrp.length && !s.vrrp.some(v => v.state === "MASTER") ? " (it holds no VIP: the other director serves)" : "");
  else w.textContent = "";
}

function history(key) {
  const h = verdicts.get(key) || [];
  return el("span", { class: "history", title: "last verdicts, oldest first" }, h.map(up => el("i", { class: up ? "up" : "down" })));
}

// Connections per second over the last minute, the services of one real server summed.
function drawRates(canvas, histories) {
  const ctx = canvas.getContext("2d");
  const points = [];
  for (let i = 1; i < HISTORY + 1; i++) {
    let sum = 0, any = false;
    for (const h of histories) {
      const j = h.length - HISTORY - 1 + i;
      if (j >= 1) { sum += Math.max(0, (h[j].conns - h[j - 1].conns) / Math.max(0.001, h[j].t - h[j - 1].t)); any = true; }
    }
    points.push(any ? sum : null);
  }
  const max = Math.max(1, ...points.filter(p => p !== null));
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.strokeStyle = "#0969da";
  ctx.beginPath();
  let started = false;
  points.forEach((p, i) => {
    if (p === null) return;
    const x = i * (canvas.width - 1) / (HISTORY - 1), y = canvas.height - 1 - p / max * (canvas.height - 2);
    if (started) ctx.lineTo(x, y); else { ctx.moveTo(x, y); started = true; }
  });
  ctx.stroke();
  const last = points[points.length - 1];
  canvas.title = last === null ? "" : `${last.toFixed(1)} connections/s (max ${max.toFixed(1)})`;
}

function timeline(record) {
  if (record.type === "checker") {
    const d = record.data;
    const key = `${d.virtual_server}/${d.real_server_index}/${d.checker}`;
    const h = verdicts.get(key) || [];
    h.push(d.up);
    if (h.length > CHECK_HISTORY) h.shift();
    verdicts.set(key, h);
  }
  const list = document.getElementById("timeline");
  const at = new Date(record.at_ms);
  list.prepend(el("li", { class: record.type, "data-seq": record.seq, "data-type": record.type },
    el("time", { datetime: at.toISOString() }, at.toLocaleTimeString()), record.text));
  while (list.children.length > TIMELINE) list.lastChild.remove();
}

function connect() {
  const es = new EventSource("/api/v1/events/stream?since=0");
  es.onopen = () => setLink(true, "live");
  es.onerror = () => setLink(false, "reconnecting…");
  for (const type of ["vrrp", "checker", "virtual_server", "daemon"]) {
    es.addEventListener(type, m => {
      timeline(JSON.parse(m.data));
      refreshSoon();
    });
  }
}

connect();
refresh();
setInterval(refresh, 1000);
