"use strict";
(function () {
  var errors = [];
  window.addEventListener("error", function (e) { errors.push(String(e.message)); });
  var $ = function (q, el) { return (el || document).querySelector(q); };
  var $$ = function (q, el) { return Array.prototype.slice.call((el || document).querySelectorAll(q)); };

  function show(id) {
    if (!$("#tab-" + id)) { id = $$(".tab")[0].dataset.tab; }
    $$(".tab").forEach(function (b) { b.classList.toggle("active", b.dataset.tab === id); });
    $$(".panel").forEach(function (p) { p.classList.toggle("active", p.id === "tab-" + id); });
    if (id === "performance") { flame.draw(); }
  }
  $$(".tab").forEach(function (b) {
    b.addEventListener("click", function () { history.replaceState(null, "", "#" + b.dataset.tab); show(b.dataset.tab); });
  });

  // The functions table: a click on a column sorts it (again: the other way), on a row opens it.
  var table = $("#functions");
  if (table) {
    $$("th.sort", table).forEach(function (th) {
      th.addEventListener("click", function () {
        var col = +th.dataset.col, num = th.dataset.kind === "num";
        var desc = !th.classList.contains("desc");
        $$("th.sort", table).forEach(function (h) { h.classList.remove("asc", "desc"); });
        th.classList.add(desc ? "desc" : "asc");
        var bodies = $$("tbody.fn", table);
        bodies.sort(function (a, b) {
          var x = a.rows[0].cells[col].dataset.v, y = b.rows[0].cells[col].dataset.v;
          var c = num ? (+x) - (+y) : (x < y ? -1 : x > y ? 1 : 0);
          return desc ? -c : c;
        });
        bodies.forEach(function (b) { table.appendChild(b); });
      });
    });
    $$("tbody.fn tr.row", table).forEach(function (row) {
      row.addEventListener("click", function () { var d = row.nextElementSibling; d.hidden = !d.hidden; });
    });
  }

  // The flame graph, from the folded stacks: a tree of frames, drawn as rows of rects.
  var flame = (function () {
    var svg = $("#flame"), data = $("#flame-data");
    if (!svg || !data) { return { draw: function () {} }; }
    var parsed = JSON.parse(data.textContent);
    var root = { name: "all", value: 0, children: {} };
    parsed.stacks.forEach(function (s) {
      var node = root, n = s[1];
      root.value += n;
      s[0].forEach(function (i) {
        var name = parsed.names[i];
        var child = node.children[name] || (node.children[name] = { name: name, value: 0, children: {}, parent: node });
        child.value += n;
        node = child;
      });
    });
    var focus = root, term = "", ROW = 17, NS = svg.namespaceURI;
    function depth(node) { var d = 0; Object.keys(node.children).forEach(function (k) { d = Math.max(d, 1 + depth(node.children[k])); }); return d; }
    function hue(name) { var h = 0; for (var i = 0; i < name.length; i++) { h = (h * 31 + name.charCodeAt(i)) % 360; } return h; }
    function draw() {
      if (!svg.clientWidth && !svg.getBoundingClientRect().width) { return; }
      var width = svg.getBoundingClientRect().width || 1000;
      var rows = depth(focus) + 1 + ancestors(focus).length;
      svg.setAttribute("height", rows * ROW);
      svg.setAttribute("viewBox", "0 0 " + width + " " + rows * ROW);
      while (svg.lastChild && svg.lastChild.nodeName !== "title") { svg.removeChild(svg.lastChild); }
      var matched = 0, level = 0;
      ancestors(focus).reverse().forEach(function (a) { rect(a, 0, width, level++, true); });
      function walk(node, x, w, lvl) {
        if (w < 0.5) { return; }
        if (rect(node, x, w, lvl, false)) { matched += node.value; }
        var cx = x;
        Object.keys(node.children).sort().forEach(function (k) {
          var c = node.children[k], cw = w * c.value / node.value;
          walk(c, cx, cw, lvl + 1); cx += cw;
        });
      }
      walk(focus, 0, width, level);
      $("#flame-match").textContent = term ? (100 * matched / root.value).toFixed(1) + "% of samples match" : "";
    }
    function ancestors(node) { var a = []; while (node.parent) { node = node.parent; a.push(node); } return a; }
    function rect(node, x, w, lvl, above) {
      var g = document.createElementNS(NS, "g"), r = document.createElementNS(NS, "rect");
      var y = (lvl) * ROW;
      r.setAttribute("x", x); r.setAttribute("y", y); r.setAttribute("width", Math.max(w - 0.5, 0.5)); r.setAttribute("height", ROW - 1);
      r.setAttribute("fill", above ? "#9aa5b1" : "hsl(" + (20 + hue(node.name) % 40) + ",80%," + (55 + hue(node.name) % 15) + "%)");
      var hit = term && node.name.toLowerCase().indexOf(term) >= 0;
      if (hit) { r.classList.add("match"); }
      var title = document.createElementNS(NS, "title");
      title.textContent = node.name + " (" + node.value + " samples, " + (100 * node.value / root.value).toFixed(1) + "%)";
      r.appendChild(title);
      r.addEventListener("click", function () { focus = node; draw(); });
      r.addEventListener("mouseover", function () { $("#flame-info").textContent = title.textContent; });
      g.appendChild(r);
      if (w > 40) {
        var t = document.createElementNS(NS, "text");
        t.setAttribute("x", x + 3); t.setAttribute("y", y + ROW - 5);
        var chars = Math.floor((w - 6) / 6.5);
        t.textContent = node.name.length > chars ? node.name.slice(0, Math.max(chars - 1, 0)) + "…" : node.name;
        g.appendChild(t);
      }
      svg.appendChild(g);
      return hit;
    }
    $("#flame-search").addEventListener("input", function (e) { term = e.target.value.toLowerCase(); draw(); });
    return { draw: draw, root: root, zoom: function (n) { focus = n; draw(); }, search: function (s) { term = s.toLowerCase(); draw(); } };
  })();

  // #selftest: opens every tab and writes what each shows into <pre id="selftest"> (for tests
  // that read the page through a headless browser); the other hashes open a tab.
  function selftest() {
    var out = [];
    $$(".tab").forEach(function (b) {
      show(b.dataset.tab);
      var panel = $("#tab-" + b.dataset.tab);
      if (b.dataset.tab === "performance") {
        var th = $("#functions th.sort[data-col='3']"); if (th) { th.click(); }
        var row = $("#functions tbody.fn tr.row"); if (row) { row.click(); }
        if (flame.root) {
          var names = Object.keys(flame.root.children);
          if (names.length) { flame.zoom(flame.root.children[names[0]]); flame.zoom(flame.root); flame.search(names[0]); }
          out.push("FLAME rects=" + $$("#flame rect").length);
        }
      }
      out.push("TAB " + b.dataset.tab + " visible=" + (panel.offsetHeight > 0) + " svgs=" + $$("svg", panel).length);
      out.push(panel.innerText);
    });
    out.push("ERRORS " + errors.length + (errors.length ? ": " + errors.join(" | ") : ""));
    out.push("SELFTEST DONE");
    var pre = $("#selftest");
    pre.textContent = out.join("\n");
    pre.hidden = false;
    show("debug");
  }
  var hash = location.hash.slice(1);
  if (hash === "selftest") {
    try { selftest(); } catch (e) { errors.push(String(e)); $("#selftest").textContent = "ERRORS " + errors.join(" | ") + "\nSELFTEST DONE"; }
  } else {
    show(hash || "debug");
  }
  window.addEventListener("resize", function () { flame.draw(); });
  // How long the page took to be ready, for the benchmark (milliseconds from navigation).
  document.documentElement.setAttribute("data-ready-ms", performance.now().toFixed(1));
})();
