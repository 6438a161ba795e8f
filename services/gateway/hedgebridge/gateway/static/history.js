// hedgebridge admin dashboard: the history view. Asks the gateway for pages of the persisted events (HISTORY,
// oldest first, filtered by accounts, types and since), shows them, and exports what is shown as CSV (built
// here: RFC 4180 quoting, and text cells that a spreadsheet would run as a formula are prefixed with ').
"use strict";

window.HBHistory = (() => {
  const PAGE = 200;
  const UNITS_S = { w: 604800, d: 86400, h: 3600, m: 60, s: 1 };
  const COLUMNS = ["time", "type", "accounts", "kind", "symbol", "side", "volume", "price", "profit", "status", "code",
    "actionId", "positionId", "mtTicket", "message", "stream", "seq"];

  // "since" as the command line takes it: a duration back from now (90s, 15m, 1h30m, 2d, 1w) or an ISO 8601
  // time (UTC when it names no zone). Returns an ISO string, null when empty; throws on anything else.
  function parseSince(text, now = Date.now()) {
    const value = text.trim();
    if (!value) return null;
    if (/^(\d+(\.\d+)?[wdhms])+$/.test(value)) {
      let seconds = 0;
      for (const [, n, , unit] of value.matchAll(/(\d+(\.\d+)?)([wdhms])/g)) seconds += Number(n) * UNITS_S[unit];
      return new Date(now - seconds * 1000).toISOString();
    }
    let iso = value;
    if (!value.includes("T")) iso = `${value}T00:00:00Z`; // a date: its midnight, UTC
    else if (!/([zZ]|[+-]\d\d:?\d\d)$/.test(value)) iso = `${value}Z`;
    const ms = Date.parse(iso);
    if (Number.isNaN(ms)) throw new Error(`"${value}" is neither a duration (15m, 1h, 2d) nor an ISO 8601 time`);
    return new Date(ms).toISOString();
  }

  function fields(entry) {
    const d = entry.data || {};
    const pick = (...names) => { for (const n of names) if (d[n] !== undefined && d[n] !== null) return d[n]; return ""; };
    return {
      time: entry.time, type: entry.type, accounts: (entry.accounts || []).join(" "),
      kind: pick("kind", "rule"), symbol: pick("symbol"), side: pick("side"), volume: pick("volume", "reportedVolume"),
      price: pick("price"), profit: pick("profit"), status: pick("status", "state", "resolution"),
      code: pick("code", "errorCode", "retcode"), actionId: pick("actionId"), positionId: pick("positionId"),
      mtTicket: pick("mtTicket"), message: pick("message", "errorMessage"), stream: entry.stream, seq: entry.seq,
    };
  }

  function csvCell(value) {
    let text = value === null || value === undefined ? "" : String(value);
    if (typeof value === "string" && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
    return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
  }

  function toCsv(entries) {
    const lines = [COLUMNS.join(",")];
    for (const entry of entries) {
      const row = fields(entry);
      lines.push(COLUMNS.map((c) => csvCell(row[c])).join(","));
    }
    return lines.join("\r\n") + "\r\n";
  }

  function details(entry) {
    const f = fields(entry);
    const parts = [f.kind, f.status, f.symbol, f.side, f.volume, f.price !== "" ? `@ ${f.price}` : "",
      f.mtTicket !== "" ? `ticket ${f.mtTicket}` : "", f.code, f.message];
    return parts.filter((p) => p !== "").join(" ");
  }

  // ctx: {$, send(frame), nextId()}
  function create(ctx) {
    const { $ } = ctx;
    let entries = [];
    let query = null; // the filters of what is shown
    let cursor = null;
    let waiting = null; // requestId of the page asked

    function status(text, error = false) {
      $("history-status").textContent = text;
      $("history-status").className = error ? "error" : "muted";
    }

    function ask() {
      waiting = `h-${ctx.nextId()}`;
      ctx.send({ type: "HISTORY", requestId: waiting, ...query, limit: PAGE, ...(cursor ? { cursor } : {}) });
      $("history-more").hidden = true;
    }

    function load(event) {
      event.preventDefault();
      const accounts = $("history-account").value.split(",").map((a) => a.trim()).filter(Boolean);
      const types = [...document.querySelectorAll("input[name=history-type]:checked")].map((i) => i.value);
      let since;
      try { since = parseSince($("history-since").value); } catch (err) { status(err.message, true); return; }
      if (!types.length) { status("choose at least one type", true); return; }
      query = { types, ...(accounts.length ? { accounts } : {}), ...(since ? { since } : {}) };
      entries = [];
      cursor = null;
      $("history").tBodies[0].replaceChildren();
      $("history-export").disabled = true;
      status("loading…");
      ask();
    }

    function row(entry) {
      const tr = document.createElement("tr");
      tr.dataset.stream = entry.stream;
      tr.dataset.seq = String(entry.seq);
      tr.dataset.type = entry.type;
      for (const value of [new Date(entry.time).toLocaleString(), entry.type, (entry.accounts || []).join(", ") || "system", details(entry)]) {
        const td = document.createElement("td");
        td.textContent = value;
        tr.appendChild(td);
      }
      return tr;
    }

    function onPage(frame) {
      if (frame.requestId !== waiting) return true; // an answer to filters no longer shown
      waiting = null;
      const got = frame.entries || [];
      entries.push(...got);
      $("history").tBodies[0].append(...got.map(row));
      cursor = frame.nextCursor;
      $("history-export").disabled = entries.length === 0;
      if (frame.more && got.length === 0) { ask(); return true; } // a page that only scanned: go on
      $("history-more").hidden = !frame.more;
      const note = frame.expired ? "; some events expired before they were read" : "";
      status(`${entries.length} event${entries.length === 1 ? "" : "s"}${frame.more ? ", more to load" : ""}${note}`);
      return true;
    }

    function onError(frame) {
      if (frame.refType !== "HISTORY") return false;
      if (frame.refId === waiting) waiting = null;
      status(`${frame.code}: ${frame.message}${frame.field ? " (" + frame.field + ")" : ""}`, true);
      return true;
    }

    function more() { if (query && cursor && !waiting) ask(); }

    function exportCsv() {
      const blob = new Blob([toCsv(entries)], { type: "text/csv;charset=utf-8" });
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = `hedgebridge-history-${new Date().toISOString().replace(/[:.]/g, "-")}.csv`;
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 60000);
    }

    $("history-form").addEventListener("submit", load);
    $("history-more").addEventListener("click", more);
    $("history-export").addEventListener("click", exportCsv);
    return { onPage, onError };
  }

  return { create, parseSince, toCsv, COLUMNS };
})();
