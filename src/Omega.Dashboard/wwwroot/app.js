// Omega dashboard: one page, no external assets. Data arrives by Server-Sent Events (/api/events); every value is
// written with textContent (never as HTML), so a workload or node name cannot inject markup.
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const MAX = 300;
  let session = null;
  let samples = [];

  const pct = (x) => (100 * x).toFixed(1) + ' %';
  const num = (x) => Math.round(x).toLocaleString('en-US');
  const ms = (x) => x === 0 ? '–' : (x < 1 ? x.toFixed(3) : x.toFixed(1)) + ' ms';
  const secs = (x) => x < 1 ? (1000 * x).toFixed(0) + ' ms' : x.toFixed(1) + ' s';

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function fillTable(id, rows) {
    const body = $(id).tBodies[0];
    body.replaceChildren(...rows.map((cells) => {
      const tr = document.createElement('tr');
      for (const c of cells) {
        const td = document.createElement('td');
        if (c instanceof Node) td.appendChild(c); else td.textContent = String(c);
        tr.appendChild(td);
      }
      return tr;
    }));
  }

  // ---- charts: plain canvas line charts
  const COLORS = ['#4fb3ff', '#7bd88f', '#ffb454', '#f26d6d', '#c792ea', '#89ddff'];
  function chart(id, series, opts) {
    const c = $(id);
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth || c.width, h = c.clientHeight || c.height;
    if (c.width !== w * dpr) { c.width = w * dpr; c.height = h * dpr; }
    const g = c.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const left = 48, right = 8, top = 8, bottom = 18;
    const pw = w - left - right, ph = h - top - bottom;
    let max = opts.max || 0, min = opts.log ? Infinity : 0;
    for (const s of series) for (const v of s.values) {
      if (!opts.max && v > max) max = v;
      if (opts.log && v > 0 && v < min) min = v;
    }
    if (max <= 0) max = 1;
    if (opts.log) { if (!isFinite(min)) min = max / 10; min = Math.pow(10, Math.floor(Math.log10(min))); max = Math.pow(10, Math.ceil(Math.log10(max))); if (max <= min) max = min * 10; }
    const y = (v) => {
      if (opts.log) { const lv = Math.log10(Math.max(v, min)); return top + ph - ph * (lv - Math.log10(min)) / (Math.log10(max) - Math.log10(min)); }
      return top + ph - ph * v / max;
    };
    g.strokeStyle = '#2a3340'; g.fillStyle = '#8b96a5'; g.font = '11px system-ui'; g.lineWidth = 1;
    const ticks = opts.log ? [] : [0, max / 2, max];
    if (opts.log) for (let v = min; v <= max * 1.0001; v *= 10) ticks.push(v);
    for (const t of ticks) {
      const yy = y(t);
      g.beginPath(); g.moveTo(left, yy); g.lineTo(left + pw, yy); g.stroke();
      g.fillText(opts.fmt ? opts.fmt(t) : String(+t.toPrecision(3)), 2, yy + 4);
    }
    let lx = left + 6;
    series.forEach((s, i) => {
      const col = COLORS[i % COLORS.length];
      g.strokeStyle = col; g.lineWidth = 1.6; g.beginPath();
      const n = s.values.length;
      s.values.forEach((v, j) => {
        const xx = left + pw * (MAX - n + j) / (MAX - 1);
        if (j === 0) g.moveTo(xx, y(v)); else g.lineTo(xx, y(v));
      });
      g.stroke();
      g.fillStyle = col; g.fillText(s.name, lx, h - 4); lx += g.measureText(s.name).width + 14;
    });
  }

  function drawCharts() {
    const pick = (f) => samples.map(f);
    chart('chart-util', [{ name: 'cpu', values: pick((s) => s.cpuUtil) }, { name: 'memory', values: pick((s) => s.memUtil) }], { max: 1, fmt: (v) => (100 * v).toFixed(0) + '%' });
    chart('chart-rate', [{ name: 'placements/s', values: pick((s) => s.placementsPerS) }], {});
    chart('chart-lat', [{ name: 'p50', values: pick((s) => s.bindP50Ms) }, { name: 'p99', values: pick((s) => s.bindP99Ms) }], { log: true, fmt: (v) => v >= 1 ? v + ' ms' : (1000 * v).toFixed(0) + ' µs' });
    const names = samples.length ? samples[samples.length - 1].schedulers.map((x) => x.name) : [];
    chart('chart-conf', names.map((n) => ({ name: n, values: pick((s) => { const k = s.schedulers.find((x) => x.name === n); return k ? k.conflictFraction : 0; }) })), { max: 1, fmt: (v) => (100 * v).toFixed(0) + '%' });
  }

  function render(s) {
    $('cell-util').textContent = pct(s.cpuUtil);
    $('mem-util').textContent = pct(s.memUtil);
    $('placements-rate').textContent = num(s.placementsPerS);
    $('placements-total').textContent = num(s.placementsTotal);
    $('bind-p50').textContent = ms(s.bindP50Ms);
    $('bind-p99').textContent = ms(s.bindP99Ms);
    $('queued').textContent = num(s.queued);
    $('node-count').textContent = num(s.nodeCount);
    $('task-count').textContent = num(s.tasks);
    $('cell-version').textContent = num(s.version);
    fillTable('schedulers', s.schedulers.map((k) => [k.name, num(k.queue), secs(k.oldestQueuedS), num(k.placementsPerS), pct(k.conflictFraction), num(k.conflicted) + ' / ' + num(k.clean)]));
    fillTable('conflicts', s.conflicts.map((c) => [c.scheduler, c.reason, num(c.total), c.perS.toFixed(1)]));
    const pend = s.parked.map((p) => ['parked (' + p.scheduler + ')', p.reason, num(p.total)]);
    for (const [r, n] of Object.entries(s.pendingReasons)) pend.push(['workloads', r, num(n)]);
    fillTable('pending', pend);
    fillTable('zones', s.zones.map((z) => [z.name, num(z.nodes), pct(z.cpuUtil), pct(z.memUtil)]));
    fillTable('workloads', s.workloads.map((w) => {
      const conds = document.createElement('span');
      for (const c of w.conditions) { conds.appendChild(el('span', c.type + (c.reason ? '(' + c.reason + ')' : '') + ' ', 'cond-' + c.status)); }
      return [w.tenant + '/' + w.name + ' g' + w.generation, w.type, w.desired, w.bound, w.ready, w.serving, w.pending, conds];
    }));
    fillTable('nodes', s.nodes.map((n) => {
      let act = '';
      if (session && session.canOperate) {
        // Cordon and drain are the same here (no new bindings, tasks keep running); remove needs the override scope.
        const drain = n.status === 'Draining';
        act = document.createElement('span');
        const buttons = drain ? [['Undrain', 'undrain'], ['Uncordon', 'uncordon']] : [['Cordon', 'cordon'], ['Drain', 'drain']];
        if (session.canRemove) buttons.push(['Remove', 'remove']);
        for (const [label, action] of buttons) {
          const b = el('button', label, action);
          b.dataset.node = n.name;
          b.addEventListener('click', () => {
            if (action === 'remove' && !window.confirm('Remove node ' + n.name + ' for good? Its tasks are placed elsewhere.')) return;
            nodeAction(n.name, action);
          });
          act.appendChild(b);
        }
      }
      return [n.name, el('span', n.status, 'status-' + n.status), n.cpuUsed + '/' + n.cpuCap + 'm', (n.memUsed / 1048576).toFixed(0) + '/' + (n.memCap / 1048576).toFixed(0) + ' MiB', n.tasks, n.region || n.zone ? n.region + '/' + n.zone : '', act];
    }));
  }

  function onSample(s) {
    samples.push(s);
    if (samples.length > MAX) samples.shift();
    render(s);
    drawCharts();
  }

  async function nodeAction(node, action) {
    const r = await fetch('/api/nodes/' + encodeURIComponent(node) + '/' + action, { method: 'POST', headers: { 'X-Omega-CSRF': session.csrf }, credentials: 'same-origin' });
    const body = await r.json().catch(() => ({}));
    $('audit').textContent = action + ' ' + node + ': ' + (r.ok ? 'ok' : r.status + ' ' + (body.code ? body.code + ': ' : '') + (body.error || ''));
    if (r.status === 401) location.reload();
  }

  async function loadObjects(kind) {
    const r = await fetch('/api/objects' + (kind ? '?kind=' + encodeURIComponent(kind) : ''), { credentials: 'same-origin' });
    if (!r.ok) return;
    const j = await r.json();
    const box = $('kinds');
    box.replaceChildren(...Object.entries(j.kinds).map(([k, n]) => {
      const b = el('button', k + ' (' + n + ')', 'kind');
      b.addEventListener('click', () => loadObjects(k));
      return b;
    }));
    $('objects').textContent = kind ? JSON.stringify(j.items, null, 2) : 'choose a kind';
  }

  async function explain(ev) {
    ev.preventDefault();
    const task = $('explain-task').value.trim(), wl = $('explain-workload').value.trim(), gen = $('explain-generation').value.trim();
    const q = task ? 'task=' + encodeURIComponent(task) : 'workload=' + encodeURIComponent(wl) + (gen ? '&generation=' + encodeURIComponent(gen) : '');
    const r = await fetch('/api/explain?' + q, { credentials: 'same-origin' });
    $('explain').textContent = await r.text();
  }

  async function loadAudit() {
    const r = await fetch('/api/audit', { credentials: 'same-origin' });
    if (!r.ok) return;
    const j = await r.json();
    $('audit').textContent = j.entries.slice().reverse().map((e) => new Date(e.unixMs).toISOString().slice(11, 19) + ' ' + e.who + ' ' + e.action + ' ' + e.target + ': ' + e.result).join('\n');
  }

  function connect() {
    const es = new EventSource('/api/events');
    es.addEventListener('history', (e) => { samples = JSON.parse(e.data); if (samples.length) render(samples[samples.length - 1]); drawCharts(); $('conn').textContent = 'live'; $('conn').className = 'badge live'; });
    es.addEventListener('sample', (e) => onSample(JSON.parse(e.data)));
    es.onerror = async () => {
      $('conn').textContent = 'reconnecting'; $('conn').className = 'badge down';
      const r = await fetch('/api/session', { credentials: 'same-origin' });
      if (r.status === 401) { es.close(); location.reload(); }
    };
  }

  async function start() {
    if (new URLSearchParams(location.search).get('error') === 'signin') $('signin-error').hidden = false;
    const r = await fetch('/api/session', { credentials: 'same-origin' });
    if (r.status === 401) { $('signin').hidden = false; $('conn').textContent = 'signed out'; return; }
    session = await r.json();
    $('who').textContent = session.who + (session.canOperate ? ' · operator actions on' : ' · read-only');
    $('cell-name').textContent = session.cell;
    $('app').hidden = false;
    $('app').dataset.canOperate = String(session.canOperate);
    if (session.authRequired) {
      $('logout').hidden = false;
      $('logout').addEventListener('click', async () => { await fetch('/logout', { method: 'POST', headers: { 'X-Omega-CSRF': session.csrf } }); location.href = '/'; });
    }
    $('objects-refresh').addEventListener('click', () => loadObjects(null));
    $('audit-refresh').addEventListener('click', loadAudit);
    $('explain-form').addEventListener('submit', explain);
    loadObjects(null);
    loadAudit();
    connect();
  }

  start();
})();
