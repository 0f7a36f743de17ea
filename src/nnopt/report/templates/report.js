/* nnopt report: the HTML's interactive parts, plain JavaScript, no network, no libraries.
   - tables.sortable: a header click sorts the rows (numbers by data-sort, else by text),
     a second click reverses; a text box above filters rows by their text;
   - .interactive[data-study]: learning curves drawn as inline SVG from the study's JSON
     (a JSON script element with id data-STUDY), legend entries toggle a curve,
     pickers choose the metric, the x axis (step/epoch/time) and a linear or log y axis;
   - #study-picker: show one study's section or all.
   Without JavaScript the static SVG figures and the full tables show; print CSS hides
   everything marked .interactive. */
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";

  function cellKey(td) {
    var v = td.getAttribute("data-sort");
    if (v !== null && v !== "") { return { num: parseFloat(v) }; }
    var text = td.textContent.trim();
    var m = text.match(/^[+\u2212-]?[\d,]*\.?\d+(e[+-]?\d+)?/i);
    if (m) { return { num: parseFloat(m[0].replace(/,/g, "").replace("\u2212", "-")) }; }
    return { text: text.toLowerCase() };
  }

  function compare(a, b) {
    if (a.num !== undefined && b.num !== undefined) { return a.num - b.num; }
    if (a.num !== undefined) { return -1; }  // numbers before words ("—", "not reached")
    if (b.num !== undefined) { return 1; }
    return a.text < b.text ? -1 : a.text > b.text ? 1 : 0;
  }

  function sortBy(table, col, th) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    Array.prototype.forEach.call(th.parentNode.cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
    var keyed = rows.map(function (r, i) {
      return { row: r, i: i, key: r.cells[col] ? cellKey(r.cells[col]) : { text: "" } };
    });
    keyed.sort(function (a, b) { return dir * compare(a.key, b.key) || a.i - b.i; });
    keyed.forEach(function (k) { body.appendChild(k.row); });
  }

  function makeSortable(table) {
    if (!table.tHead || !table.tBodies.length) { return; }
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.classList.add("sort-head");
      th.setAttribute("title", "click to sort");
      th.addEventListener("click", function () { sortBy(table, col, th); });
    });
    var box = document.createElement("input");
    box.type = "search";
    box.className = "table-filter interactive";
    box.placeholder = "filter rows…";
    box.addEventListener("input", function () {
      var q = box.value.toLowerCase();
      Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
        r.style.display = r.textContent.toLowerCase().indexOf(q) >= 0 ? "" : "none";
      });
    });
    var anchor = table.parentNode.classList.contains("table-wrap") ? table.parentNode : table;
    anchor.parentNode.insertBefore(box, anchor);
  }

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function ticks(lo, hi, log) {
    var out = [];
    if (log) {
      for (var e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) { out.push(Math.pow(10, e)); }
      return out.filter(function (t) { return t >= lo / 1.0001 && t <= hi * 1.0001; });
    }
    var step = Math.pow(10, Math.floor(Math.log10((hi - lo) || 1)));
    if ((hi - lo) / step < 4) { step /= 2; }
    if ((hi - lo) / step > 8) { step *= 2; }
    for (var t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) { out.push(+t.toPrecision(6)); }
    return out;
  }

  function draw(panel, data) {
    var metric = panel.querySelector(".curve-metric").value;
    var xKey = panel.querySelector(".curve-x").value;
    var log = panel.querySelector(".curve-y").value === "log";
    var W = 640, H = 300, L = 64, R = 12, T = 10, B = 36;
    var pts = [];
    data.series.forEach(function (s) {
      var xs = s[xKey], ys = s.y[metric];
      s._line = [];
      if (!xs || !ys) { return; }
      for (var i = 0; i < ys.length; i++) {
        if (xs[i] === null || ys[i] === null || (log && ys[i] <= 0)) { continue; }
        s._line.push([xs[i], ys[i]]);
        if (s.visible) { pts.push([xs[i], ys[i]]); }
      }
    });
    var plot = panel.querySelector(".curve-plot");
    plot.textContent = "";
    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, "class": "curve-svg", role: "img" }, plot);
    if (!pts.length) {
      el("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, svg).textContent = "no curve shown";
      return;
    }
    var x0 = Math.min.apply(null, pts.map(function (p) { return p[0]; }));
    var x1 = Math.max.apply(null, pts.map(function (p) { return p[0]; }));
    var y0 = Math.min.apply(null, pts.map(function (p) { return p[1]; }));
    var y1 = Math.max.apply(null, pts.map(function (p) { return p[1]; }));
    if (x1 === x0) { x1 = x0 + 1; }
    if (y1 === y0) { y1 = y0 + (log ? y0 : 1); }
    var f = log ? Math.log10 : function (v) { return v; };
    function sx(v) { return L + (v - x0) / (x1 - x0) * (W - L - R); }
    function sy(v) { return T + (1 - (f(v) - f(y0)) / (f(y1) - f(y0))) * (H - T - B); }
    el("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#333" }, svg);
    el("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#333" }, svg);
    ticks(x0, x1, false).forEach(function (t) {
      el("text", { x: sx(t), y: H - B + 14, "text-anchor": "middle", "class": "tick" }, svg).textContent = String(t);
    });
    ticks(y0, y1, log).forEach(function (t) {
      el("line", { x1: L, y1: sy(t), x2: W - R, y2: sy(t), stroke: "#e3e6ea" }, svg);
      el("text", { x: L - 4, y: sy(t) + 3, "text-anchor": "end", "class": "tick" }, svg).textContent = String(t);
    });
    var xName = { step: "Step", epoch: "Epoch", time: "Training time (s)" }[xKey];
    el("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle" }, svg).textContent = xName;
    var yName = data.metrics.filter(function (m) { return m.key === metric; })[0];
    el("text", { x: 12, y: (T + H - B) / 2, "text-anchor": "middle",
                 transform: "rotate(-90 12 " + (T + H - B) / 2 + ")" }, svg).textContent =
      (yName ? yName.label : metric) + (log ? " (log)" : "");
    data.series.forEach(function (s) {
      if (!s._line.length) { return; }
      var d = s._line.map(function (p, i) { return (i ? "L" : "M") + sx(p[0]).toFixed(1) + " " + sy(p[1]).toFixed(1); }).join("");
      el("path", { d: d, fill: "none", stroke: s.colour, "stroke-width": 1.5, "class": "curve",
                   "data-config": s.id, display: s.visible ? "inline" : "none" }, svg);
    });
  }

  function legend(panel, data) {
    var list = panel.querySelector(".curve-legend");
    list.textContent = "";
    data.series.forEach(function (s) {
      var item = document.createElement("li");
      item.className = "legend-item" + (s.visible ? "" : " off");
      item.setAttribute("data-config", s.id);
      item.setAttribute("role", "button");
      item.setAttribute("tabindex", "0");
      var swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = s.colour;
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(s.label));
      item.addEventListener("click", function () {
        s.visible = !s.visible;
        item.classList.toggle("off", !s.visible);
        draw(panel, data);
      });
      list.appendChild(item);
    });
  }

  function curvePanel(panel) {
    var holder = document.getElementById("data-" + panel.getAttribute("data-study"));
    if (!holder) { return; }
    var data = JSON.parse(holder.textContent);
    if (!data.series.length) { return; }
    var pick = panel.querySelector(".curve-metric");
    data.metrics.forEach(function (m) {
      var o = document.createElement("option");
      o.value = m.key;
      o.textContent = m.label;
      pick.appendChild(o);
    });
    Array.prototype.forEach.call(panel.querySelectorAll("select"), function (s) {
      s.addEventListener("change", function () { draw(panel, data); });
    });
    [[".curve-all", true], [".curve-none", false]].forEach(function (b) {
      panel.querySelector(b[0]).addEventListener("click", function () {
        data.series.forEach(function (s) { s.visible = b[1]; });
        legend(panel, data);
        draw(panel, data);
      });
    });
    panel.hidden = false;
    legend(panel, data);
    draw(panel, data);
  }

  function studyPicker() {
    var pick = document.getElementById("study-picker");
    if (!pick) { return; }
    pick.parentNode.parentNode.hidden = false;
    pick.addEventListener("change", function () {
      Array.prototype.forEach.call(document.querySelectorAll("section.study"), function (sec) {
        sec.style.display = !pick.value || sec.id === "study-" + pick.value ? "" : "none";
      });
      if (pick.value) { document.getElementById("study-" + pick.value).scrollIntoView(); }
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), makeSortable);
  Array.prototype.forEach.call(document.querySelectorAll(".interactive[data-study]"), curvePanel);
  studyPicker();
  document.documentElement.classList.add("js");
}());
