// hedgebridge admin dashboard: the latency chart, a time-series line chart on a canvas (no library).
// x: the time of each monitor report, from the first sample kept to the last; y: milliseconds from 0, linear.
// Tick steps are "nice" (1, 2, 5 × 10^n ms; 1 s … 1 day) and as many as fit without labels touching.
// draw() returns (and puts in the canvas's data-layout) where it drew: the tests check the layout.
"use strict";

window.HBChart = (() => {
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
  const MARGIN = { left: 72, right: 24, top: 22, bottom: 36 };
  const FONT = "12px system-ui, sans-serif";
  const Y_LABEL_SPACING = 30; // px between y tick labels at least
  const X_LABEL_GAP = 28; // px between x tick labels at least
  const TIME_STEPS_S = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

  const color = (i) => COLORS[i % COLORS.length];

  function niceStep(range, maxTicks) {
    const raw = range / Math.max(1, maxTicks);
    const magnitude = 10 ** Math.floor(Math.log10(raw));
    for (const m of [1, 2, 5, 10]) if (m * magnitude >= raw) return m * magnitude;
    return 10 * magnitude;
  }

  const pad = (n) => String(n).padStart(2, "0");
  function clock(ms) {
    const d = new Date(ms);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function msLabel(value, step) {
    const digits = Math.min(3, Math.max(0, -Math.floor(Math.log10(step))));
    return `${value.toFixed(digits)} ms`;
  }

  // series: Map name -> [{t: epoch ms, v: ms}] (oldest first)
  function draw(canvas, series) {
    const ratio = window.devicePixelRatio || 1;
    const w = Number(canvas.dataset.width || canvas.width), h = Number(canvas.dataset.height || canvas.height);
    if (!canvas.dataset.width) {
      canvas.dataset.width = String(w);
      canvas.dataset.height = String(h);
      canvas.width = Math.round(w * ratio);
      canvas.height = Math.round(h * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = FONT;
    const plot = { left: MARGIN.left, top: MARGIN.top, right: w - MARGIN.right, bottom: h - MARGIN.bottom };
    const layout = { plot, xTicks: [], yTicks: [], points: 0, xExtent: null, series: [] };

    const samples = [...series.values()].flat();
    if (!samples.length) {
      ctx.fillStyle = "#6b7580";
      ctx.fillText("no latency reported yet", plot.left + 8, (plot.top + plot.bottom) / 2);
      canvas.dataset.layout = JSON.stringify(layout);
      return layout;
    }
    let tMin = Math.min(...samples.map((s) => s.t)), tMax = Math.max(...samples.map((s) => s.t));
    layout.spanMs = tMax - tMin;
    if (tMax - tMin < 1000) { // under a second: centred in a one-second window
      const mid = (tMin + tMax) / 2; tMin = mid - 500; tMax = mid + 500;
    }
    const vMax = Math.max(...samples.map((s) => s.v), 0.001);
    const yStep = niceStep(vMax, Math.floor((plot.bottom - plot.top) / Y_LABEL_SPACING));
    const yMax = Math.ceil(vMax / yStep) * yStep;
    const x = (t) => plot.left + ((plot.right - plot.left) * (t - tMin)) / (tMax - tMin);
    const y = (v) => plot.bottom - ((plot.bottom - plot.top) * v) / yMax;

    // y axis: grid lines and labels, right-aligned left of the plot
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let k = 0; k * yStep <= yMax + yStep / 1e6; k += 1) {
      const v = k * yStep, py = y(v);
      ctx.strokeStyle = k === 0 ? "#8a94a0" : "#e3e7ec";
      ctx.beginPath(); ctx.moveTo(plot.left, py); ctx.lineTo(plot.right, py); ctx.stroke();
      const label = msLabel(v, yStep);
      ctx.fillStyle = "#445";
      ctx.fillText(label, plot.left - 8, py);
      layout.yTicks.push({ y: py, label });
    }
    ctx.textAlign = "left";
    ctx.textBaseline = "alphabetic";
    ctx.fillText("p50 latency", plot.left, plot.top - 8);

    // x axis: time labels centred under their tick, as many as fit
    const labelWidth = ctx.measureText("00:00:00").width;
    const fit = Math.max(1, Math.floor((plot.right - plot.left) / (labelWidth + X_LABEL_GAP)));
    const stepMs = 1000 * (TIME_STEPS_S.find((s) => (tMax - tMin) / (s * 1000) <= fit) || TIME_STEPS_S.at(-1));
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    ctx.strokeStyle = "#8a94a0";
    ctx.beginPath(); ctx.moveTo(plot.left, plot.top); ctx.lineTo(plot.left, plot.bottom); ctx.stroke();
    for (let t = Math.ceil(tMin / stepMs) * stepMs; t <= tMax; t += stepMs) {
      const px = x(t), label = clock(t), width = ctx.measureText(label).width;
      if (px - width / 2 < 0 || px + width / 2 > w) continue;
      ctx.strokeStyle = "#8a94a0";
      ctx.beginPath(); ctx.moveTo(px, plot.bottom); ctx.lineTo(px, plot.bottom + 4); ctx.stroke();
      ctx.fillStyle = "#445";
      ctx.fillText(label, px, plot.bottom + 7);
      layout.xTicks.push({ x: px, label, width });
    }

    // the series: a line through the samples, each sample a dot
    let i = 0, minX = Infinity, maxX = -Infinity;
    for (const [name, points] of series) {
      const c = color(i);
      ctx.strokeStyle = c; ctx.fillStyle = c; ctx.lineWidth = 2;
      ctx.beginPath();
      points.forEach((p, k) => { if (k === 0) ctx.moveTo(x(p.t), y(p.v)); else ctx.lineTo(x(p.t), y(p.v)); });
      ctx.stroke();
      for (const p of points) {
        const px = x(p.t);
        minX = Math.min(minX, px); maxX = Math.max(maxX, px);
        ctx.beginPath(); ctx.arc(px, y(p.v), 2.5, 0, 2 * Math.PI); ctx.fill();
      }
      layout.points += points.length;
      layout.series.push({ name, color: c });
      i += 1;
    }
    ctx.lineWidth = 1;
    layout.xExtent = [minX, maxX];
    canvas.dataset.layout = JSON.stringify(layout);
    return layout;
  }

  return { draw, color };
})();
