/* beholder review: the page. Plain JavaScript, no dependencies, nothing fetched but this server's /api.
 *
 * Review mode: a grid per group, sorted by score, drawn as a virtual list (only the lines on screen exist in the
 * DOM, so 100,000 rows scroll like 100). Keyboard first: arrows / j k move, y keep, n reject, s star, u undo,
 * Enter opens the large view. Decisions are sent one at a time, in order, and the server saves each before it
 * answers. The cursor lives in the URL (#row=ID), so a reload comes back to the same card.
 * A/B mode: one pair at a time, side by side; left / right / tie.
 * Static mode (a `--static` export): the same page, read-only, its data and images embedded (A/B: and the report).
 */
"use strict";
(() => {
  const CARD_W = 232, GAP = 14, HEADER_H = 44, GROUP_GAP = 22, TOP = 20, OVERSCAN = 700;
  const DIM_GROUP = {
    facial_brightness: "face", facial_feature_clarity: "face", facial_skin_tone: "face", facial_structure: "face",
    facial_contour_clarity: "face", facial_aesthetic: "face", outfit: "appearance", body_shape: "appearance",
    looks: "appearance", general_appearance_aesthetic: "appearance", environment: "environment", overall: "root",
  };
  const HEAD_SHORT = { regression: "reg", metavoter: "mv", expert: "exp" };
  const DECISION_KEYS = { y: "keep", n: "reject", s: "star" };
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const main = $("main"), spacer = $("spacer"), viewer = $("viewer"), help = $("help");

  const embedded = JSON.parse($("beholder-data").textContent || "null");
  const readOnly = Boolean(embedded);
  let data = null;
  let queue = Promise.resolve(); // writes go one after another, in the order they were made

  function api(path, body) {
    const init = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
    return fetch("api/" + path, init).then(async (res) => {
      if (!res.ok) throw new Error((await res.json().catch(() => ({}))).detail || res.statusText);
      return res.json();
    });
  }
  function send(path, body) {
    const done = queue.then(() => api(path, body));
    queue = done.catch(() => {});
    return done;
  }
  function imageUrl(id, rendition) {
    return readOnly ? embedded.images[id] || "data:," : `api/images/${id}/${rendition}`;
  }
  let toastTimer = 0;
  function toast(text) {
    const el = $("toast");
    el.textContent = text;
    el.classList.add("show");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => el.classList.remove("show"), 1600);
  }
  function typing(e) {
    return e.target.closest && e.target.closest("input, select, textarea");
  }

  // ---------------------------------------------------------------------------------------------- review
  const R = {
    rows: [], byId: new Map(), groupRows: new Map(), decisions: new Map(), items: [], lines: [], where: [], cols: 1, cardH: 300,
    cursor: 0, rendered: new Map(), filters: { levels: new Set(), min: null, max: null, decision: "all" },
  };

  function digits() {
    const span = data.scale ? data.scale[1] - data.scale[0] : 1;
    return span >= 50 ? 1 : span >= 4 ? 2 : 3;
  }
  const fmt = (v, d = 3) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));

  function startReview() {
    R.rows = data.rows;
    R.groupRows = new Map();
    for (const row of R.rows) {
      if (!R.groupRows.has(row.group)) R.groupRows.set(row.group, []);
      R.groupRows.get(row.group).push(row);
      row.rank = R.groupRows.get(row.group).length;
      R.byId.set(row.id, row);
    }
    for (const [id, decision] of Object.entries(data.decisions)) R.decisions.set(Number(id), decision);
    R.filters.levels = new Set(data.levels);
    R.digits = digits();
    $("title").textContent = [baseName(data.source), data.model && `model ${data.model}`].filter(Boolean).join(" · ");
    $("title").title = data.source;
    drawFilters();
    drawActions();
    R.cardH = measureCard();
    filter();
    R.cursor = initialCursor();
    layout();
    scrollToCursor(R.where[R.cursor] && R.lines[R.where[R.cursor].line].y > main.clientHeight / 2 ? "center" : undefined);
    paint();
    progress();
    main.addEventListener("scroll", () => requestAnimationFrame(paint), { passive: true });
    window.addEventListener("resize", () => { layout(); paint(); });
    main.addEventListener("click", (e) => {
      const card = e.target.closest(".card");
      if (!card) return;
      moveTo(R.items.findIndex((r) => r.id === Number(card.dataset.id)));
      if (e.detail > 1) openViewer();
    });
    main.addEventListener("error", (e) => {
      if (e.target.tagName === "IMG") e.target.replaceWith(Object.assign(document.createElement("div"), { className: "broken", textContent: "cannot read this image" }));
    }, true);
    document.addEventListener("keydown", reviewKey);
  }

  function drawFilters() {
    const levels = data.levels.map((l) => `<button class="chip on" data-level="${l}" style="--lvl:var(--${l})"><i></i>${l}</button>`).join("");
    const seg = ["all", "undecided", "keep", "star", "reject"].map((d) => `<button data-decision="${d}" class="${d === "all" ? "on" : ""}">${d}</button>`).join("");
    $("filters").innerHTML = `<div class="chips" title="levels shown"><span class="label">level</span>${levels}</div>
      <label class="range" title="${esc(data.by)} range"><span class="label">${esc(data.by)}</span><input id="min" type="number" step="any" placeholder="min"> – <input id="max" type="number" step="any" placeholder="max"></label>
      <div class="seg" title="decisions shown"><span class="label">decision</span>${seg}</div>
      <div class="keyhint"><kbd>y</kbd>keep <kbd>s</kbd>star <kbd>n</kbd>reject <kbd>u</kbd>undo <kbd>↵</kbd>view</div>`;
    $("filters").addEventListener("click", (e) => {
      const b = e.target.closest("button");
      if (!b) return;
      if (!b.dataset.level && !b.dataset.decision) return;
      if (b.dataset.level) {
        const on = R.filters.levels;
        on.has(b.dataset.level) ? on.delete(b.dataset.level) : on.add(b.dataset.level);
        b.classList.toggle("on", on.has(b.dataset.level));
      } else {
        R.filters.decision = b.dataset.decision;
        for (const x of b.parentNode.children) x.classList.toggle("on", x === b);
      }
      refilter();
      b.blur();
    });
    for (const id of ["min", "max"]) {
      $(id).addEventListener("input", (e) => {
        const v = e.target.value.trim();
        R.filters[id] = v === "" || isNaN(Number(v)) ? null : Number(v);
        refilter();
      });
      $(id).addEventListener("keydown", (e) => { if (e.key === "Escape" || e.key === "Enter") e.target.blur(); });
    }
  }

  function drawActions() {
    $("actions").innerHTML = readOnly
      ? `<span class="btn" title="a static export: decisions cannot change">read-only</span>`
      : ["csv", "jsonl", "parquet"].map((f) => `<a href="api/export.${f}" download title="decisions as a ${f} table">${f}</a>`).join("");
  }

  function passes(row) {
    const f = R.filters, decision = R.decisions.get(row.id);
    if (row.level && !f.levels.has(row.level)) return false;
    if (f.min !== null && !(row.by >= f.min)) return false;
    if (f.max !== null && !(row.by <= f.max)) return false;
    if (f.decision === "undecided") return !decision;
    return f.decision === "all" || decision === f.decision;
  }
  function filter() {
    R.items = R.rows.filter(passes);
  }
  function refilter(keepId = R.items[R.cursor]?.id) {
    filter();
    const at = R.items.findIndex((r) => r.id === keepId);
    R.cursor = at >= 0 ? at : Math.min(R.cursor, Math.max(0, R.items.length - 1));
    layout();
    for (const el of R.rendered.values()) el.remove();
    R.rendered.clear();
    scrollToCursor();
    paint();
  }

  function initialCursor() {
    const wanted = Number(new URLSearchParams(location.hash.slice(1)).get("row"));
    const fromHash = location.hash ? R.items.findIndex((r) => r.id === wanted) : -1;
    if (fromHash >= 0) return fromHash;
    if (data.resume !== null && data.resume !== undefined) {
      const at = R.items.findIndex((r) => r.id === data.resume);
      const next = R.items.findIndex((r, i) => i > at && !R.decisions.has(r.id));
      if (next >= 0) return next;
      if (at >= 0) return at;
    }
    return Math.max(0, R.items.findIndex((r) => !R.decisions.has(r.id)));
  }

  function layout() {
    const width = main.clientWidth - 40;
    R.cols = Math.max(1, Math.floor((width + GAP) / (CARD_W + GAP)));
    spacer.style.width = `${R.cols * (CARD_W + GAP) - GAP}px`;
    R.lines = [];
    R.where = new Array(R.items.length);
    let y = TOP, i = 0;
    while (i < R.items.length) {
      const group = R.items[i].group;
      let end = i;
      while (end < R.items.length && R.items[end].group === group) end++;
      if (data.groupBy) {
        R.lines.push({ kind: "group", group, start: i, end, y, h: HEADER_H });
        y += HEADER_H + 12;
      }
      for (let s = i; s < end; s += R.cols) {
        const e = Math.min(end, s + R.cols);
        for (let k = s; k < e; k++) R.where[k] = { line: R.lines.length, col: k - s };
        R.lines.push({ kind: "cards", start: s, end: e, y, h: R.cardH });
        y += R.cardH + GAP;
      }
      y += GROUP_GAP;
      i = end;
    }
    spacer.style.height = `${y + 40}px`;
    spacer.querySelector(".empty")?.remove();
    if (!R.items.length) spacer.insertAdjacentHTML("beforeend", `<div class="empty">No image matches these filters.</div>`);
  }

  function paint() {
    const top = main.scrollTop - OVERSCAN, bottom = main.scrollTop + main.clientHeight + OVERSCAN;
    let lo = 0, hi = R.lines.length;
    while (lo < hi) { // first line ending below `top`
      const mid = (lo + hi) >> 1;
      if (R.lines[mid].y + R.lines[mid].h < top) lo = mid + 1; else hi = mid;
    }
    const wanted = new Set();
    for (let n = lo; n < R.lines.length && R.lines[n].y <= bottom; n++) wanted.add(n);
    for (const [n, el] of R.rendered) if (!wanted.has(n)) { el.remove(); R.rendered.delete(n); }
    for (const n of wanted) {
      if (R.rendered.has(n)) continue;
      const line = R.lines[n], el = document.createElement("div");
      el.className = `line ${line.kind}`;
      el.style.top = `${line.y}px`;
      el.style.height = `${line.h}px`;
      el.innerHTML = line.kind === "group" ? groupHtml(line) : R.items.slice(line.start, line.end).map((r, k) => cardHtml(r, line.start + k)).join("");
      spacer.appendChild(el);
      R.rendered.set(n, el);
    }
  }

  function groupHtml(line) {
    const value = data.groups[line.group];
    const all = R.groupRows.get(line.group);
    const done = all.filter((r) => R.decisions.has(r.id)).length;
    const shown = line.end - line.start;
    return `<span class="key">${esc(data.groupBy)}</span><h2 title="${esc(value)}">${value === null ? "<i>(none)</i>" : esc(value)}</h2>
      <span class="meta">${shown < all.length ? `${shown} shown of ` : ""}${all.length} · ${done} reviewed</span>`;
  }

  function cardHtml(row, index) {
    const decision = R.decisions.get(row.id);
    const classes = ["card", decision || "", index === R.cursor ? "cur" : ""].join(" ");
    const lvl = row.level ? `<span class="level" style="--lvl:var(--${esc(row.level)})">${esc(row.level)}</span>` : "";
    const by = data.by !== "score" ? `<span class="by" title="${esc(data.by)}">${esc(data.by)} ${fmt(row.by)}</span>` : "";
    const heads = data.heads.length || data.named.length
      ? `<div class="heads">${data.heads.map((name, k) => `<div class="hbar" title="${esc(name)} head ${fmt(row.heads[k])}"><span>${esc(HEAD_SHORT[name] || name)} ${fmt(row.heads[k], 2)}</span><i><b style="width:${pct(row.heads[k])}%"></b></i></div>`).join("")}${data.named.map((name, k) => `<div class="hbar" title="${esc(name)} ${fmt(row.named[k])}"><span>${esc(name)} ${fmt(row.named[k], R.digits)}</span></div>`).join("")}</div>`
      : "";
    const dims = data.dims.length ? `<div class="dims">${dimBars(row)}</div>` : "";
    const tag = decision ? `<span class="tag" style="--c:var(--${decision})">${decision === "star" ? "★ star" : decision}</span>` : "";
    return `<div class="${classes}" data-id="${row.id}">
      <div class="img"><img src="${imageUrl(row.id, "thumb")}" alt="" decoding="async" draggable="false"><span class="rank">#${row.rank}</span>${tag}</div>
      <div class="info"><div class="head"><span class="score">${fmt(row.score, R.digits)}</span>${by}${lvl}</div>${heads}${dims}
      <div class="name" title="${esc(row.path)}">${esc(baseName(row.path))}</div></div></div>`;
  }
  const baseName = (path) => path.slice(path.lastIndexOf("/") + 1);
  const pct = (v) => (v === null || v === undefined ? 0 : Math.max(0, Math.min(100, v * 100)).toFixed(1));
  function dimBars(row) {
    let out = "", last = null;
    data.dims.forEach((key, k) => {
      const group = DIM_GROUP[key] || "root";
      if (last && group !== last) out += `<b class="sep"></b>`;
      last = group;
      out += `<b style="height:${Math.max(4, pct(row.dims[k]))}%;--c:var(--${group})" title="${esc(data.dimNames[key])} ${fmt(row.dims[k])}"></b>`;
    });
    return out;
  }

  function measureCard() {
    const probe = document.createElement("div");
    probe.style.cssText = "position:absolute;visibility:hidden;left:-9999px";
    probe.innerHTML = cardHtml({ ...R.rows[0], id: -1, rank: 1 }, -1).replace(/src="[^"]*"/, "");
    document.body.appendChild(probe);
    const height = probe.firstElementChild.offsetHeight;
    probe.remove();
    return height;
  }

  function updateCard(id) {
    const index = R.items.findIndex((r) => r.id === id);
    if (index < 0) return;
    const line = R.where[index].line, el = R.rendered.get(line);
    if (el) el.innerHTML = R.items.slice(R.lines[line].start, R.lines[line].end).map((r, k) => cardHtml(r, R.lines[line].start + k)).join("");
    const header = R.lines.findLastIndex((l, n) => n < line && l.kind === "group");
    if (header >= 0 && R.rendered.has(header)) R.rendered.get(header).innerHTML = groupHtml(R.lines[header]);
  }

  function moveTo(index, block) {
    if (index < 0 || index >= R.items.length) return;
    const before = R.items[R.cursor];
    R.cursor = index;
    for (const el of spacer.querySelectorAll(".card.cur")) el.classList.remove("cur");
    spacer.querySelector(`.card[data-id="${R.items[index].id}"]`)?.classList.add("cur");
    history.replaceState(null, "", `#row=${R.items[index].id}`);
    scrollToCursor(block);
    paint();
    spacer.querySelector(`.card[data-id="${R.items[index].id}"]`)?.classList.add("cur");
    if (!viewer.hidden && before !== R.items[index]) drawViewer();
  }

  function scrollToCursor(block) {
    const at = R.where[R.cursor];
    if (!at) return;
    const line = R.lines[at.line];
    const header = data.groupBy && R.lines[at.line - 1]?.kind === "group" ? HEADER_H + 12 : 0;
    const top = line.y - header - 12, bottom = line.y + line.h + 12;
    if (block === "center") main.scrollTop = line.y - (main.clientHeight - line.h) / 2;
    else if (top < main.scrollTop) main.scrollTop = top;
    else if (bottom > main.scrollTop + main.clientHeight) main.scrollTop = bottom - main.clientHeight;
  }

  function vertical(step) {
    const at = R.where[R.cursor];
    if (!at) return;
    let n = at.line + step;
    while (R.lines[n] && R.lines[n].kind !== "cards") n += step;
    const line = R.lines[n];
    if (line) moveTo(Math.min(line.start + at.col, line.end - 1));
  }

  function decide(decision) {
    const row = R.items[R.cursor];
    if (!row) return;
    if (readOnly) return toast("a read-only export: decisions cannot change here");
    const before = R.decisions.get(row.id);
    setDecision(row.id, decision);
    send("decisions", { row: row.id, decision }).then(
      () => toast(`${decision} · saved  (u to undo)`),
      (err) => { setDecision(row.id, before); toast(`not saved: ${err.message}`); },
    );
    advanceFrom(row.id);
  }

  function setDecision(id, decision) {
    if (decision) R.decisions.set(id, decision); else R.decisions.delete(id);
    updateCard(id);
    progress();
    if (!viewer.hidden && R.items[R.cursor]?.id === id) drawViewer();
  }

  function advanceFrom(id) {
    if (passes(R.byId.get(id))) return moveTo(Math.min(R.cursor + 1, R.items.length - 1));
    refilter(R.items[R.cursor + 1]?.id); // it left the filtered view: the next card takes its place
  }

  function undo() {
    if (readOnly) return toast("a read-only export: nothing to undo");
    send("undo", {}).then(({ undone }) => {
      if (!undone) return toast("nothing to undo");
      setDecision(undone.row, undone.decision);
      if (!R.items.some((r) => r.id === undone.row)) refilter(undone.row);
      moveTo(R.items.findIndex((r) => r.id === undone.row));
      toast(`undone · ${undone.decision || "undecided"}`);
    }, (err) => toast(`undo failed: ${err.message}`));
  }

  function progress() {
    const n = R.decisions.size, total = R.rows.length;
    $("progress-text").textContent = `${n} of ${total} reviewed`;
    $("progress-bar").style.width = `${total ? (100 * n) / total : 0}%`;
    const tally = { keep: 0, star: 0, reject: 0 };
    for (const d of R.decisions.values()) tally[d]++;
    $("counts").innerHTML = Object.entries(tally).map(([d, c]) => `<span style="--c:var(--${d})" title="${d}">${c}</span>`).join("");
  }

  function reviewKey(e) {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e)) return;
    if (!help.hidden) { if (e.key === "Escape" || e.key === "?") help.hidden = true; return; }
    const k = e.key;
    const actions = {
      ArrowRight: () => moveTo(R.cursor + 1), j: () => moveTo(R.cursor + 1), l: () => moveTo(R.cursor + 1),
      ArrowLeft: () => moveTo(R.cursor - 1), k: () => moveTo(R.cursor - 1), h: () => moveTo(R.cursor - 1),
      ArrowDown: () => (viewer.hidden ? vertical(1) : moveTo(R.cursor + 1)),
      ArrowUp: () => (viewer.hidden ? vertical(-1) : moveTo(R.cursor - 1)),
      Home: () => moveTo(0), End: () => moveTo(R.items.length - 1),
      Enter: () => (viewer.hidden ? openViewer() : closeViewer()), " ": () => (viewer.hidden ? openViewer() : closeViewer()),
      Escape: () => closeViewer(), u: undo, "?": () => showHelp(),
    };
    if (DECISION_KEYS[k]) actions[k] = () => decide(DECISION_KEYS[k]);
    if (!actions[k]) return;
    e.preventDefault();
    actions[k]();
  }

  // the large view: the preview, the decision, the dimensions and every column of the row
  function openViewer() {
    if (!R.items.length) return;
    viewer.hidden = false;
    drawViewer();
  }
  function closeViewer() {
    viewer.hidden = true;
    viewer.innerHTML = "";
  }
  async function drawViewer() {
    const row = R.items[R.cursor], decision = R.decisions.get(row.id);
    const buttons = [["keep", "y"], ["star", "s"], ["reject", "n"]].map(([d, key]) => `<button data-decide="${d}" class="${decision === d ? "on" : ""}" style="--c:var(--${d})">${d} <kbd>${key}</kbd></button>`).join("");
    const bars = (names, values, label = (x) => x) => names.map((n, k) => `<div class="dbar"><span>${esc(label(n))}</span><i><b style="width:${pct(values[k])}%;background:var(--${DIM_GROUP[n] || "accent"})"></b></i><span>${fmt(values[k])}</span></div>`).join("");
    viewer.innerHTML = `<div class="viewer"><div class="stage"><button class="btn close" data-close>esc · close</button>
      <img src="${imageUrl(row.id, "preview")}" alt="">
      <div class="nav"><kbd>←</kbd> <kbd>→</kbd> previous / next · ${R.cursor + 1} of ${R.items.length}</div></div>
      <aside class="side"><div class="path" title="${esc(row.path)}">${esc(row.path)}</div>
      <div class="head"><span class="big">${fmt(row.score, R.digits)}</span>${row.level ? `<span class="level" style="--lvl:var(--${esc(row.level)})">${esc(row.level)}</span>` : ""}</div>
      ${data.groupBy ? `<div class="by">${esc(data.groupBy)}: ${esc(data.groups[row.group])} · #${row.rank}</div>` : ""}
      <div class="decide">${buttons}</div>
      ${data.dims.length ? `<h3>12 dimensions</h3>${bars(data.dims, row.dims, (k) => data.dimNames[k])}` : ""}
      ${data.heads.length ? `<h3>heads</h3>${bars(data.heads, row.heads)}` : ""}
      <h3>every column</h3><table class="cols"><tbody id="cols"><tr><td>loading…</td><td></td></tr></tbody></table></aside></div>`;
    viewer.onclick = (e) => {
      if (e.target.closest("[data-close]")) closeViewer();
      const b = e.target.closest("[data-decide]");
      if (b) decide(b.dataset.decide);
    };
    const columns = readOnly ? embedded.rows[row.id] : await api(`rows/${row.id}`).catch((err) => ({ error: err.message }));
    const body = document.getElementById("cols");
    if (body && R.items[R.cursor] === row) {
      body.innerHTML = Object.entries(columns).map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(typeof v === "number" ? +v.toFixed(6) : v === null ? "–" : typeof v === "object" ? JSON.stringify(v) : v)}</td></tr>`).join("");
    }
  }

  function showHelp() {
    const rows = data.mode === "ab"
      ? [["← or 1", "left is better"], ["→ or 2", "right is better"], ["t or 0", "a tie"], ["j k ↓ ↑", "next / previous pair"], ["u", "undo the latest pick"], ["r", "the preference report"]]
      : [["← → j k", "previous / next image"], ["↑ ↓", "the image above / below"], ["y", "keep"], ["s", "star"], ["n", "reject"], ["u", "undo the latest decision"], ["Enter", "large view with every column"], ["Esc", "close"]];
    help.innerHTML = `<div class="panel"><h2>Keyboard</h2><div class="keys">${rows.map(([k, t]) => `<span>${k.split(" ").map((x) => `<kbd>${x}</kbd>`).join(" ")}</span><span>${t}</span>`).join("")}</div>
      <p class="note" style="color:var(--muted)">Every decision is saved on the server as it is made.</p></div>`;
    help.hidden = false;
    help.onclick = () => (help.hidden = true);
  }

  // ---------------------------------------------------------------------------------------------- A/B
  const P = { pairs: [], picks: new Map(), cursor: 0 };

  function startPairs() {
    P.pairs = data.pairs;
    for (const [id, side] of Object.entries(data.picks)) P.picks.set(Number(id), side);
    $("title").textContent = `A/B · same ${data.groupBy} · blind`;
    $("filters").innerHTML = "";
    $("actions").innerHTML = `<button class="btn" id="report-button" title="the preference report (r)">report</button>` +
      (readOnly
        ? `<span class="btn" title="a static export: picks cannot change">read-only</span>`
        : ["csv", "jsonl", "parquet"].map((f) => `<a href="api/export.${f}" download title="picks as a ${f} table">${f}</a>`).join(""));
    $("report-button").onclick = showReport;
    const wanted = Number(new URLSearchParams(location.hash.slice(1)).get("pair"));
    const resume = data.resume ?? -1;
    const next = P.pairs.findIndex((p, i) => i > resume && !P.picks.has(p.id));
    P.cursor = location.hash && P.pairs[wanted] ? wanted : next >= 0 ? next : Math.max(0, P.pairs.findIndex((p) => !P.picks.has(p.id)));
    main.innerHTML = `<div class="ab" id="ab"></div>`;
    drawPair();
    pairProgress();
    document.addEventListener("keydown", pairKey);
  }

  function drawPair() {
    const pair = P.pairs[P.cursor];
    if (!pair) { $("ab").innerHTML = `<div class="empty">No pairs: the two tables share no ${esc(data.groupBy)}.</div>`; return; }
    const side = P.picks.get(pair.id);
    const cls = (s) => (side === "tie" ? "tie" : side === s ? "win" : side ? "lose" : "");
    const img = (s, id, hint) => `<div class="side-img ${cls(s)}" data-side="${s}"><div class="frame"><img src="${imageUrl(id, "preview")}" alt="${s}"></div><div class="hint">${hint}</div></div>`;
    $("ab").innerHTML = `<div class="prompt"><small>${esc(data.groupBy)}</small>${esc(data.groups[pair.group])}</div>
      <div class="pair">${img("left", pair.left, "<kbd>←</kbd> left is better")}
      <div class="mid"><button data-side="tie" class="${side === "tie" ? "on" : ""}">tie <kbd>t</kbd></button></div>
      ${img("right", pair.right, "right is better <kbd>→</kbd>")}</div>
      <div class="foot">pair ${P.cursor + 1} of ${P.pairs.length} · <kbd>j</kbd> <kbd>k</kbd> next / previous · <kbd>u</kbd> undo · <kbd>?</kbd> keys</div>`;
    $("ab").onclick = (e) => { const s = e.target.closest("[data-side]"); if (s) pick(s.dataset.side); };
    history.replaceState(null, "", `#pair=${pair.id}`);
    const after = P.pairs[P.cursor + 1];
    if (after) for (const id of [after.left, after.right]) new Image().src = imageUrl(id, "preview");
  }

  function pick(side) {
    if (readOnly) return toast("a read-only export: picks cannot change here");
    const pair = P.pairs[P.cursor];
    if (!pair) return;
    const before = P.picks.get(pair.id);
    P.picks.set(pair.id, side);
    drawPair();
    pairProgress();
    send("picks", { pair: pair.id, side }).then(
      () => toast(`${side === "tie" ? "tie" : side + " is better"} · saved`),
      (err) => { before ? P.picks.set(pair.id, before) : P.picks.delete(pair.id); drawPair(); pairProgress(); toast(`not saved: ${err.message}`); },
    );
    const next = P.pairs.findIndex((p, i) => i > P.cursor && !P.picks.has(p.id));
    setTimeout(() => { if (P.pairs[P.cursor] === pair && next >= 0) { P.cursor = next; drawPair(); } }, 220);
  }

  function pairProgress() {
    const n = P.picks.size, total = P.pairs.length;
    $("progress-text").textContent = `${n} of ${total} pairs judged`;
    $("progress-bar").style.width = `${total ? (100 * n) / total : 0}%`;
  }

  async function showReport() {
    const r = readOnly ? embedded.report : await api("report");
    const rate = (p) => (p.n ? `${(100 * p.rate).toFixed(1)}% (${p.count}/${p.n}), ${Math.round(100 * r.confidence)}% CI ${(100 * p.ci_low).toFixed(1)}–${(100 * p.ci_high).toFixed(1)}%` : "–");
    const rows = [
      ["A", esc(r.a)], ["B", esc(r.b)], ["judged", `${r.judged} of ${r.pairs} pairs`],
      ["picks", `A ${r.wins_a} · B ${r.wins_b} · tie ${r.ties}`], ["win rate of A", rate(r.win_rate_a)],
      ["sign test", `p = ${r.p_value === null ? "–" : Number(r.p_value).toPrecision(2)}`],
      ["preferred", r.preferred || "neither (not significant)"],
      ["scorer–human agreement", `${rate(r.agreement)}`], ["the scorer ranks A higher", rate(r.scorer_win_rate_a)],
    ];
    help.innerHTML = `<div class="panel report"><h2>Preference report</h2><table>${rows.map(([k, v]) => `<tr><td>${k}</td><td>${v}</td></tr>`).join("")}</table>
      <div class="note">Ties ${esc(r.ties_note)}.</div></div>`;
    help.hidden = false;
    help.onclick = () => (help.hidden = true);
  }

  function pairKey(e) {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e)) return;
    if (!help.hidden) { if (["Escape", "?", "r"].includes(e.key)) help.hidden = true; return; }
    const move = (step) => { const n = P.cursor + step; if (P.pairs[n]) { P.cursor = n; drawPair(); } };
    const actions = {
      ArrowLeft: () => pick("left"), 1: () => pick("left"), ArrowRight: () => pick("right"), 2: () => pick("right"),
      t: () => pick("tie"), 0: () => pick("tie"), "=": () => pick("tie"),
      j: () => move(1), ArrowDown: () => move(1), k: () => move(-1), ArrowUp: () => move(-1),
      u: pairUndo, r: showReport, "?": showHelp,
    };
    if (!actions[e.key]) return;
    e.preventDefault();
    actions[e.key]();
  }

  function pairUndo() {
    if (readOnly) return toast("a read-only export: nothing to undo");
    send("undo", {}).then(({ undone }) => {
      if (!undone) return toast("nothing to undo");
      if (undone.side) P.picks.set(undone.pair, undone.side); else P.picks.delete(undone.pair);
      P.cursor = P.pairs.findIndex((p) => p.id === undone.pair);
      drawPair();
      pairProgress();
      toast("undone");
    }, (err) => toast(`undo failed: ${err.message}`));
  }

  // ---------------------------------------------------------------------------------------------- start
  $("help-button").onclick = () => showHelp();
  const load = readOnly ? Promise.resolve(embedded.session) : api("session");
  load.then((session) => {
    data = session;
    document.body.dataset.mode = data.mode;
    if (data.mode === "ab") startPairs();
    else if (!data.rows.length) { $("progress-text").textContent = "nothing to review"; spacer.innerHTML = `<div class="empty">No scored rows match the criteria.</div>`; }
    else startReview();
    document.body.dataset.ready = "true";
  }, (err) => { $("progress-text").textContent = `cannot load: ${err.message}`; });
})();
