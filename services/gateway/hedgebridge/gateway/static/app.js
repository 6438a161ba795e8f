// hedgebridge admin dashboard: a client of the gateway's /client WebSocket (no build step, no library).
// The token is kept in memory only: it is sent in the AUTH frame and never put in a URL or in storage.
// Fields at their default value are absent from the gateway's JSON (an empty list, "", 0, null): read them so.
// Streams: the first SUBSCRIBE asks for the last RECENT events of the topics kept in JetStream (orders,
// actions, alerts, trades, conflicts) and the last state of every account; after a dropped connection the
// page subscribes again with the last (epoch, seq) it saw of each topic and gets exactly what it missed.
// chart.js draws the latency chart, history.js runs the history view (both loaded before this file).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const FEED_MAX = 200;
  const RECENT = 50; // events of each stream topic shown when the page opens
  const CHART_POINTS = 300; // samples kept per hop (one per monitor report)
  const TOPICS = ["terminals", "balances", "positions", "prices", "trades", "orders", "actions", "alerts", "monitor", "consistency"];

  let ws = null;
  let beat = null;
  let token = null; // in memory only, for reconnecting after a dropped connection
  const RECONNECT = new Set([1001, 1006, 1011, 1013, 4001]); // gateway restart, network, fault, history unavailable, heartbeat (hidden tab)
  let nextId = 1;
  const cursors = new Map(); // stream topic -> {epoch, seq}: the last event seen (or CAUGHT_UP's cursor)
  const starting = new Set(); // topics whose start (history, snapshot) is still arriving
  let resumed = null; // after a reconnect: events replayed so far, shown in the status line
  const terminals = new Map(); // account -> row state
  const alerts = new Map(); // key -> ALERT (open ones)
  const alertSeq = new Map(); // key -> last seq seen
  const prices = new Map(); // symbol -> PRICE
  const latency = new Map(); // hop -> [{t, v: p50 ms}], oldest first
  const positions = new Map(); // account -> its open positions (the last POSITION_UPDATE)
  const conflicts = new Map(); // account|ticket|kind -> CONFLICT (the open ones, as the last status says)
  const rowAsks = new Map(); // requestId -> what a position row's button asked (close, modify)
  let consistency = null; // the last CONSISTENCY status
  let historyView = null;

  const text = (value) => (value === null || value === undefined ? "-" : String(value));
  const num = (value, digits = 2) => (typeof value === "number" ? value.toFixed(digits) : "-");
  const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "-");

  function setStatus(message) { $("status").textContent = message; }

  function login(event) {
    event.preventDefault();
    token = $("login-token").value.trim() || null;
    $("login-token").value = "";
    $("login-error").textContent = "";
    if (token) connect();
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    setStatus("connecting…");
    ws = new WebSocket(`${scheme}://${location.host}/client`, ["hedgebridge.v1"]);
    ws.onopen = () => ws.send(JSON.stringify({ type: "AUTH", token }));
    ws.onmessage = (msg) => onFrame(JSON.parse(msg.data));
    ws.onclose = (ev) => {
      clearInterval(beat);
      ws = null;
      const slow = ev.code === 1008 && ev.reason === "slow consumer"; // resumes from where it was
      if (token && (RECONNECT.has(ev.code) || slow) && !$("dashboard").hidden) {
        setStatus(`connection lost (${ev.code}); reconnecting…`);
        setTimeout(connect, 1000);
        return;
      }
      token = null;
      $("dashboard").hidden = true;
      $("login-panel").hidden = false;
      $("logout").hidden = true;
      setStatus("not connected");
      cursors.clear();
      if (ev.code !== 1000) $("login-error").textContent = `connection closed (${ev.code}) ${ev.reason || ""}`;
    };
  }

  function send(frame) { if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame)); }

  function onFrame(frame) {
    switch (frame.type) {
      case "CLIENT_WELCOME": return welcome(frame);
      case "HEARTBEAT":
        if (!frame.reply) send({ type: "HEARTBEAT", timestamp: new Date().toISOString(), seq: frame.seq || 0, reply: true });
        return;
      case "EVENT":
        if (frame.seq !== undefined) cursors.set(frame.topic, { epoch: frame.epoch, seq: frame.seq });
        return onEvent(frame.topic, frame.data, frame.seq, starting.has(frame.topic));
      case "CAUGHT_UP": return caughtUp(frame);
      case "RESYNC":
        addFeed("RESYNC", frame.topic, `${frame.reason}: ${frame.message}`);
        return;
      case "SLOW_CONSUMER":
        setStatus(`falling behind: ${frame.queued} of ${frame.limit} frames waiting`);
        addFeed("SLOW_CONSUMER", "", `${frame.queued} of ${frame.limit} frames waiting`);
        return;
      case "REPLY": return onReply(frame);
      case "HISTORY_PAGE": historyView.onPage(frame); return;
      case "ERROR": {
        if (historyView.onError(frame)) return;
        const problem = `${frame.code}: ${frame.message}${frame.field ? " (" + frame.field + ")" : ""}`;
        const asked = rowAsks.get(frame.refId);
        if (asked) { rowAsks.delete(frame.refId); $("positions-result").textContent = `${asked}: ${problem}`; }
        else $("order-result").textContent = problem;
        addFeed("ERROR", frame.code, frame.message);
        return;
      }
      default: return;
    }
  }

  function welcome(frame) {
    $("login-panel").hidden = true;
    $("dashboard").hidden = false;
    $("logout").hidden = false;
    setStatus(`connected as ${frame.subject} (${frame.role})`);
    let seq = 0;
    beat = setInterval(() => send({ type: "HEARTBEAT", timestamp: new Date().toISOString(), seq: ++seq }),
      Math.max(200, frame.heartbeatIntervalMs || 1000));
    // the first time: the recent history; after a reconnect: everything after the last event seen
    const resume = Object.fromEntries(cursors);
    resumed = cursors.size ? 0 : null;
    for (const topic of TOPICS) starting.add(topic);
    send({ type: "SUBSCRIBE", requestId: `s-${nextId++}`, topics: TOPICS, resume, recent: cursors.size ? 0 : RECENT });
  }

  function caughtUp(frame) {
    starting.delete(frame.topic);
    if (frame.epoch !== undefined && frame.seq !== undefined) cursors.set(frame.topic, { epoch: frame.epoch, seq: frame.seq });
    if (resumed !== null) {
      resumed += frame.replayed || 0;
      if (!starting.size) setStatus(`${$("status").textContent.split(";")[0]}; resumed, ${resumed} events replayed`);
    }
  }

  function row(account) {
    let t = terminals.get(account);
    if (!t) {
      t = { account, connected: null, positions: 0 };
      terminals.set(account, t);
      const option = document.createElement("option");
      option.value = account;
      $("accounts").appendChild(option);
      if (!$("order-account").value) $("order-account").value = account;
    }
    return t;
  }

  function onEvent(topic, data, seq, old) {
    const when = old ? data.timestamp || data.updatedAt || data.detectedAt || (data.event && data.event.timestamp) || "" : null;
    switch (data.type) {
      case "TERMINAL_STATUS": {
        const t = row(data.accountId);
        t.connected = data.status === "CONNECTED";
        t.gateway = data.gatewayId;
        t.reason = data.reason;
        break;
      }
      case "ACCOUNT_UPDATE": {
        const t = row(data.accountId);
        Object.assign(t, { balance: data.balance, equity: data.equity, marginLevel: data.marginLevel });
        if (t.connected === null) t.connected = true;
        break;
      }
      case "POSITION_UPDATE":
        row(data.accountId).positions = data.positions.length;
        positions.set(data.accountId, data.positions);
        renderPositions();
        break;
      case "PRICE": prices.set(data.symbol, data); renderPrices(); return;
      case "OPENED": case "CLOSED":
        addFeed(data.type, data.accountId, `${data.status} ticket ${text(data.mtTicket)} @ ${text(data.price)}${data.errorMessage ? " " + data.errorMessage : ""}`, seq, when);
        return;
      case "ORDER_RESULT": addFeed("ORDER_RESULT", data.accountId, orderText(data), seq, when); return;
      case "ACTION_STATE":
        addFeed("ACTION", (data.accountIds || []).join(","), `${data.kind} ${data.actionId} ${data.state}${data.message ? " " + data.message : ""}`, seq, when);
        return;
      case "CONFLICT":
        addFeed("CONFLICT", data.accountId, `${data.kind} ticket ${data.mtTicket} ${data.resolution || "REPORTED"}`, seq, when);
        if (!consistency || Date.parse(data.detectedAt) > Date.parse(consistency.timestamp)) conflicts.set(conflictKey(data), data);
        renderConflicts();
        return;
      case "CONSISTENCY":
        consistency = data;
        conflicts.clear();
        for (const c of data.conflicts || []) conflicts.set(conflictKey(c), c);
        renderConflicts();
        return;
      case "ALERT": onAlert(data, seq, when); return;
      case "MONITOR_REPORT": onReport(data); return;
      default: return;
    }
    renderTerminals();
  }

  function orderText(r) {
    const parts = [r.status, r.kind || "", r.symbol || "", r.side || "", r.volume !== undefined ? r.volume : ""];
    if (r.price !== undefined) parts.push("@ " + r.price);
    if (r.kind === "MODIFY") parts.push(`SL ${r.stopLoss || "none"} TP ${r.takeProfit || "none"}`); // 0 or absent: none
    if (r.code) parts.push(r.code);
    if (r.elapsedMs) parts.push(`${r.elapsedMs.toFixed(1)} ms`);
    return parts.filter((p) => p !== "").join(" ");
  }

  function onReply(frame) {
    const r = frame.result;
    const asked = rowAsks.get(frame.requestId);
    if (asked) {
      rowAsks.delete(frame.requestId);
      $("positions-result").textContent = `${asked}: ${orderText(r)}${r.message ? " — " + r.message : ""}`;
      return;
    }
    if (r.type === "ORDER_RESULT") $("order-result").textContent = `${r.actionId}: ${orderText(r)}`;
    else if (r.type === "ACTION_STATE") $("order-result").textContent = `${r.actionId}: ${r.state}`;
  }

  function onAlert(a, seq, when) {
    if ((alertSeq.get(a.key) || 0) >= a.seq) return; // a late transition of an alert already past it
    alertSeq.set(a.key, a.seq);
    if (a.state === "OPEN") alerts.set(a.key, a); else alerts.delete(a.key);
    addFeed(`ALERT ${a.state}`, a.accountId || "system", `${a.rule}: ${a.message}`, seq, when);
    renderAlerts();
  }

  function onReport(report) {
    alerts.clear();
    for (const a of report.alerts || []) {
      if ((alertSeq.get(a.key) || 0) <= a.seq) { alertSeq.set(a.key, a.seq); alerts.set(a.key, a); }
    }
    renderAlerts();
    for (const t of report.terminals || []) {
      const r = row(t.accountId);
      // fields at their default are absent from the wire: no open position, no margin in use, no round trip
      const seen = t.balance !== undefined; // the monitor has an ACCOUNT_UPDATE of this account
      Object.assign(r, {
        connected: t.connected, gateway: t.gatewayId, rtt: t.rttMs,
        balance: seen ? t.balance : r.balance,
        equity: seen ? t.equity : r.equity,
        marginLevel: seen ? t.marginLevel : r.marginLevel,
        positions: t.openPositions || 0,
      });
    }
    renderTerminals();
    renderLatency(report.hops || [], Date.parse(report.timestamp) || Date.now());
    const health = $("health");
    health.replaceChildren(...((report.health && report.health.checks) || []).map((c) => {
      const li = document.createElement("li");
      li.className = c.ok ? "ok" : "fail";
      li.textContent = `${c.name}: ${c.ok ? "ok" : "FAIL"}${c.detail ? " — " + c.detail : ""}`;
      return li;
    }));
  }

  function cells(tr, values) {
    tr.replaceChildren(...values.map(([value, cls]) => {
      const td = document.createElement("td");
      td.textContent = value;
      if (cls) td.className = cls;
      return td;
    }));
  }

  function renderTerminals() {
    const body = $("terminals").tBodies[0];
    const rows = [...terminals.values()].sort((a, b) => a.account.localeCompare(b.account));
    body.replaceChildren(...rows.map((t) => {
      const tr = document.createElement("tr");
      tr.dataset.account = t.account;
      const state = t.connected === null ? "unknown" : t.connected ? "connected" : "disconnected";
      cells(tr, [[t.account], [state, t.connected ? "up" : "down"], [num(t.balance)], [num(t.equity)],
        [num(t.marginLevel)], [text(t.positions)], [num(t.rtt, 3)], [text(t.gateway)]]);
      return tr;
    }));
  }

  function renderAlerts() {
    const body = $("alerts").tBodies[0];
    const open = [...alerts.values()].sort((a, b) => a.openedAt.localeCompare(b.openedAt));
    body.replaceChildren(...open.map((a) => {
      const tr = document.createElement("tr");
      tr.dataset.key = a.key;
      cells(tr, [[a.severity, `sev-${a.severity}`], [a.rule], [a.accountId || "system"], [time(a.openedAt)], [a.message]]);
      return tr;
    }));
    $("alerts-empty").hidden = open.length > 0;
  }

  function renderPrices() {
    const body = $("prices").tBodies[0];
    const rows = [...prices.values()].sort((a, b) => a.symbol.localeCompare(b.symbol));
    body.replaceChildren(...rows.map((p) => {
      const tr = document.createElement("tr");
      tr.dataset.symbol = p.symbol;
      cells(tr, [[p.symbol], [String(p.bid)], [String(p.ask)], [time(p.time)]]);
      return tr;
    }));
  }

  function renderLatency(hops, at) {
    const body = $("latency").tBodies[0];
    body.replaceChildren(...hops.map((h) => {
      const tr = document.createElement("tr");
      tr.dataset.hop = h.hop;
      cells(tr, [[h.hop], [String(h.count)], [num(h.lastMs, 3)], [num(h.p50Ms, 3)], [num(h.p99Ms, 3)], [num(h.maxMs, 3)]]);
      return tr;
    }));
    for (const h of hops) {
      const series = latency.get(h.hop) || [];
      if (!series.length || series[series.length - 1].t < at) series.push({ t: at, v: h.p50Ms || 0 });
      if (series.length > CHART_POINTS) series.shift();
      latency.set(h.hop, series);
    }
    const layout = window.HBChart.draw($("latency-chart"), latency);
    $("latency-legend").replaceChildren(...layout.series.map(({ name, color }) => {
      const li = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = color;
      li.append(swatch, name);
      li.dataset.hop = name;
      return li;
    }));
  }

  // --- positions: one row per open position, with its actions ----------------------------------------------

  // The buttons of a position row, in order: {id, label, run(position, accountId)}. Another action is one
  // more entry here (its button gets data-action=<id>).
  const POSITION_ACTIONS = [
    { id: "close", label: "Close", run: confirmClose },
    { id: "modify", label: "Modify", run: modifyStops },
  ];

  function renderPositions() {
    const rows = [];
    for (const [account, list] of [...positions.entries()].sort((a, b) => a[0].localeCompare(b[0]))) {
      for (const p of [...list].sort((a, b) => String(a.mtTicket).localeCompare(String(b.mtTicket)))) {
        const tr = document.createElement("tr");
        tr.dataset.account = account;
        tr.dataset.ticket = String(p.mtTicket);
        const profit = typeof p.profit === "number" ? p.profit : null;
        cells(tr, [[account], [String(p.mtTicket)], [p.symbol], [p.side], [String(p.volume)], [text(p.openPrice)],
          [text(p.stopLoss)], [text(p.takeProfit)], [text(p.currentPrice)],
          [num(profit), profit === null ? "" : profit < 0 ? "loss" : "gain"]]);
        const actions = document.createElement("td");
        actions.className = "row-actions";
        for (const action of POSITION_ACTIONS) {
          const button = document.createElement("button");
          button.type = "button";
          button.textContent = action.label;
          button.dataset.action = action.id;
          button.addEventListener("click", () => action.run(p, account));
          actions.appendChild(button);
        }
        tr.appendChild(actions);
        rows.push(tr);
      }
    }
    $("positions").tBodies[0].replaceChildren(...rows);
    $("positions-empty").hidden = rows.length > 0;
  }

  // a modal question; ``then`` runs only when the user confirms
  function confirmThen(question, okLabel, then) {
    const dialog = $("confirm");
    $("confirm-text").textContent = question;
    $("confirm-ok").textContent = okLabel;
    dialog.returnValue = "";
    dialog.onclose = () => { if (dialog.returnValue === "ok") then(); };
    dialog.showModal();
  }

  const described = (p, account) => `${p.side} ${p.volume} ${p.symbol}, ticket ${p.mtTicket}, on ${account}`;

  // a request about a position (CLOSE_ORDER, MODIFY_ORDER); its REPLY or ERROR shows under the table
  function sendForRow(p, account, what, body) {
    const requestId = `c-${nextId++}`;
    rowAsks.set(requestId, `${what} ticket ${p.mtTicket}`);
    Object.assign(body, { accountId: account, mtTicket: String(p.mtTicket) });
    if (p.positionId) body.positionId = p.positionId;
    $("positions-result").textContent = `${what} ticket ${p.mtTicket} sent…`;
    send({ type: "REQUEST", requestId, body });
  }

  function confirmClose(p, account) {
    confirmThen(`Close ${described(p, account)}?`, "Close position", () =>
      sendForRow(p, account, "close", { type: "CLOSE_ORDER", exitReason: "dashboard" }));
  }

  const PRICE = /^(\d+\.?\d*|\.\d+)$/; // a non-negative decimal number

  // the position's stops in a dialog, prefilled; MODIFY_ORDER with the ones changed (0 removes one)
  function modifyStops(p, account) {
    const fields = [["stopLoss", "modify-sl", "stop loss"], ["takeProfit", "modify-tp", "take profit"]];
    $("modify-text").textContent = `Stop loss and take profit of ${described(p, account)}`;
    for (const [key, id] of fields) $(id).value = p[key] ? String(p[key]) : "";
    $("modify-error").textContent = "";
    $("modify-form").onsubmit = (event) => {
      if (!event.submitter || event.submitter.value !== "ok") return; // cancelled
      const body = { type: "MODIFY_ORDER" };
      let problem = null;
      for (const [key, id, label] of fields) {
        const entered = $(id).value.trim();
        if (entered === "") continue; // kept
        if (!PRICE.test(entered)) { problem = `${label}: "${entered}" is not a price (a number, 0 or more)`; break; }
        if (Number(entered) !== (p[key] || 0)) body[key] = Number(entered);
      }
      if (!problem && !("stopLoss" in body || "takeProfit" in body)) problem = "nothing to change";
      if (problem) { event.preventDefault(); $("modify-error").textContent = problem; return; } // the dialog stays
      sendForRow(p, account, "modify", body);
    };
    $("modify").showModal();
  }

  // --- consistency: the last status and the open conflicts -------------------------------------------------

  const conflictKey = (c) => `${c.accountId}|${c.mtTicket}|${c.kind}`;

  function renderConflicts() {
    const line = $("consistency-status");
    if (consistency) {
      const n = consistency.openConflicts || 0, checked = consistency.accountsChecked || 0;
      line.textContent = `${consistency.consistent ? "consistent" : `${n} open conflict${n === 1 ? "" : "s"}`} — ` +
        `${checked} account${checked === 1 ? "" : "s"} checked at ${time(consistency.timestamp)}`;
      line.className = consistency.consistent ? "consistent" : "inconsistent";
    }
    const open = [...conflicts.values()].sort((a, b) => a.detectedAt.localeCompare(b.detectedAt));
    $("conflicts").tBodies[0].replaceChildren(...open.map((c) => {
      const tr = document.createElement("tr");
      tr.dataset.account = c.accountId;
      tr.dataset.ticket = c.mtTicket;
      cells(tr, [[c.kind, "down"], [c.accountId], [c.mtTicket], [text(c.symbol)], [text(c.expectedVolume)],
        [text(c.reportedVolume)], [c.resolution || "REPORTED"], [time(c.detectedAt)], [c.message || ""]]);
      return tr;
    }));
    $("conflicts-empty").hidden = open.length > 0;
  }

  // when: null for a live event (now), the event's own time for one from history ("" when it has none)
  function addFeed(kind, account, detail, seq, when = null) {
    const li = document.createElement("li");
    const at = when === null ? new Date().toLocaleTimeString() : when ? time(when) : "earlier";
    li.textContent = `${at} ${kind} ${account || ""} ${detail}`;
    li.dataset.kind = kind;
    if (seq !== undefined && seq !== null) li.dataset.seq = String(seq);
    if (when !== null) li.className = "history";
    const feed = $("feed");
    // newest on top, in the stream's order: topics replay one after another, so an event goes below the ones
    // of a higher sequence already shown
    let before = feed.firstChild;
    if (li.dataset.seq) {
      const n = Number(li.dataset.seq);
      while (before && before.dataset.seq && Number(before.dataset.seq) > n) before = before.nextSibling;
    }
    feed.insertBefore(li, before);
    while (feed.children.length > FEED_MAX) feed.lastChild.remove();
  }

  function submitOrder(event) {
    event.preventDefault();
    const volume = Number($("order-volume").value);
    const body = {
      type: "OPEN_ORDER",
      accountId: $("order-account").value.trim(),
      symbol: $("order-symbol").value.trim(),
      side: $("order-side").value,
      volume,
    };
    $("order-result").textContent = "sent…";
    send({ type: "REQUEST", requestId: `r-${nextId++}`, body });
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", login);
    $("order-form").addEventListener("submit", submitOrder);
    $("logout").addEventListener("click", () => { if (ws) ws.close(1000, "logged out"); });
    historyView = window.HBHistory.create({ $, send, nextId: () => nextId++ });
    window.HBChart.draw($("latency-chart"), latency);
  });
})();
