// Draws the report from the rows of the shipped analytics queries inlined
// above. Nothing is computed here that a query did not return: the page
// only formats and draws. Text from the data goes in through textContent.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const q = data.queries;
  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = ["#3366cc", "#dc6b2f", "#2a9d8f", "#8e5ec4", "#c9a227", "#d1495b", "#5c946e", "#4d5b7c"];

  const num = (v) => (v === null || v === undefined ? null : Number(v));
  const fmt = {
    int: (v) => (v === null ? "–" : Math.round(v).toLocaleString("en-US")),
    pct: (v) => (v === null ? "–" : (v * 100).toFixed(1) + "%"),
    // As the run's summary prints money: cents from a dollar up, to a
    // hundredth of a cent under a dollar, $0.00 for nothing.
    usd: (v) => {
      if (v === null) return "–";
      const small = Math.round(Math.abs(v) * 10000);
      const digits = small >= 10000 || small === 0 ? 2 : 4;
      const shown = Math.abs(v).toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
      return (v < 0 && small > 0 ? "-$" : "$") + shown;
    },
    // Axis ticks: $12k rather than $12,000.00.
    usdTick: (v) => (Math.abs(v) >= 1000 ? "$" + (v / 1000).toLocaleString("en-US", { maximumFractionDigits: 1 }) + "k" : fmt.usd(v)),
    ms: (v) => (v === null ? "–" : Math.round(v).toLocaleString("en-US") + " ms"),
    text: (v) => (v === null || v === undefined ? "–" : String(v)),
  };

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function figure(name) {
    return document.querySelector('figure[data-chart="' + name + '"]');
  }
  function empty(fig, why) {
    fig.appendChild(el("div", { class: "empty" }, why));
    fig.dataset.drawn = "empty";
  }

  document.getElementById("source").textContent = data.source;
  document.getElementById("generated").textContent = data.generated;
  document.getElementById("version").textContent = data.version;

  // Summary cards.
  const s = q.summary[0] || {};
  const cards = [
    ["leads", "Leads", fmt.int],
    ["valid_own_phones", "Valid own phones", fmt.int],
    ["looked_up", "Looked up", fmt.int],
    ["found", "Phones found", fmt.int],
    ["hit_rate", "Hit rate", fmt.pct],
    ["from_cache", "From the cache", fmt.int],
    ["line_type_known", "Line type known", fmt.int],
    ["line_type_not_asked", "Line type not asked (budget/limit)", fmt.int],
    ["line_type_unknown_number", "Unknown numbers", fmt.int],
    ["spend_usd", "Spend", fmt.usd],
    ["lookup_spend_usd", "Spent finding phones", fmt.usd],
    ["cost_per_found_usd", "Cost per found phone", fmt.usd],
    ["rejects", "Rejects", fmt.int],
  ];
  const cardBox = document.getElementById("cards");
  for (const [key, label, f] of cards) {
    const card = el("div", { class: "card", "data-field": key });
    card.appendChild(el("div", { class: "label" }, label));
    card.appendChild(el("div", { class: "value" }, f(num(s[key]))));
    cardBox.appendChild(card);
  }
  // The adaptive order's saving, when the output holds an A/B split.
  const adaptive = q.policy_compare.find((r) => r.policy === "adaptive");
  if (adaptive && num(adaptive.cost_per_found_vs_priority) !== null) {
    const card = el("div", { class: "card", "data-field": "cost_per_found_vs_priority" });
    card.appendChild(el("div", { class: "label" }, "Adaptive order, per found phone vs priority"));
    const change = num(adaptive.cost_per_found_vs_priority);
    card.appendChild(el("div", { class: "value" }, (change > 0 ? "+" : "") + fmt.pct(change)));
    cardBox.appendChild(card);
  }

  // Horizontal bars: one per row, labelled, with its value at the end.
  function bars(name, rows, label, value, format, note) {
    const fig = figure(name);
    if (!rows.length) return empty(fig, "No rows.");
    const max = Math.max(1e-9, ...rows.map((r) => num(r[value]) || 0));
    // Drawn at the figure's own width, so text keeps its size in any column.
    const rowH = 24, labelW = 170, valueW = 130, width = Math.max(360, fig.clientWidth - 26);
    const plotW = width - labelW - valueW;
    const root = svg("svg", { viewBox: "0 0 " + width + " " + (rows.length * rowH + 8), role: "img" });
    rows.forEach((r, i) => {
      const v = num(r[value]) || 0;
      const y = 4 + i * rowH;
      const g = svg("g", { class: "bar", "data-label": String(r[label]), "data-value": String(v) });
      g.appendChild(svg("text", { x: labelW - 8, y: y + 17, "text-anchor": "end" }, fmt.text(r[label])));
      g.appendChild(svg("rect", { x: labelW, y: y + 4, height: rowH - 8, width: Math.max(1, (plotW * v) / max), rx: 3, fill: COLORS[0] }));
      const shown = format(v) + (note ? note(r) : "");
      g.appendChild(svg("text", { x: labelW + Math.max(1, (plotW * v) / max) + 6, y: y + 17, class: "muted" }, shown));
      root.appendChild(g);
    });
    fig.appendChild(root);
    fig.dataset.drawn = String(rows.length);
  }

  // The smallest of 1, 2, 2.5, 5 times a power of ten at or above v: axis
  // ticks at 0, half and that read as round numbers.
  function niceCeil(v) {
    if (!(v > 0)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(v)));
    for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= v * (1 - 1e-12)) return step * power;
    return 10 * power;
  }

  // Lines over days, one per series, with points and a legend.
  function lines(name, rows, series, x, y, format, tick) {
    const fig = figure(name);
    const points = rows.filter((r) => num(r[y]) !== null);
    if (!points.length) return empty(fig, "No provider calls.");
    const days = [...new Set(points.map((r) => r[x]))].sort();
    const names = [...new Set(points.map((r) => r[series]))].sort();
    const width = Math.max(360, fig.clientWidth - 26), height = 260, left = 70, right = 16, top = 12, bottom = 34;
    const maxY = niceCeil(Math.max(...points.map((r) => num(r[y]))));
    const px = (d) => left + (days.length === 1 ? (width - left - right) / 2 : (days.indexOf(d) * (width - left - right)) / (days.length - 1));
    const py = (v) => top + (height - top - bottom) * (1 - v / maxY);
    const root = svg("svg", { viewBox: "0 0 " + width + " " + height, role: "img" });
    for (const t of [0, 0.5, 1]) {
      root.appendChild(svg("line", { class: "axis", x1: left, x2: width - right, y1: py(maxY * t), y2: py(maxY * t) }));
      root.appendChild(svg("text", { x: left - 6, y: py(maxY * t) + 4, "text-anchor": "end", class: "muted" }, tick(maxY * t)));
    }
    const step = Math.max(1, Math.ceil(days.length / 8));
    days.forEach((d, i) => {
      if (i % step === 0) root.appendChild(svg("text", { x: px(d), y: height - 12, "text-anchor": "middle", class: "muted" }, d));
    });
    const legend = el("div", { class: "legend" });
    names.forEach((n, i) => {
      const color = COLORS[i % COLORS.length];
      const mine = points.filter((r) => r[series] === n).sort((a, b) => (a[x] < b[x] ? -1 : 1));
      const g = svg("g", { class: "series", "data-series": String(n) });
      if (mine.length > 1) {
        const d = mine.map((r, j) => (j ? "L" : "M") + px(r[x]).toFixed(1) + " " + py(num(r[y])).toFixed(1)).join(" ");
        g.appendChild(svg("path", { d: d, fill: "none", stroke: color, "stroke-width": 2 }));
      }
      for (const r of mine) {
        const c = svg("circle", { cx: px(r[x]), cy: py(num(r[y])), r: 4, fill: color, "data-value": String(num(r[y])) });
        c.appendChild(svg("title", {}, n + " · " + r[x] + ": " + format(num(r[y]))));
        g.appendChild(c);
      }
      root.appendChild(g);
      const item = el("span", { style: "--c: " + color }, n);
      legend.appendChild(item);
    });
    fig.appendChild(root);
    fig.appendChild(legend);
    fig.dataset.drawn = String(points.length);
  }

  // A table of rows (the first `limit`), columns as [key, heading, format].
  function table(id, rows, columns, limit) {
    const t = document.getElementById(id);
    const head = el("tr");
    for (const [, h] of columns) head.appendChild(el("th", {}, h));
    t.appendChild(el("thead")).appendChild(head);
    const body = t.appendChild(el("tbody"));
    if (!rows.length) {
      body.appendChild(el("tr")).appendChild(el("td", { colspan: columns.length, class: "text" }, "No rows."));
      return;
    }
    for (const r of rows.slice(0, limit || rows.length)) {
      const tr = body.appendChild(el("tr"));
      for (const [k, , f] of columns) {
        const v = f === fmt.text ? r[k] : num(r[k]);
        tr.appendChild(el("td", { "data-field": k, class: f === fmt.text ? "text" : "" }, f(v === undefined ? null : v)));
      }
    }
    if (limit && rows.length > limit) {
      const more = "First " + limit + " of " + fmt.int(rows.length) + " rows; all of them: leadflow sql --data DIR --file " + id;
      t.parentNode.after(el("p", { class: "note" }, more));
    }
  }

  bars("funnel", q.funnel, "stage", "leads", fmt.int, (r) => "  (" + fmt.pct(num(r.share)) + ")");
  table("scorecard", q.provider_scorecard, [
    ["provider", "Provider", fmt.text],
    ["day", "Day", fmt.text],
    ["calls", "Calls", fmt.int],
    ["hits", "Hits", fmt.int],
    ["hit_rate", "Hit rate", fmt.pct],
    ["errors", "Errors", fmt.int],
    ["rate_limited", "Rate limited", fmt.int],
    ["retries", "Retries", fmt.int],
    ["p50_latency_ms", "p50", fmt.ms],
    ["p95_latency_ms", "p95", fmt.ms],
    ["spend_usd", "Spend", fmt.usd],
    ["cost_per_found_usd", "Per found phone", fmt.usd],
  ]);
  table("policy_compare", q.policy_compare, [
    ["policy", "Order", fmt.text],
    ["leads_looked_up", "Leads", fmt.int],
    ["found", "Found", fmt.int],
    ["found_rate", "Found rate", fmt.pct],
    ["found_rate_low", "95% low", fmt.pct],
    ["found_rate_high", "95% high", fmt.pct],
    ["spend_usd", "Spend", fmt.usd],
    ["cost_per_found_usd", "Per found phone", fmt.usd],
    ["cost_per_found_low", "95% low", fmt.usd],
    ["cost_per_found_high", "95% high", fmt.usd],
    ["cost_per_found_vs_priority", "vs priority", fmt.pct],
  ]);
  lines("spend", q.provider_scorecard, "provider", "day", "spend_usd", fmt.usd, fmt.usdTick);
  lines("hit_rate", q.provider_scorecard, "provider", "day", "hit_rate", fmt.pct, fmt.pct);
  bars("line_types", q.line_types, "line_type", "leads", fmt.int, (r) => "  (" + fmt.pct(num(r.share)) + ")");
  bars("carriers", q.carriers, "carrier", "leads", fmt.int);
  table("coverage", q.coverage, [
    ["country", "Country", fmt.text],
    ["tier", "Tier", fmt.text],
    ["leads", "Leads", fmt.int],
    ["valid_own_phones", "Valid own", fmt.int],
    ["looked_up", "Looked up", fmt.int],
    ["found", "Found", fmt.int],
    ["found_rate", "Found rate", fmt.pct],
    ["phone_rate", "With a phone", fmt.pct],
  ], 50);
  bars("rejects", q.rejects, "reason", "rows", fmt.int, (r) => "  " + r.source);
  table("rejects", q.rejects, [
    ["source", "Source", fmt.text],
    ["reason", "Reason", fmt.text],
    ["rows", "Rows", fmt.int],
    ["first_line", "First line", fmt.int],
    ["example", "Example", fmt.text],
  ]);
  document.body.dataset.drawMs = performance.now().toFixed(0);
  document.body.dataset.ready = "true";
})();
