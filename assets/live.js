/* Live panels for the Generative Models Playground: apply frame messages (playground/frames.py) and
 * draw them at the browser's own pace.
 *
 * - One pull at a time per tab (server.pull, a long poll): the server builds a frame only when the
 *   browser asks for one, so frames never queue and a click never waits behind them.
 * - Heatmaps and point/line layers of a live panel are drawn on a <canvas> under Plotly's SVG (a few ms);
 *   Plotly draws axes, titles, legend and colour bars, and is asked to redraw only when its part changed:
 *   at once for a new figure or a new colour range, otherwise at most once a second per panel, one panel
 *   per frame (curves), and everything on the last frame of a run.
 * - Zoom and pan survive frames (layout.uirevision for Plotly; the canvas follows the axes' ranges).
 * - Panels that are scrolled out of view or hidden are neither requested nor drawn.
 *
 * window.PGLive.attach(element, server, props, watch, cfg) is called by the tab's bus component
 * (playground/liveplot.py); PGLive.Panel is also used alone by `python -m playground bench frames`.
 */
(function () {
  "use strict";
  if (window.PGLive) return;

  const PLOTLY_INTERVAL = 1000; // ms between two redraws of one panel's Plotly part (curves, titles)
  const NARROW_PX = 420;  // a panel narrower than this (a phone) puts its colour bar under the plot
  const BAR_PX = 52;      // the room that takes: the bar, its ticks and its title
  const MIN_HEIGHT_PX = 220;  // a trimmed square panel keeps at least this height
  const LEGEND_ROW_PX = 20;   // a row of a horizontal legend
  const COLORBAR_INTERVAL = 400; // ... when a colour bar changed (the canvas has the new colours already)
  const CONFIG = {responsive: true, displaylogo: false, scrollZoom: false,
                  modeBarButtonsToRemove: ["select2d", "lasso2d", "toggleSpikelines", "autoScale2d"]};
  const now = () => performance.now();
  const nextFrame = () => new Promise((r) => requestAnimationFrame(() => r()));
  const yieldTask = () => new Promise((r) => setTimeout(r, 0));
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // --- typed arrays ({dtype, bdata, shape} from playground/plots.to_json) -------------------------------
  const CTORS = {f4: Float32Array, f8: Float64Array, i4: Int32Array, i2: Int16Array, i1: Int8Array,
                 u1: Uint8Array, u2: Uint16Array, u4: Uint32Array};
  function isSpec(v) { return v && typeof v === "object" && typeof v.bdata === "string" && typeof v.dtype === "string"; }
  function decodeSpec(v) {
    const bin = atob(v.bdata);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    const C = CTORS[v.dtype] || Float32Array;
    const flat = new C(bytes.buffer, 0, bytes.length / C.BYTES_PER_ELEMENT);
    if (!v.shape) return flat;
    const shape = String(v.shape).split(",").map(Number);
    if (shape.length !== 2) return flat;
    const rows = [];
    for (let r = 0; r < shape[0]; r++) rows.push(flat.subarray(r * shape[1], (r + 1) * shape[1]));
    rows.flat = flat;
    return rows;
  }
  function decodeAll(o) {
    if (Array.isArray(o)) { for (let i = 0; i < o.length; i++) o[i] = decodeAll(o[i]); return o; }
    if (isSpec(o)) return decodeSpec(o);
    if (o && typeof o === "object") { for (const k in o) o[k] = decodeAll(o[k]); }
    return o;
  }
  function concat(a, b) {
    if (a && b && a.constructor === b.constructor && a.constructor !== Array) {
      const out = new a.constructor(a.length + b.length); out.set(a); out.set(b, a.length); return out;
    }
    return Array.from(a || []).concat(Array.from(b || []));
  }
  // set obj[a][b][c] for the dotted path "a.b.c"; null removes; {tail: k, v} replaces everything from k on
  function setPath(obj, path, value) {
    const keys = path.split(".");
    let o = obj;
    for (let i = 0; i < keys.length - 1; i++) {
      if (o[keys[i]] === null || typeof o[keys[i]] !== "object") o[keys[i]] = {};
      o = o[keys[i]];
    }
    const last = keys[keys.length - 1];
    if (value === null) { delete o[last]; return; }
    if (value && typeof value === "object" && "tail" in value && "v" in value && !Array.isArray(value)) {
      const old = o[last];
      const head = old && old.subarray ? old.subarray(0, value.tail) : Array.from(old || []).slice(0, value.tail);
      o[last] = concat(head, decodeAll(value.v));
      return;
    }
    o[last] = decodeAll(value);
  }

  // --- colours -------------------------------------------------------------------------------------------
  const colorCache = new Map();
  let colorCtx = null;
  function rgba(str) {
    if (Array.isArray(str)) return str;
    let c = colorCache.get(str);
    if (c) return c;
    if (!colorCtx) colorCtx = document.createElement("canvas").getContext("2d", {willReadFrequently: true});
    colorCtx.clearRect(0, 0, 1, 1);
    colorCtx.fillStyle = "#000";
    colorCtx.fillStyle = String(str);
    colorCtx.fillRect(0, 0, 1, 1);
    const d = colorCtx.getImageData(0, 0, 1, 1).data;
    c = [d[0], d[1], d[2], d[3] / 255];
    colorCache.set(str, c);
    return c;
  }
  function css(c, alpha) { return `rgba(${c[0]},${c[1]},${c[2]},${(c[3] * (alpha === undefined ? 1 : alpha)).toFixed(3)})`; }
  function lut(scale, reverse) { // 256 RGBA entries along a [[f, colour], ...] scale
    const stops = scale.map(([f, col]) => [Number(f), rgba(col)]);
    if (reverse) stops.reverse().forEach((s) => { s[0] = 1 - s[0]; });
    const out = new Uint8ClampedArray(256 * 4);
    let j = 0;
    for (let i = 0; i < 256; i++) {
      const t = i / 255;
      while (j < stops.length - 2 && stops[j + 1][0] < t) j++;
      const [f0, c0] = stops[j], [f1, c1] = stops[Math.min(j + 1, stops.length - 1)];
      const u = f1 > f0 ? Math.min(1, Math.max(0, (t - f0) / (f1 - f0))) : 0;
      for (let k = 0; k < 3; k++) out[i * 4 + k] = c0[k] + u * (c1[k] - c0[k]);
      out[i * 4 + 3] = 255 * (c0[3] + u * (c1[3] - c0[3]));
    }
    return out;
  }

  // --- a tiny subset of Plotly's hovertemplate: %{x:.2f}, %{z:.3g}, %{text}, %{customdata:.3f} --------
  function fmt(v, spec) {
    if (v === undefined || v === null) return "";
    if (typeof v !== "number") return String(v);
    if (!isFinite(v)) return String(v);
    const m = /^\.(\d+)([fgep%])$/.exec(spec || "");
    if (!m) return String(Math.round(v * 1e4) / 1e4);
    const p = Number(m[1]);
    switch (m[2]) {
      case "f": return v.toFixed(p);
      case "e": return v.toExponential(p);
      case "%": return (v * 100).toFixed(p) + "%";
      default: return Number(v.toPrecision(Math.max(1, p))).toString();
    }
  }
  function hoverText(template, vals) {
    return String(template).replace(/<extra>.*?<\/extra>/g, "")
      .replace(/%\{(\w+)(?::([^}]*))?\}/g, (_, k, spec) => fmt(vals[k], spec));
  }

  // --- marker shapes ---------------------------------------------------------------------------------------
  function addMarker(ctx, symbol, x, y, r) {
    switch (symbol) {
      case "x": case "x-thin": {
        const a = r * 0.75; ctx.moveTo(x - a, y - a); ctx.lineTo(x + a, y + a); ctx.moveTo(x + a, y - a); ctx.lineTo(x - a, y + a); break;
      }
      case "cross": ctx.moveTo(x - r, y); ctx.lineTo(x + r, y); ctx.moveTo(x, y - r); ctx.lineTo(x, y + r); break;
      case "square": ctx.moveTo(x + r, y); ctx.rect(x - r, y - r, 2 * r, 2 * r); break;
      case "diamond": ctx.moveTo(x + r, y); ctx.lineTo(x, y + r); ctx.lineTo(x - r, y); ctx.lineTo(x, y - r); ctx.closePath(); break;
      case "star": {
        const R = r * 1.25, rin = R * 0.45;
        for (let k = 0; k < 10; k++) {
          const a = -Math.PI / 2 + k * Math.PI / 5, rr = k % 2 ? rin : R;
          const px = x + rr * Math.cos(a), py = y + rr * Math.sin(a);
          if (k === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
        }
        ctx.closePath(); break;
      }
      default: ctx.moveTo(x + r, y); ctx.arc(x, y, r, 0, 2 * Math.PI);
    }
  }
  const STROKED = new Set(["x", "x-thin", "cross"]);
  function dashArray(dash, w) {
    const d = Math.max(w, 3);
    return {dot: [d, d], dash: [3 * d, 3 * d], longdash: [5 * d, 5 * d], dashdot: [3 * d, d, d, d],
            longdashdot: [5 * d, 2 * d, d, 2 * d]}[dash] || [];
  }

  // --- one panel: a Plotly div plus a canvas for its live layers ------------------------------------------
  class Panel {
    constructor(elemId, root) {
      this.elemId = elemId;
      this.root = root || null;   // the element the panel was created on (re-created by the page: reset)
      this.div = null;
      this.fig = null;            // {data, layout} as given to Plotly
      this.layers = [];           // canvas traces
      this.canvas = null;
      this.plotlyDirty = false;
      this.plotlyUrgent = false;            // a new figure, a new layout: draw it now
      this.plotlySoon = false;              // a colour bar changed: soon (COLORBAR_INTERVAL)
      this.canvasDirty = false;
      this.lastPlotly = -1e9;
      this.range = null;          // axis ranges while the user pans (plotly_relayouting)
      this.dragging = false;
      this.frames = 0;
      this.t_canvas = 0;          // ms spent drawing the canvas, and in Plotly (benchmarks read these)
      this.t_plotly = 0;
      this.hoverLayers = [];
      this.tip = null;
    }

    bind(div) {
      if (this.div === div) return;
      this.div = div;
      this.fig = null;
      this.layers = [];
      this.canvas = null;
      div.addEventListener("pointerdown", () => { this.dragging = true; }, true);
      window.addEventListener("pointerup", () => { this.dragging = false; }, true);
      div.addEventListener("mousemove", (e) => this.hover(e));
      div.addEventListener("mouseleave", () => this.hideTip());
      // a rotated phone, a resized window: fit the figure to the new width at the next paint
      window.addEventListener("resize", () => { if (this.fig && this.div === div) this.plotlyDirty = this.plotlyUrgent = true; });
    }

    apply(msg) {
      if (msg.full) {
        const f = msg.full;
        this.fig = {data: decodeAll(f.data), layout: decodeAll(f.layout)};
        this.layers = decodeAll(f.canvas || []);
        this.layers.forEach((l) => { l._img = null; });
        this.plotlyDirty = this.plotlyUrgent = true;
        this.canvasDirty = true;
        return;
      }
      if (!this.fig) return;
      for (const i in msg.restyle || {}) {
        const tr = this.fig.data[Number(i)];
        if (!tr) continue;
        for (const path in msg.restyle[i]) setPath(tr, path, msg.restyle[i][path]);
        this.plotlyDirty = true;
        if (this.layers.some((l) => l.stub === Number(i))) this.plotlySoon = true; // a colour bar or legend
      }
      for (const path in msg.relayout || {}) {
        const v = msg.relayout[path];
        const old = path === "title.text" && this.fig.layout.title ? this.fig.layout.title.text : null;
        setPath(this.fig.layout, path, v);
        if (path === "title.text" && this.fastTitle(old, v)) continue;
        this.plotlyDirty = true;
        if (!path.startsWith("title") && !path.startsWith("yaxis.range") && !path.startsWith("annotations")) {
          this.plotlyUrgent = true;
        }
      }
      for (const i in msg.canvas || {}) {
        const l = this.layers[Number(i)];
        if (!l) continue;
        for (const path in msg.canvas[i]) setPath(l, path, msg.canvas[i][path]);
        l._img = null;
        this.canvasDirty = true;
      }
    }

    // A title whose change is plain text ("— step 1,234"): rewrite that text in the SVG, no Plotly redraw.
    // Markup (<sub>, <sup>) before the change is left as Plotly drew it.
    fastTitle(oldText, text) {
      if (!this.div || typeof oldText !== "string" || typeof text !== "string") return false;
      const el = this.div.querySelector(".g-gtitle .gtitle");
      if (!el) return false;
      let i = 0;
      while (i < oldText.length && i < text.length && oldText[i] === text[i]) i++;
      const oldTail = oldText.slice(i), newTail = text.slice(i);
      if (/[<>&]/.test(oldTail + newTail) || /<[^>]*$/.test(oldText.slice(0, i))) return false;
      const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
      let last = null;
      while (walker.nextNode()) last = walker.currentNode;
      if (!last || !last.data.endsWith(oldTail)) return false;
      last.data = last.data.slice(0, last.data.length - oldTail.length) + newTail;
      return true;
    }

    // A title longer than the panel is wide (a phone, a narrow window) wraps onto more lines, the panel growing
    // by a line each; the server wraps for a half-page panel only (plots.wrap_title).
    fitTitle(layout) {
      const title = layout && layout.title;
      const text = title && typeof title.text === "string" ? title.text : null;
      const width = this.div ? this.div.clientWidth : 0;
      if (!text || !width) return layout;
      const perLine = Math.max(18, Math.floor((width - 24) / 7.4));
      const visible = (w) => w.replace(/<[^>]+>/g, "").length;
      const given = text.split(/<br\s*\/?>/i);
      const lines = [];
      for (const line of given) {
        let cur = "";
        for (const word of line.split(" ")) {
          if (cur && visible(cur) + 1 + visible(word) > perLine) { lines.push(cur); cur = word; }
          else cur = cur ? cur + " " + word : word;
        }
        lines.push(cur);
      }
      const extra = lines.length - given.length;
      if (extra <= 0) return layout;
      const LINE = 18;
      const margin = layout.margin || {};
      const out = Object.assign({}, layout, {
        title: Object.assign({}, title, {text: lines.join("<br>"), yref: "container", y: 1, yanchor: "top",
                                         pad: {t: 4 + LINE * (lines.length - 1)}}),
        margin: Object.assign({}, margin, {t: (margin.t || 40) + LINE * extra}),
      });
      if (layout.height) out.height = layout.height + LINE * extra;
      return out;
    }

    // The figure fitted to the panel's real width (the server lays it out for a half-page panel). On a narrow
    // panel (a phone) a colour bar goes under the plot instead of beside it, where it took a quarter of the
    // width, and so does a legend beside the plot. Then measured corrections (refit): room above the plot for a
    // legend that wraps onto more rows than the server allowed for (it ran into the title), room under it for a
    // legend below the plot that ran off the panel, and a square x₁/x₂ box that the width limits gives back the
    // height it leaves empty above and below it.
    fitFigure() {
      const width = this.div.clientWidth;
      if (width !== this.fitWidth) { this.fitWidth = width; this.pad = 0; this.padBelow = 0; this.trim = 0; }
      let layout = this.fitTitle(this.fig.layout);
      let data = this.fig.data;
      if (!layout.height) return {data, layout};
      const bars = [];
      data.forEach((tr, i) => {
        if (!tr || tr.visible === false) return;
        if (["heatmap", "contour", "histogram2d"].includes(tr.type) && tr.showscale !== false) bars.push([i, false]);
        else if (tr.marker && tr.marker.showscale) bars.push([i, true]);
      });
      const narrow = width && width < NARROW_PX;
      const lg = layout.legend || {};
      const besideLegend = narrow && layout.showlegend !== false && lg.orientation === "v" && (lg.x ?? 1.02) >= 1;
      const barBelow = narrow && bars.length === 1;
      const margin = layout.margin || {};
      const below = margin.b || 45;  // the x axis's ticks and title, under the plot
      let legendRoom = 0;
      if (besideLegend) {  // two entries a row, under the x axis's title
        const n = data.filter((tr) => tr && tr.showlegend !== false && tr.name).length;
        legendRoom = Math.ceil(n / 2) * LEGEND_ROW_PX + 6;
      }
      const t = (margin.t || 40) + (this.pad || 0);
      const b = below + (barBelow ? BAR_PX : 0) + legendRoom + (this.padBelow || 0);
      const r = besideLegend ? 10 : margin.r;
      layout = Object.assign({}, layout, {margin: Object.assign({}, margin, {t, b, r}),
                                          height: layout.height + (t - (margin.t || 40)) + (b - below) - this.trim});
      const plotH = Math.max(60, layout.height - t - b);
      if (besideLegend) {
        layout.legend = Object.assign({}, lg, {orientation: "h", x: 0, xanchor: "left", y: -(below + 2) / plotH,
                                               yanchor: "top"});
      }
      if (barBelow) {  // the bar's top where the x axis's title (and a legend moved under it) end, in the plot's
        // own units: Plotly puts a bar placed by the page's bottom edge over its own title
        const [i, onMarker] = bars[0];
        const tr = data[i];
        const old = (onMarker ? tr.marker.colorbar : tr.colorbar) || {};
        const bar = Object.assign({}, old, {orientation: "h", x: 0.5, xanchor: "center", xref: "paper",
                                            y: -(below + legendRoom + 16) / plotH, yanchor: "top", yref: "paper",
                                            len: 0.9, thickness: 10,
                                            title: Object.assign({}, old.title || {}, {side: "top"})});
        data = data.slice();
        data[i] = onMarker ? Object.assign({}, tr, {marker: Object.assign({}, tr.marker, {colorbar: bar})})
          : Object.assign({}, tr, {colorbar: bar});
      }
      return {data, layout};
    }

    // Measure what was drawn: true when the room above or under the plot or the trimmed height should change.
    refit() {
      const fl = this.div._fullLayout;
      const lay = this.fig.layout || {};
      if (!fl || !fl._size || !lay.height || !this.div.clientWidth) return false;  // not laid out: nothing to measure
      let changed = false;
      const legend = this.div.querySelector(".legend");
      const title = this.div.querySelector(".g-gtitle .gtitle");
      const svg = this.div.querySelector(".main-svg");
      if (legend && lay.showlegend !== false && fl.legend) {
        const box = legend.getBoundingClientRect();
        const plotTop = svg.getBoundingClientRect().top + fl._size.t;
        if (box.bottom <= plotTop + 2 && title) {  // above the plot, under the title
          const gap = box.top - title.getBoundingClientRect().bottom;
          // 6 px between the title and the legend: more room where they collide, less where a gap was left
          const want = Math.max(30 - ((lay.margin || {}).t || 40), this.pad + Math.ceil(6 - gap));
          if (Math.abs(want - this.pad) > 2 && (gap < 2 || gap > 16)) { this.pad = want; changed = true; }
        } else if (box.top > plotTop + fl._size.h) {  // under the plot: within the panel
          const left = svg.getBoundingClientRect().bottom - box.bottom;
          const want = Math.max(0, this.padBelow + Math.ceil(6 - left));
          if (Math.abs(want - this.padBelow) > 2 && (left < 2 || this.padBelow > 0)) {
            this.padBelow = want; changed = true;
          }
        }
      }
      if (lay.yaxis && lay.yaxis.scaleanchor === "x" && fl.xaxis && fl.yaxis && fl.xaxis._length) {
        const slackY = fl._size.h - fl.yaxis._length;   // a square box limited by the width: space above and below
        const slackX = fl._size.w - fl.xaxis._length;   // ... limited by the height: space beside it
        let trim = this.trim;
        if (slackY > 6) trim += slackY - 2;
        else if (slackX > 6 && trim > 0) trim = Math.max(0, trim - slackX);
        trim = Math.min(trim, Math.max(0, lay.height - MIN_HEIGHT_PX));
        if (Math.abs(trim - this.trim) > 2) { this.trim = trim; changed = true; }
      }
      return changed;
    }

    // The panel's box follows the height it was drawn at (a title or legend on more rows, a trimmed square box).
    fitBox(layout) {
      if (!layout.height) return;
      const h = Math.round(layout.height) + "px";
      if (this.div.style.height !== h) this.div.style.height = h;
      const held = this.div.closest(".html-container");  // gr.HTML's min_height, the room held before a figure came
      if (held && held.style.minHeight !== "0px") held.style.minHeight = "0px";
    }

    needsPlotly(t, final) {
      if (!this.plotlyDirty || this.dragging || !this.div) return false;
      return this.plotlyUrgent || final || t - this.lastPlotly >= (this.plotlySoon ? COLORBAR_INTERVAL : PLOTLY_INTERVAL);
    }

    async drawPlotly() {
      if (!window.Plotly || !this.fig) return;
      this.plotlyDirty = this.plotlyUrgent = this.plotlySoon = false;
      const t0 = this.lastPlotly = now();
      const first = !this.div._pgHooked;
      this.inReact = true;
      try {
        let fig = this.fitFigure();
        await window.Plotly.react(this.div, fig.data, fig.layout, CONFIG);
        // the legend's rows and the square box's slack are measured once drawn; at most two more tries
        for (let i = 0; i < 2 && this.refit(); i++) {
          fig = this.fitFigure();
          await window.Plotly.react(this.div, fig.data, fig.layout, CONFIG);
        }
        this.fitBox(fig.layout);
      } finally {
        this.inReact = false;
      }
      if (first) {
        this.div._pgHooked = true;
        this.div.on("plotly_afterplot", () => { this.range = null; if (!this.inReact) this.drawCanvas(); });
        this.div.on("plotly_relayouting", (e) => { this.range = e; this.drawCanvas(); });
        this.div.on("plotly_restyle", () => this.drawCanvas());
        this.div.on("plotly_legendclick", () => { setTimeout(() => this.drawCanvas(), 0); });
      }
      this.t_plotly += now() - t0;
      if (this.layers.length) this.drawCanvas();
      else this.countFrame();
    }

    countFrame() {  // what tests and benchmarks read: how many times this panel was drawn
      this.frames += 1;
      if (this.div) this.div.dataset.frames = String(this.frames);
    }

    axes() {
      const fl = this.div && this.div._fullLayout;
      if (!fl || !fl.xaxis || !fl.yaxis || fl.xaxis._length === undefined) return null;
      const xa = fl.xaxis, ya = fl.yaxis;
      const r = this.range || {};
      const xr = [r["xaxis.range[0]"] ?? xa.range[0], r["xaxis.range[1]"] ?? xa.range[1]];
      const yr = [r["yaxis.range[0]"] ?? ya.range[0], r["yaxis.range[1]"] ?? ya.range[1]];
      return {left: xa._offset, top: ya._offset, w: xa._length, h: ya._length, xr: xr.map(Number), yr: yr.map(Number)};
    }

    ensureCanvas() {
      const box = this.div.querySelector(".svg-container");
      if (!box) return null;
      if (!this.canvas || this.canvas.parentNode !== box) {
        this.canvas = document.createElement("canvas");
        this.canvas.className = "pg-layer";
        this.canvas.style.position = "absolute";
        this.canvas.style.pointerEvents = "none";
        box.insertBefore(this.canvas, box.firstChild);
      }
      return this.canvas;
    }

    visible(layer) {
      const fd = this.div._fullData && this.div._fullData[layer.stub];
      const v = fd ? fd.visible : layer.visible;
      return v === true || v === undefined;
    }

    drawCanvas() {
      const t0 = now();
      this.canvasDirty = false;
      try { this.paintCanvas(); } finally { this.t_canvas += now() - t0; }
    }

    paintCanvas() {
      if (!this.div || !this.layers.length) { if (this.canvas) this.canvas.style.display = "none"; return; }
      const ax = this.axes();
      const cv = ax && this.ensureCanvas();
      if (!cv) return;
      const dpr = window.devicePixelRatio || 1;
      const W = Math.max(1, Math.round(ax.w)), H = Math.max(1, Math.round(ax.h));
      if (cv.width !== Math.round(W * dpr) || cv.height !== Math.round(H * dpr)) {
        cv.width = Math.round(W * dpr); cv.height = Math.round(H * dpr);
      }
      Object.assign(cv.style, {display: "block", left: ax.left + "px", top: ax.top + "px", width: W + "px", height: H + "px"});
      const ctx = cv.getContext("2d");
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, W, H);
      const bg = this.fig && this.fig.layout.meta && this.fig.layout.meta.plot_bgcolor;
      if (bg) { ctx.fillStyle = bg; ctx.fillRect(0, 0, W, H); }
      const sx = (v) => (v - ax.xr[0]) / (ax.xr[1] - ax.xr[0]) * W;
      const sy = (v) => (ax.yr[1] - v) / (ax.yr[1] - ax.yr[0]) * H;
      this.hoverLayers = [];
      for (const layer of this.layers) {
        if (!this.visible(layer)) continue;
        if (layer.type === "heatmap") this.drawHeatmap(ctx, layer, sx, sy);
        else this.drawScatter(ctx, layer, sx, sy);
        if (layer.hovertemplate) this.hoverLayers.push(layer);
      }
      this.geom = {ax, sx, sy, W, H};
      this.countFrame();
    }

    drawHeatmap(ctx, L, sx, sy) {
      const q = L.zq && (L.zq.flat || L.zq);
      if (!q) return;
      const ny = L.zq.length, nx = q.length / ny;
      if (!L._img) {
        const img = L._cv || (L._cv = document.createElement("canvas"));  // reused frame after frame
        if (img.width !== nx || img.height !== ny) { img.width = nx; img.height = ny; }
        const ictx = img.getContext("2d");
        const data = ictx.createImageData(nx, ny);
        const table = lut(L.colorscale, L.reversescale);
        const span = (L.zhi - L.zlo) / 65534, crange = (L.zmax - L.zmin) || 1, op = L.opacity ?? 1;
        for (let r = 0; r < ny; r++) {
          const src = (ny - 1 - r) * nx;
          for (let c = 0; c < nx; c++) {
            const code = q[src + c], o = (r * nx + c) * 4;
            if (!code) { data.data[o + 3] = 0; continue; }
            const v = L.zlo + (code - 1) * span;
            const t = Math.min(255, Math.max(0, Math.round((v - L.zmin) / crange * 255))) * 4;
            data.data[o] = table[t]; data.data[o + 1] = table[t + 1]; data.data[o + 2] = table[t + 2];
            data.data[o + 3] = table[t + 3] * op;
          }
        }
        ictx.putImageData(data, 0, 0);
        L._img = img; L._nx = nx; L._ny = ny;
      }
      const dx = nx > 1 ? (L.x1 - L.x0) / (nx - 1) : 1, dy = ny > 1 ? (L.y1 - L.y0) / (ny - 1) : 1;
      const x0 = sx(L.x0 - dx / 2), x1 = sx(L.x1 + dx / 2), y0 = sy(L.y1 + dy / 2), y1 = sy(L.y0 - dy / 2);
      ctx.imageSmoothingEnabled = !!L.smooth;
      ctx.drawImage(L._img, x0, y0, x1 - x0, y1 - y0);
    }

    drawScatter(ctx, L, sx, sy) {
      const xs = L.x || [], ys = L.y || [], n = Math.min(xs.length, ys.length);
      if (!n) return;
      const mode = L.mode || "markers";
      ctx.save();
      ctx.globalAlpha = L.opacity ?? 1;
      if (mode.includes("lines")) {
        const line = L.line || {};
        const w = line.width ?? 2;
        ctx.lineWidth = w;
        ctx.lineJoin = "round";
        ctx.strokeStyle = css(rgba(line.color || "#444"));
        ctx.setLineDash(dashArray(line.dash, w));
        ctx.beginPath();
        let pen = false;
        for (let i = 0; i < n; i++) {
          const x = xs[i], y = ys[i];
          if (x === null || y === null || !isFinite(x) || !isFinite(y)) { pen = false; continue; }
          if (pen) ctx.lineTo(sx(x), sy(y)); else { ctx.moveTo(sx(x), sy(y)); pen = true; }
        }
        ctx.stroke();
        ctx.setLineDash([]);
      }
      if (mode.includes("markers")) this.drawMarkers(ctx, L, xs, ys, n, sx, sy);
      if (mode.includes("text") && L.text) {
        const tf = L.textfont || {}, m = L.marker || {};
        const sizes = m.size && m.size.length !== undefined ? m.size : null;
        const top = String(L.textposition || "top center").startsWith("top");
        ctx.globalAlpha = L.opacity ?? 1;
        ctx.fillStyle = css(rgba(tf.color || "#222"));
        ctx.font = `${tf.size || 12}px Inter, Helvetica, Arial, sans-serif`;
        ctx.textAlign = "center";
        ctx.textBaseline = top ? "bottom" : "middle";
        for (let i = 0; i < n; i++) {
          const s = sizes ? sizes[i] : (m.size ?? 6);
          ctx.fillText(String(L.text[i] ?? ""), sx(xs[i]), sy(ys[i]) - (top ? s / 2 + 1 : 0));
        }
      }
      ctx.restore();
    }

    drawMarkers(ctx, L, xs, ys, n, sx, sy) {
      const m = L.marker || {};
      const sizes = m.size && m.size.length !== undefined ? m.size : null;
      const size = sizes ? 6 : (m.size ?? 6);
      const symbol = m.symbol || "circle";
      const stroked = STROKED.has(symbol);
      const lineW = m.line ? (m.line.width ?? 0) : 0;
      const lineC = m.line && m.line.color ? css(rgba(m.line.color)) : null;
      ctx.globalAlpha = (L.opacity ?? 1) * (m.opacity ?? 1);
      // colour buckets: one path per colour, so a thousand points are a handful of fills
      const buckets = new Map();
      const color = m.color;
      let table = null, cmin = 0, cmax = 1;
      const numeric = color && color.length !== undefined && typeof color !== "string" && typeof color[0] === "number";
      if (numeric) {
        table = lut(m.colorscale || [[0, "#440154"], [1, "#fde725"]], m.reversescale);
        cmin = m.cmin ?? Math.min(...color); cmax = m.cmax ?? Math.max(...color);
      }
      for (let i = 0; i < n; i++) {
        const x = xs[i], y = ys[i];
        if (x === null || y === null || !isFinite(x) || !isFinite(y)) continue;
        let key;
        if (numeric) {
          const t = Math.min(255, Math.max(0, Math.round((color[i] - cmin) / ((cmax - cmin) || 1) * 255)));
          key = t;
        } else if (Array.isArray(color)) key = color[i];
        else key = color || "#1f77b4";
        let b = buckets.get(key);
        if (!b) { b = []; buckets.set(key, b); }
        b.push(i);
      }
      for (const [key, idx] of buckets) {
        const fill = numeric
          ? `rgba(${table[key * 4]},${table[key * 4 + 1]},${table[key * 4 + 2]},${table[key * 4 + 3] / 255})`
          : css(rgba(key));
        ctx.beginPath();
        for (const i of idx) addMarker(ctx, symbol, sx(xs[i]), sy(ys[i]), (sizes ? sizes[i] : size) / 2);
        if (stroked) {
          ctx.lineWidth = Math.max(1.5, size / 4);
          ctx.strokeStyle = fill;
          ctx.stroke();
        } else {
          ctx.fillStyle = fill;
          ctx.fill();
          if (lineW > 0 && lineC) { ctx.lineWidth = lineW; ctx.strokeStyle = lineC; ctx.stroke(); }
        }
      }
    }

    // --- hover over canvas layers: the nearest marker with a hover template, else the heatmap's value ---
    hover(e) {
      if (!this.hoverLayers.length || !this.canvas || !this.geom || this.dragging) return this.hideTip();
      const rect = this.canvas.getBoundingClientRect();
      const px = e.clientX - rect.left, py = e.clientY - rect.top;
      const {ax, sx, sy, W, H} = this.geom;
      if (px < 0 || py < 0 || px > W || py > H) return this.hideTip();
      const x = ax.xr[0] + px / W * (ax.xr[1] - ax.xr[0]), y = ax.yr[1] - py / H * (ax.yr[1] - ax.yr[0]);
      let text = null, best = 100;
      for (const L of this.hoverLayers) {
        if (L.type === "heatmap" || !L.x) continue;
        for (let i = 0; i < L.x.length; i++) {
          const d = (sx(L.x[i]) - px) ** 2 + (sy(L.y[i]) - py) ** 2;
          if (d < best) {
            best = d;
            const cd = L.customdata ? L.customdata[i] : undefined;
            text = hoverText(L.hovertemplate, {x: L.x[i], y: L.y[i], text: L.text ? L.text[i] : "", customdata: cd});
          }
        }
      }
      if (text === null) {
        for (let k = this.hoverLayers.length - 1; k >= 0 && text === null; k--) {
          const L = this.hoverLayers[k];
          if (L.type !== "heatmap" || !L.zq) continue;
          const q = L.zq.flat || L.zq, ny = L.zq.length, nx = q.length / ny;
          const c = Math.round((x - L.x0) / ((L.x1 - L.x0) || 1) * (nx - 1));
          const r = Math.round((y - L.y0) / ((L.y1 - L.y0) || 1) * (ny - 1));
          if (c < 0 || r < 0 || c >= nx || r >= ny) continue;
          const code = q[r * nx + c];
          const z = code ? L.zlo + (code - 1) * (L.zhi - L.zlo) / 65534 : NaN;
          text = hoverText(L.hovertemplate, {x, y, z});
        }
      }
      if (text === null) return this.hideTip();
      if (!this.tip || !this.tip.isConnected) {
        this.tip = document.createElement("div");
        this.tip.className = "pg-tip";
        Object.assign(this.tip.style, {position: "absolute", pointerEvents: "none", background: "rgba(255,255,255,0.94)",
          border: "1px solid #999", borderRadius: "3px", padding: "2px 5px", font: "11px Inter, Helvetica, Arial, sans-serif",
          color: "#111", whiteSpace: "nowrap", zIndex: 10});
        this.div.style.position = this.div.style.position || "relative";
        this.div.appendChild(this.tip);
      }
      this.tip.innerHTML = text;
      const host = this.div.getBoundingClientRect();
      this.tip.style.left = (e.clientX - host.left + 12) + "px";
      this.tip.style.top = (e.clientY - host.top + 12) + "px";
      this.tip.style.display = "block";
    }

    hideTip() { if (this.tip) this.tip.style.display = "none"; }

    // for tests and benchmarks: what the panel shows, Plotly's traces and canvas layers alike
    traces() {
      if (!this.fig) return [];
      const byStub = new Map(this.layers.map((l) => [l.stub, l]));
      return this.fig.data.map((t, i) => {
        const l = byStub.get(i);
        const src = l || t;
        const n = l && l.type === "heatmap" ? (l.zq ? (l.zq.flat || l.zq).length : 0)
          : (src.x && src.x.length !== undefined ? src.x.length : 0);
        const cb = (t.marker && t.marker.colorbar) || t.colorbar;
        return {name: String(src.name || t.name || ""), type: src.type || "scatter", canvas: !!l,
                visible: this.div && this.div._fullData && this.div._fullData[i] ? this.div._fullData[i].visible
                  : (t.visible ?? true), n,
                colorbar: cb && cb.title ? (cb.title.text ?? cb.title) : null,
                zmin: l ? l.zmin ?? null : null, zmax: l ? l.zmax ?? null : null};
      });
    }

    trace(prefix) { // a trace's data by the start of its name: {name, type, x, y} (heatmaps: z values)
      const hit = this.traces().findIndex((t) => t.name.startsWith(prefix));
      if (hit < 0) return null;
      const l = this.layers.find((x) => x.stub === hit), t = this.fig.data[hit];
      const src = l || t;
      if (src.type === "heatmap" && l) {
        const q = l.zq.flat || l.zq, z = new Array(q.length);
        for (let i = 0; i < q.length; i++) z[i] = q[i] ? l.zlo + (q[i] - 1) * (l.zhi - l.zlo) / 65534 : null;
        return {name: l.name, type: "heatmap", z, nx: q.length / l.zq.length, ny: l.zq.length};
      }
      const arr = (v) => (v && v.length !== undefined && typeof v !== "string" ? Array.from(v) : v);
      return {name: String(src.name || ""), type: src.type || "scatter", x: arr(src.x), y: arr(src.y),
              text: arr(src.text)};
    }

    inspect() {
      const fl = this.div && this.div._fullLayout;
      const lay = this.fig ? this.fig.layout : {};
      const traces = this.traces();
      const heat = this.layers.find((l) => l.type === "heatmap" && l.zq);
      let zsum = null;
      if (heat) { const q = heat.zq.flat || heat.zq; zsum = 0; for (let i = 0; i < q.length; i++) zsum += q[i]; }
      return {
        frames: this.frames,
        title: lay.title ? (lay.title.text ?? lay.title) : "",
        xrange: fl && fl.xaxis ? fl.xaxis.range.slice() : null,
        yrange: fl && fl.yaxis ? fl.yaxis.range.slice() : null,
        ntraces: traces.length, names: traces.map((t) => t.name), types: traces.map((t) => t.type),
        canvas: traces.filter((t) => t.canvas).map((t) => t.name), traces, zsum,
        annotations: (lay.annotations || []).map((a) => String(a.text || "")),
      };
    }
  }

  // --- a tab's live area: status line, text blocks and panels, fed by one pull at a time ----------------
  class Area {
    constructor(element, server, cfg) {
      this.el = element;
      this.server = server;
      this.cfg = cfg;                       // {area, panels: {name: elem_id}, stop: elem_id of the Stop button}
      this.token = null;
      this.have = 0;
      this.panels = {};
      this.seen = new Map();                 // elem_id -> intersecting the viewport
      this.stats = {painted: 0, bytes: 0, frames: 0, plotly: 0, lastSeq: 0, msgs: 0, paintMs: 0};
      this.observer = new IntersectionObserver((entries) => {
        let newly = false;
        for (const e of entries) {
          const was = this.seen.get(e.target.id);
          this.seen.set(e.target.id, e.isIntersecting);
          if (e.isIntersecting && !was) newly = true;
        }
        if (newly) this.poke();
      }, {rootMargin: "200px"});
      // displayed at all (its tab open), whatever the scroll: a margin no page is taller than
      this.displayed = false;
      new IntersectionObserver((entries) => {
        for (const e of entries) this.displayed = e.isIntersecting;
        if (this.displayed) this.poke();
      }, {rootMargin: "1000000px"}).observe(this.el);
      let resized = null;  // the panels re-fit to a new width (Panel.fitFigure) at the next message: ask for it now
      window.addEventListener("resize", () => { clearTimeout(resized); resized = setTimeout(() => this.poke(), 250); });
      for (const name in cfg.panels) this.panel(name);
      this.loopRunning = false;
      this.running = false;                  // the last message said the run is going
      if (cfg.stop) {
        // Stop goes straight to the run (server.control) and, while a run is going, never becomes a
        // gradio event: one costs the page 100-300 ms of main thread with this many components
        document.addEventListener("click", (e) => {
          const btn = e.target && e.target.closest && e.target.closest("#" + cfg.stop);
          if (!btn || !this.token || !this.running) return;
          e.stopPropagation();
          e.preventDefault();
          this.control("stop");
        }, true);
      }
      if (cfg.train) {
        // Train also tells the run's channel at once ("queued"): the server says so if every training slot is
        // taken. The click goes on to gradio, which queues the run itself.
        document.addEventListener("click", (e) => {
          const btn = e.target && e.target.closest && e.target.closest("#" + cfg.train);
          if (btn && this.token) this.control("queued");
        }, true);
      }
      if (cfg.live && Object.keys(cfg.live).length) {
        // live sliders, checkboxes and radios: their value goes straight to the session (gradio keeps its own
        // copy for the next Train and fires no event for these). View options ("view.*") follow a drag.
        const sent = {};
        const send = (e, dragging) => {
          if (!this.token || !e.target || !e.target.closest) return;
          for (const id in cfg.live) {
            const host = document.getElementById(id);
            if (!host || !host.contains(e.target)) continue;
            const key = cfg.live[id], t = e.target;
            if (dragging && !key.startsWith("view.")) return;
            const value = t.type === "checkbox" ? t.checked
              : (t.type === "range" || t.type === "number") ? Number(t.value) : String(t.value);
            if (typeof value === "number" && !isFinite(value)) return;
            const last = sent[key];
            if (dragging && last && now() - last.t < 60) {  // at most ~16 a second while dragging
              clearTimeout(last.timer);
              last.timer = setTimeout(() => { sent[key] = {t: now()}; this.control("set", {key, value}); }, 60);
              return;
            }
            if (last) clearTimeout(last.timer);
            sent[key] = {t: now()};
            this.control("set", {key, value});
            return;
          }
        };
        document.addEventListener("change", (e) => send(e, false), true);
        document.addEventListener("input", (e) => send(e, true), true);
      }
    }

    control(name, value) {
      if (this.token && this.server.control) this.server.control({token: this.token, name, value}).catch(() => {});
    }

    setToken(t) {
      if (!t || t === this.token) return;
      this.token = t;
      this.have = 0;
      if (!this.loopRunning) this.loop();
    }

    // the bus (status line) is in the open tab; an IntersectionObserver says so without forcing a layout
    shown() { return this.el.isConnected && this.displayed; }

    panel(name) {
      const id = this.cfg.panels[name];
      const el = document.getElementById(id);
      const div = el && el.querySelector(".live-plot");
      let p = this.panels[name];
      if (!div) return null;
      if (!p || p.div !== div) {
        const fresh = !!p;
        p = new Panel(id, el);
        p.bind(div);
        p.fresh = fresh;
        this.panels[name] = p;
        this.observer.observe(el);
      }
      return p;
    }

    request() {
      const visible = [], reset = [];
      for (const name in this.cfg.panels) {
        const p = this.panel(name);
        if (!p || !this.seen.get(this.cfg.panels[name])) continue;  // hidden or scrolled away
        visible.push(name);
        if (!p.fig) reset.push(name);
      }
      return {token: this.token, have: this.have, visible, reset};
    }

    poke() { if (this.token && this.server.poke) this.server.poke({token: this.token}).catch(() => {}); }

    async loop() {
      this.loopRunning = true;
      let failures = 0;
      let lastPing = 0;
      while (this.token) {
        if (!this.shown()) {  // another tab is open: say the page is still here now and then
          if (now() - lastPing > 5000) { lastPing = now(); this.server.pull({token: this.token, idle: true}).catch(() => {}); }
          await sleep(250);
          continue;
        }
        let res;
        try {
          res = await this.server.pull(this.request());
          failures = 0;
        } catch (err) {
          failures += 1;
          await sleep(Math.min(5000, 300 * failures));
          continue;
        }
        if (!res) continue;
        let msg;
        try { msg = JSON.parse(res); } catch (err) { console.error("playground: a frame could not be read", err); continue; }
        if (msg.gone) { this.setStatus(msg.status || "This page's session has ended: reload the page."); break; }
        try {
          await this.paint(msg, res.length);
        } catch (err) {  // one bad frame must not end the loop; the next full figure repairs the panel
          console.error("playground: a frame could not be drawn", err);
          this.have = -1;
        }
      }
      this.loopRunning = false;
    }

    setStatus(html) {
      const s = this.el.querySelector(".pg-status");
      if (s && s._html !== html) { s.innerHTML = html; s._html = html; }
    }

    async paint(msg, bytes) {
      const t0 = now();
      if (msg.status !== undefined) this.setStatus(msg.status);
      for (const id in msg.texts || {}) {
        const el = document.getElementById(id);
        const target = el && (el.querySelector(".pg-text") || el);
        if (target && target._html !== msg.texts[id]) { target.innerHTML = msg.texts[id]; target._html = msg.texts[id]; }
      }
      const touched = [];
      for (const name in msg.panels || {}) {
        const p = this.panel(name);
        if (!p) continue;
        p.apply(msg.panels[name]);
        touched.push(p);
      }
      this.have = msg.seq;
      this.running = msg.final === false;
      this.stats.lastSeq = msg.seq;
      await nextFrame();
      let busy = 0;
      for (const p of touched) {
        if (p.canvasDirty && p.fig && !p.plotlyUrgent) { const a = now(); p.drawCanvas(); busy += now() - a; }
      }
      // Plotly: new figures and colour bars now; the rest one panel per frame, each at most once a second
      const t = now();
      const all = Object.values(this.panels);
      const urgent = all.filter((p) => p.plotlyDirty && (p.plotlyUrgent || msg.final) && !p.dragging);
      let due = urgent;
      if (!urgent.length) {  // the one waiting longest; a changed colour bar before a curve
        const waiting = all.filter((p) => p.needsPlotly(t, false))
          .sort((a, b) => (b.plotlySoon - a.plotlySoon) || (a.lastPlotly - b.lastPlotly));
        due = waiting.slice(0, 1);
      }
      for (const p of due) {
        await yieldTask(); // let a click or a key in between
        const a = now();
        await p.drawPlotly();
        busy += now() - a;
        this.stats.plotly += 1;
      }
      this.stats.painted += 1;
      this.stats.frames += touched.length ? 1 : 0;
      this.stats.bytes += bytes || 0;
      this.stats.msgs += 1;
      this.stats.paintMs += busy;
      this.stats.lastPaint = now();
      this.el.dataset.painted = String(this.stats.painted);
      return now() - t0;
    }
  }

  const PGLive = {areas: {}, Panel, Area, decodeAll, setPath};
  PGLive.attach = function (element, server, props, watch, cfg) {
    const area = new Area(element, server, cfg);
    PGLive.areas[cfg.area] = area;
    const take = () => { if (props.value) area.setToken(String(props.value)); };
    take();
    if (watch) watch("value", take);
    return area;
  };
  PGLive.panel = function (elemId) {
    for (const a of Object.values(PGLive.areas)) {
      for (const p of Object.values(a.panels)) if (p.elemId === elemId && p.fig) return p;
    }
    return null;
  };
  PGLive.inspect = (elemId) => { const p = PGLive.panel(elemId); return p ? p.inspect() : null; };
  PGLive.trace = (elemId, prefix) => { const p = PGLive.panel(elemId); return p ? p.trace(prefix) : null; };
  window.PGLive = PGLive;

  // A slider on a log10 scale (a learning rate) shows its value as people write it: "= 0.003", not just "-2.5".
  const fmtPow = (v) => {
    const x = Math.pow(10, v);
    if (!isFinite(x)) return '';
    return x >= 1e-3 && x < 1e4 ? String(+x.toPrecision(2)) : x.toExponential(1).replace('e-', 'e−');
  };
  const readout = (block) => {
    const num = block.querySelector('input[type=number]');
    if (!num || num.value === '') return;
    let out = block.querySelector('.log10-readout');
    if (!out) {
      out = document.createElement('span');
      out.className = 'log10-readout';
      const info = block.querySelector('[data-testid="block-info"]');
      (info || block).appendChild(out);
    }
    const text = ' = ' + fmtPow(parseFloat(num.value));
    if (out.textContent !== text) out.textContent = text;
  };
  const onInput = (e) => {
    const b = e.target && e.target.closest ? e.target.closest('.log10-slider') : null;
    if (b) readout(b);
  };
  document.addEventListener('input', onInput, true);
  document.addEventListener('change', onInput, true);
  // values set by the server (a link, a resumed run) change no input event: look again now and then
  setInterval(() => document.querySelectorAll('.log10-slider').forEach(readout), 700);
})();
