/* dialer dashboard: draws dialer.reports JSON as numbers and inline SVG charts. No libraries, no network
   beyond this server. Used by the live pages (fetch + refresh) and inlined in `dialer report --format html`. */
(function () {
  "use strict";

  var SVG_NS = "http://www.w3.org/2000/svg";
  var LEAD_COLORS = {
    contacted: "#2e7d32", exhausted: "#8d6e63", dnc: "#6a1b9a", invalid: "#c62828",
    cancelled: "#9e9e9e", in_call: "#f9a825", pending: "#90caf9"
  };
  var OUTCOME_COLORS = {
    completed: "#2e7d32", customer_answered: "#66bb6a", agent_answered: "#9ccc65", originated: "#aed581",
    busy: "#ef6c00", no_answer: "#ffa726", agent_missed: "#8e24aa", failed: "#c62828", lost: "#6d4c41",
    ambiguous: "#5d4037", dialing: "#42a5f5", queued: "#90caf9", cancelled: "#9e9e9e"
  };
  var LEAD_ORDER = ["contacted", "exhausted", "dnc", "invalid", "cancelled", "in_call", "pending"];

  // ---- tiny DOM helpers (textContent only: campaign names and reasons are user data) ----------
  function h(tag, attrs) {
    var node = document.createElement(tag);
    setAttrs(node, attrs);
    for (var i = 2; i < arguments.length; i++) append(node, arguments[i]);
    return node;
  }
  function s(tag, attrs) {
    var node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    for (var i = 2; i < arguments.length; i++) append(node, arguments[i]);
    return node;
  }
  function setAttrs(node, attrs) {
    if (!attrs) return;
    Object.keys(attrs).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) return;
      if (k === "text") node.textContent = String(v);
      else node.setAttribute(k, String(v));
    });
  }
  function append(node, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) { child.forEach(function (c) { append(node, c); }); return; }
    node.appendChild(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
  }

  // ---- formatting -------------------------------------------------------------------------------
  var fmt = {
    int: function (n) { return Number(n || 0).toLocaleString("en-GB"); },
    pct: function (x) { return (Number(x || 0) * 100).toFixed(1) + "%"; },
    dec: function (x) { return Number(x || 0).toFixed(1); },
    dur: function (secs) {
      if (secs === null || secs === undefined) return "–";
      secs = Math.max(0, Math.round(secs));
      var d = Math.floor(secs / 86400), hh = Math.floor((secs % 86400) / 3600);
      var m = Math.floor((secs % 3600) / 60), sec = secs % 60;
      if (d) return d + "d " + hh + "h";
      if (hh) return hh + "h " + String(m).padStart(2, "0") + "m";
      if (m) return m + "m " + String(sec).padStart(2, "0") + "s";
      return sec + "s";
    },
    clock: function (iso) {
      var t = new Date(iso);
      return isNaN(t) ? "" : t.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
    },
    stamp: function (iso) {
      var t = new Date(iso);
      return isNaN(t) ? "" : t.toLocaleString("en-GB", { day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit" });
    },
    label: function (key) { return String(key).replace(/_/g, " "); }
  };

  function metric(name, text, cls) {
    return h("span", { "class": cls || "value", "data-metric": name, text: text });
  }

  function tile(label, name, text, sub) {
    return h("div", { "class": "tile" },
      h("div", { "class": "tile-label", text: label }),
      metric(name, text),
      sub ? h("div", { "class": "tile-sub" }, sub) : null);
  }

  function section(title, body, extraClass) {
    return h("section", { "class": "card " + (extraClass || "") }, h("h2", { text: title }), body);
  }

  function table(headers, rows, name) {
    return h("table", { "class": "grid", "data-table": name || null },
      h("thead", null, h("tr", null, headers.map(function (t) { return h("th", { text: t }); }))),
      h("tbody", null, rows.length ? rows : h("tr", null, h("td", { colspan: headers.length, "class": "empty", text: "none" }))));
  }

  // ---- charts (inline SVG) -----------------------------------------------------------------------
  function stackedBar(counts, total, prefix) {
    var width = 1000, height = 28, x = 0;
    var chart = s("svg", { viewBox: "0 0 " + width + " " + height, "class": "stack", role: "img",
      "aria-label": "leads by status", preserveAspectRatio: "none" });
    LEAD_ORDER.forEach(function (status) {
      var n = counts[status] || 0;
      if (!n || !total) return;
      var w = (n / total) * width;
      chart.appendChild(s("rect", { x: x, y: 0, width: Math.max(w, 0.5), height: height, fill: LEAD_COLORS[status] },
        s("title", { text: fmt.label(status) + ": " + fmt.int(n) })));
      x += w;
    });
    var legend = h("ul", { "class": "legend" }, LEAD_ORDER.map(function (status) {
      return h("li", null, h("i", { "class": "swatch swatch-" + status }), fmt.label(status) + " ",
        metric(prefix + status, fmt.int(counts[status] || 0), "num"));
    }));
    return h("div", null, chart, legend);
  }

  function hbars(items, prefix, ariaLabel) {
    var rowH = 24, labelW = 170, valueW = 70, width = 640, barW = width - labelW - valueW - 10;
    var max = Math.max.apply(null, items.map(function (i) { return i.value; }).concat([1]));
    var chart = s("svg", { viewBox: "0 0 " + width + " " + Math.max(rowH, items.length * rowH), "class": "hbars",
      role: "img", "aria-label": ariaLabel });
    items.forEach(function (item, i) {
      var y = i * rowH, w = (item.value / max) * barW;
      chart.appendChild(s("text", { x: labelW - 8, y: y + 16, "text-anchor": "end", "class": "axis", text: fmt.label(item.label) }));
      chart.appendChild(s("rect", { x: labelW, y: y + 4, width: Math.max(w, item.value ? 2 : 0), height: rowH - 8,
        fill: item.color || "#1976d2", rx: 2 }, s("title", { text: fmt.label(item.label) + ": " + fmt.int(item.value) })));
      chart.appendChild(s("text", { x: labelW + w + 6, y: y + 16, "class": "barval", "data-metric": prefix + item.label,
        text: fmt.int(item.value) }));
    });
    if (!items.length) chart.appendChild(s("text", { x: 10, y: 16, "class": "axis", text: "no calls yet" }));
    return chart;
  }

  function niceCeil(x) {
    // The smallest 1, 2 or 5 times a power of ten that is at least x (so axis labels are round).
    if (x <= 1) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(x)));
    var m = x / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
  }

  function columns(points, labelOf, ariaLabel) {
    var width = 640, height = 200, left = 44, bottom = 24, top = 10;
    var plotW = width - left - 10, plotH = height - bottom - top;
    var peak = Math.max.apply(null, points.map(function (p) { return p.calls; }).concat([0]));
    var max = niceCeil(Math.max(peak, 1));
    var ticks = max >= 2 ? [0, max / 2, max] : [0, max];
    var chart = s("svg", { viewBox: "0 0 " + width + " " + height, "class": "columns", role: "img", "aria-label": ariaLabel });
    ticks.forEach(function (v) {
      var y = top + plotH - (v / max) * plotH;
      chart.appendChild(s("line", { x1: left, x2: width - 10, y1: y, y2: y, "class": "gridline" }));
      chart.appendChild(s("text", { x: left - 6, y: y + 4, "text-anchor": "end", "class": "axis", text: fmt.int(v) }));
    });
    var slot = plotW / Math.max(points.length, 1), barW = Math.min(36, Math.max(1, slot * 0.8));
    points.forEach(function (p, i) {
      var x = left + i * slot + (slot - barW) / 2;
      var hc = (p.calls / max) * plotH, hk = (p.contacts / max) * plotH;
      var g = s("g", null, s("title", { text: labelOf(p.t) + " · " + fmt.int(p.calls) + " calls, " + fmt.int(p.contacts) + " contacts" }));
      if (p.calls) g.appendChild(s("rect", { x: x, y: top + plotH - hc, width: barW, height: hc, "class": "bar-calls" }));
      if (p.contacts) g.appendChild(s("rect", { x: x, y: top + plotH - hk, width: barW, height: hk, "class": "bar-contacts" }));
      chart.appendChild(g);
    });
    if (points.length) {
      var marks = points.length === 1 ? [0] : points.length < 5 ? points.map(function (_, i) { return i; })
        : [0, Math.floor((points.length - 1) / 2), points.length - 1];
      marks.forEach(function (i) {
        var anchor = points.length < 5 ? "middle" : i === 0 ? "start" : i === points.length - 1 ? "end" : "middle";
        var x = points.length < 5 ? left + i * slot + slot / 2 : i === 0 ? left : i === points.length - 1 ? width - 10 : left + i * slot + slot / 2;
        chart.appendChild(s("text", { x: x, y: height - 6, "text-anchor": anchor, "class": "axis", text: labelOf(points[i].t) }));
      });
    } else {
      chart.appendChild(s("text", { x: left + 10, y: top + plotH / 2, "class": "axis", text: "no calls yet" }));
    }
    var total = points.reduce(function (a, p) { return a + p.calls; }, 0);
    return h("div", null, chart, h("p", { "class": "chart-note" },
      h("i", { "class": "swatch bar-calls-swatch" }), " calls ",
      h("i", { "class": "swatch bar-contacts-swatch" }), " contacts · ", fmt.int(total), " calls shown"));
  }

  // ---- pages ---------------------------------------------------------------------------------------
  function stateBadge(state, name) {
    return h("span", { "class": "badge badge-" + state, "data-metric": name || "state", text: fmt.label(state) });
  }

  function renderCampaign(r, live) {
    var c = r.campaign, total = r.total_leads;
    var outcomes = Object.keys(r.outcomes).filter(function (k) { return r.outcomes[k]; })
      .sort(function (a, b) { return r.outcomes[b] - r.outcomes[a]; })
      .map(function (k) { return { label: k, value: r.outcomes[k], color: OUTCOME_COLORS[k] }; });
    var eta = r.eta_seconds === null ? (c.state === "running" ? "no pace yet" : "–") : fmt.dur(r.eta_seconds);
    var blockedRows = Object.keys(r.blocked_by_reason).map(function (k) {
      return h("tr", null, h("td", { text: fmt.label(k) }), h("td", { "class": "n" }, metric("blocked." + k, fmt.int(r.blocked_by_reason[k]), "num")));
    });
    var hangupRows = Object.keys(r.hangup_causes).map(function (k) {
      return h("tr", null, h("td", { text: k }), h("td", { "class": "n" }, metric("hangup." + k, fmt.int(r.hangup_causes[k]), "num")));
    });
    var passRows = r.passes.map(function (p) {
      return h("tr", null, h("td", { text: "attempt " + p.attempt }),
        h("td", { "class": "n" }, metric("pass." + p.attempt + ".calls", fmt.int(p.calls), "num")),
        h("td", { "class": "n" }, metric("pass." + p.attempt + ".contacts", fmt.int(p.contacts), "num")),
        h("td", { "class": "n" }, metric("pass." + p.attempt + ".contact_rate", fmt.pct(p.contact_rate), "num")));
    });
    var agentRows = r.agents.map(function (a) {
      var key = "agent." + a.agent + ".";
      return h("tr", null, h("td", { text: a.agent + (a.name ? " · " + a.name : "") }),
        h("td", null, stateBadge(a.state, key + "state")),
        h("td", { "class": "n" }, metric(key + "calls", fmt.int(a.calls), "num")),
        h("td", { "class": "n" }, metric(key + "contacts", fmt.int(a.contacts), "num")),
        h("td", { "class": "n" }, metric(key + "talk", fmt.dur(a.talk_seconds), "num")),
        h("td", { "class": "n" }, metric(key + "idle", fmt.dur(a.idle_seconds), "num")));
    });
    var importRows = r.import_jobs.map(function (j) {
      var reasons = Object.keys(j.rejects_by_reason).map(function (k) { return fmt.label(k) + " " + j.rejects_by_reason[k]; }).join(", ");
      return h("tr", null, h("td", { text: j.filename }), h("td", { text: fmt.stamp(j.created_at) }),
        h("td", { "class": "n", text: fmt.int(j.total_rows) }),
        h("td", { "class": "n" }, metric("import." + j.id + ".accepted", fmt.int(j.accepted), "num")),
        h("td", { "class": "n" }, metric("import." + j.id + ".rejected", fmt.int(j.rejected), "num")),
        h("td", { text: reasons || "–" }));
    });
    var done = total ? r.finished_leads / total : 0;
    return h("div", { "class": "campaign" },
      h("div", { "class": "title-row" },
        h("h1", null, h("span", { "data-metric": "name", text: c.name }), " ", stateBadge(c.state)),
        h("p", { "class": "meta" }, "Campaign " + c.id + (c.state_reason ? " · " + c.state_reason : "") +
          " · " + (live ? "updated " : "generated ") + fmt.clock(r.generated_at) + (live ? " · refreshes by itself" : ""))),
      h("div", { "class": "tiles" },
        tile("Leads", "total_leads", fmt.int(total)),
        tile("Finished", "finished_leads", fmt.int(r.finished_leads), fmt.pct(done) + " done"),
        tile("Contacted", "contacted", fmt.int(r.contacted)),
        tile("Contact rate", "contact_rate", fmt.pct(r.contact_rate), "of " + fmt.int(r.leads_attempted) + " leads tried"),
        tile("Answer rate", "answer_rate", fmt.pct(r.answer_rate), "of calls placed"),
        tile("Penetration", "penetration", fmt.pct(r.penetration)),
        tile("Calls placed", "calls_placed", fmt.int(r.calls_placed)),
        tile("In progress", "calls_in_progress", fmt.int(r.calls_in_progress)),
        tile("Dialable now", "dialable_now", fmt.int(r.dialable_now), fmt.int(r.due_leads) + " due"),
        tile("Avg talk", "avg_talk_seconds", fmt.dec(r.avg_talk_seconds) + " s", fmt.dur(r.talk_seconds) + " in all"),
        tile("Pace", "pace", fmt.dec(r.pace.calls_per_minute) + "/min", fmt.dec(r.pace.leads_per_minute) + " leads/min"),
        tile("ETA", "eta", eta)),
      section("Progress", stackedBar(r.leads, total, "leads."), "wide"),
      h("div", { "class": "row" },
        section("Outcomes (calls)", hbars(outcomes, "outcomes.", "calls by outcome")),
        section("Calls per minute, last hour", columns(r.calls_per_minute, fmt.clock, "calls per minute"))),
      h("div", { "class": "row" },
        section("Calls per hour", columns(r.calls_per_hour, fmt.stamp, "calls per hour")),
        section("Waiting leads", h("div", null,
          h("p", null, "Dialable now ", metric("dialable_now_detail", fmt.int(r.dialable_now), "num"), " of ",
            fmt.int(r.leads.pending), " pending · agents free ", metric("agents_free", fmt.int(r.agents_summary.free), "num"),
            " / on call ", fmt.int(r.agents_summary.on_call), " / paused ", fmt.int(r.agents_summary.paused)),
          table(["blocked because", "leads"], blockedRows, "blocked")))),
      h("div", { "class": "row" },
        section("Pass report", table(["pass", "calls", "contacts", "contact rate"], passRows, "passes")),
        section("Hangup causes", table(["cause", "calls"], hangupRows, "hangups"))),
      section("Agents", table(["agent", "state", "calls", "contacts", "talk", "idle"], agentRows, "agents"), "wide"),
      section("Imports", table(["file", "when", "rows", "accepted", "rejected", "rejects by reason"], importRows, "imports"), "wide"));
  }

  function renderCampaigns(rows) {
    var body = rows.map(function (c) {
      var done = c.total_leads ? c.finished_leads / c.total_leads : 0;
      var bar = s("svg", { viewBox: "0 0 100 8", "class": "mini", preserveAspectRatio: "none" },
        s("rect", { x: 0, y: 0, width: 100, height: 8, "class": "mini-bg" }),
        s("rect", { x: 0, y: 0, width: done * 100, height: 8, "class": "mini-fg" }));
      var key = "campaign." + c.id + ".";
      return h("tr", { "data-campaign": c.id },
        h("td", null, h("a", { href: "/campaigns/" + c.id, text: c.name }), h("span", { "class": "muted", text: " #" + c.id })),
        h("td", null, stateBadge(c.state, key + "state")),
        h("td", null, bar, " ", metric(key + "progress", fmt.pct(done), "num")),
        h("td", { "class": "n" }, metric(key + "total_leads", fmt.int(c.total_leads), "num")),
        h("td", { "class": "n" }, metric(key + "contacted", fmt.int(c.contacted), "num")),
        h("td", { "class": "n" }, metric(key + "calls_in_progress", fmt.int(c.calls_in_progress), "num")),
        h("td", { "class": "n" }, metric(key + "dialable_now", fmt.int(c.dialable_now), "num")),
        h("td", { "class": "n", text: c.eta_seconds === null ? "–" : fmt.dur(c.eta_seconds) }));
    });
    return h("div", null, h("h1", { text: "Campaigns" }),
      h("section", { "class": "card wide" },
        table(["campaign", "state", "progress", "leads", "contacted", "in progress", "dialable now", "ETA"], body, "campaigns")));
  }

  // ---- wiring --------------------------------------------------------------------------------------
  function show(node) {
    var app = document.getElementById("app");
    app.replaceChildren(node);
  }

  function banner(text) {
    var old = document.getElementById("banner");
    if (old) old.remove();
    if (!text) return;
    document.body.insertBefore(h("div", { id: "banner", role: "status", text: text }), document.body.firstChild);
  }

  function startLive(body) {
    var source = body.getAttribute("data-source");
    var every = Number(body.getAttribute("data-refresh") || 5) * 1000;
    var render = body.getAttribute("data-page") === "campaigns" ? renderCampaigns : function (d) { return renderCampaign(d, true); };
    var timer = null;
    function tick() {
      timer = null;
      fetch(source, { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" })
        .then(function (res) {
          if (res.status === 401) { window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname)); return null; }
          if (res.status === 404) { show(h("p", { "class": "error", text: "No such campaign." })); return null; }
          if (!res.ok) throw new Error("HTTP " + res.status);
          return res.json();
        })
        .then(function (data) {
          if (data === null) return;
          banner(null);
          show(render(data));
          document.body.setAttribute("data-loaded", String(Date.now()));
          schedule();
        })
        .catch(function (err) { banner("Cannot reach the dialer (" + err.message + "): retrying…"); schedule(); });
    }
    function schedule() { if (!timer && !document.hidden) timer = setTimeout(tick, every); }
    document.addEventListener("visibilitychange", function () { if (!document.hidden && !timer) tick(); });
    tick();
  }

  function start() {
    var body = document.body;
    if (body.getAttribute("data-page") === "report") {
      var data = JSON.parse(document.getElementById("report-data").textContent);
      show(renderCampaign(data, false));
      body.setAttribute("data-loaded", String(Date.now()));
      return;
    }
    if (body.getAttribute("data-source")) startLive(body);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
