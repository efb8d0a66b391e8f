// onebox ops: polls /ops/api/state and updates the server-rendered page
// in place. No inline script or style anywhere (the CSP forbids them):
// text goes in with textContent, state as a class, sparklines as a path.
'use strict';
(function () {
  const token = new URLSearchParams(location.search).get('token');
  const headers = token ? { Authorization: 'Bearer ' + token } : {};
  const interval = Math.max(parseInt(document.body.dataset.interval, 10) || 5000, 500);
  const $ = (id) => document.getElementById(id);
  const SVG = 'http://www.w3.org/2000/svg';

  function el(tag, cls, ...children) {
    const n = document.createElement(tag);
    if (cls) n.className = cls;
    for (const c of children) n.append(c);
    return n;
  }
  const clock = (t) => new Date(t).toLocaleTimeString('en-GB');
  const badge = (state) => el('span', 'badge s-' + state, state);
  const none = (text) => el('li', 'none', text);
  function setState(node, base, state) { node.className = base + ' s-' + state; }
  function list(node, items, render, empty) {
    node.replaceChildren(...(items && items.length ? items.map(render) : (empty ? [none(empty)] : [])));
  }

  // Lists are rebuilt only when they change, so an opened <details> stays open.
  const last = {};
  function changed(key, value) {
    const s = JSON.stringify(value || null);
    if (last[key] === s) return false;
    last[key] = s;
    return true;
  }

  function renderIncident(d) {
    $('incident').hidden = !d.root;
    if (!d.root) return;
    const r = d.root;
    $('root').replaceChildren(
      el('p', 'root-title', badge(r.state), ' ', el('strong', '', r.title), ' ', el('span', 'since', 'since ' + clock(r.since))),
      el('ul', 'evidence', ...(r.evidence || []).map((e) => el('li', '', e))));
    list($('downstream'), d.downstream, (f) => el('li', '', badge(f.state), ' ', f.because), 'nothing else');
    list($('others'), d.others, (f) => el('li', '', badge(f.state), ' ',
      ...(f.because ? [f.because] : [el('strong', '', f.title), ' ', (f.evidence || []).join('; ')])), 'none');
  }

  function renderPanel(p) {
    const a = $('panel-' + p.name);
    if (!a) return;
    setState(a, 'panel', p.state);
    const b = a.querySelector('header .badge');
    setState(b, 'badge', p.state);
    b.textContent = p.state;
    a.querySelector('.since').textContent = p.since_text;
    const head = p.metrics[0];
    a.querySelector('.headline .value').textContent = head.value;
    a.querySelector('.headline .value').title = head.source || '';
    list(a.querySelector('.evidence'), p.evidence, (e) => el('li', '', e));
    for (const m of p.metrics) {
      const row = a.querySelector('[data-key="' + m.key + '"]');
      if (!row) continue;
      row.querySelector('.value').textContent = m.value;
      row.querySelector('.value').title = m.source || '';
      row.querySelector('.source').textContent = m.source || '';
      row.querySelector('path').setAttribute('d', m.spark);
    }
    const replicas = a.querySelector('table.replicas');
    if (replicas) {
      replicas.tBodies[0].replaceChildren(...(p.replicas || []).map((r) =>
        el('tr', '', el('td', '', r.name), el('td', '', r.in_rotation ? 'in' : 'out'),
          el('td', '', r.lag_bytes), el('td', '', r.lag_seconds))));
    }
  }

  function renderWriter(w) {
    const sec = $('writer');
    sec.hidden = !w;
    if (!w) return; // PostgreSQL: no single writer
    $('writer-holding').textContent = w.holding;
    $('writer-waiting').textContent = w.waiting;
    $('writer-longest').textContent = w.longest;
    $('writer-busy').textContent = w.busy;
    $('writer-wal').textContent = w.wal;
    list($('writer-locks'), w.locks, (l) => el('li', '', 'another process: ' + l));
    $('writer-holders').tBodies[0].replaceChildren(...(w.holders || []).map((h) =>
      el('tr', '', el('td', '', h.holder), el('td', '', h.query), el('td', '', h.held), el('td', '', h.holds),
        el('td', '', h.longest), el('td', '', h.blocked))));
  }

  function renderLists(s) {
    if (changed('errors', s.errors)) {
      $('errors').tBodies[0].replaceChildren(...(s.errors || []).map((e) =>
        el('tr', '', el('td', '', e.time), el('td', '', e.where), el('td', '', e.status ? String(e.status) : ''),
          el('td', '', e.message), el('td', '', e.request_id || ''))));
      $('errors-none').hidden = !!(s.errors && s.errors.length);
      $('errors').hidden = !$('errors-none').hidden;
    }
    if (changed('slow', s.slow_queries)) {
      const qs = s.slow_queries || [];
      $('slow-queries').replaceChildren(...(qs.length ? qs.map((q) => {
        const d = el('details', 'query',
          el('summary', '', el('strong', '', q.total), ' ' + q.name + ': ' + q.count + ' runs, p95 ' + q.p95 + ', max ' + q.max + ', last ',
            el('time', '', q.time), ' ', el('span', 'rid', q.request_id || '')),
          el('pre', '', q.sql));
        if (q.plan) d.append(el('pre', 'plan', q.plan));
        return d;
      }) : [el('p', 'none', s.wired.slow_queries ? 'no slow queries' : 'no slow-query source wired')]));
    }
    if (changed('traces', s.traces)) {
      const ts = s.traces || [];
      $('traces').replaceChildren(...(ts.length ? ts.map((t) => el('details', 'trace',
        el('summary', '', el('strong', '', t.duration), ' ' + t.name + ' ', el('time', '', t.time), ' ', el('span', 'rid', t.request_id || '')),
        el('ol', 'spans', ...(t.spans || []).map(span)))) : [el('p', 'none', s.wired.traces ? 'no traces yet' : 'no trace source wired')]));
    }
  }

  function span(sp) {
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('viewBox', '0 0 100 4');
    svg.setAttribute('preserveAspectRatio', 'none');
    const rect = document.createElementNS(SVG, 'rect');
    for (const [k, v] of [['x', sp.offset], ['y', 0], ['width', sp.width], ['height', 4]]) rect.setAttribute(k, String(v));
    svg.append(rect);
    return el('li', 'span depth-' + Math.min(sp.depth, 6) + (sp.error ? ' error' : ''),
      el('span', 'name', sp.name), el('span', 'dur', sp.duration), svg);
  }

  function render(s) {
    const d = s.diagnosis;
    $('updated').textContent = s.updated_text;
    const sum = $('summary');
    sum.textContent = d.summary;
    setState(sum, 'summary', d.root ? d.root.state : 'healthy');
    const se = $('scrape-error');
    se.textContent = s.scrape_error || '';
    se.hidden = !s.scrape_error;
    list($('drills'), d.drills, (t) => el('li', '', 'DRILL: ' + t));
    $('drills').hidden = !(d.drills && d.drills.length);
    renderIncident(d);
    list($('alerts'), s.alerts, (a) => el('li', 's-failing', el('strong', '', a.alert), ' ' + a.summary), 'none firing');
    list($('alert-log'), s.alert_log, (a) => el('li', '', el('time', '', clock(a.at)), ' ' + a.alert + ' ' + a.status + ': ' + a.summary));
    for (const p of s.panels) renderPanel(p);
    list($('verdicts'), s.advice.verdicts, (v) => el('li', 'verdict a-' + v.answer,
      el('span', 'badge a-' + v.answer, v.answer), ' ', el('strong', '', v.question), ' ' + v.because + ' ',
      el('span', 'threshold', 'threshold: ' + v.threshold),
      el('ul', 'numbers', ...(v.numbers || []).map((n) => el('li', '', n.name + ': ' + n.value)))));
    renderWriter(s.writer);
    renderLists(s);
  }

  // Dead letters: read on load and on demand (a queue may hold many), and
  // redriven one, matching or all.
  function deadQuery(extra) {
    const p = new URLSearchParams();
    const kind = $('dead-kind').value;
    const text = $('dead-error').value;
    if (kind) p.set('kind', kind);
    if (text) p.set('error', text);
    for (const [k, v] of Object.entries(extra || {})) p.set(k, v);
    return p;
  }
  function deadMessage(text) {
    $('dead-result').textContent = text;
    $('dead-result').hidden = !text;
  }
  async function loadDead() {
    try {
      const res = await fetch('/ops/api/dead?' + deadQuery(), { headers, cache: 'no-store' });
      const body = await res.json();
      if (!res.ok) throw new Error(body.detail || 'HTTP ' + res.status);
      const sel = $('dead-kind');
      const chosen = sel.value;
      sel.replaceChildren(el('option', '', 'every kind'), ...body.kinds.map((k) => el('option', '', k.kind)));
      sel.options[0].value = '';
      sel.value = body.kinds.some((k) => k.kind === chosen) ? chosen : '';
      list($('dead-kinds'), body.kinds, (k) => el('li', '', el('strong', '', k.kind), ' ' + k.dead + ' dead'), 'no dead jobs');
      $('dead-list').tBodies[0].replaceChildren(...body.items.map((d) => {
        const b = el('button', '', 'redrive');
        b.type = 'button';
        b.addEventListener('click', () => redrive(new URLSearchParams({ id: d.id }), 'job ' + d.id));
        return el('tr', '', el('td', '', clock(d.died_at)), el('td', '', d.kind), el('td', '', String(d.attempts)),
          el('td', '', d.last_error), el('td', 'payload', d.payload), el('td', 'rid', d.id), el('td', '', b));
      }));
      $('dead-list').hidden = !body.items.length;
      $('dead-none').hidden = !!body.items.length;
      $('dead-none').textContent = 'no dead jobs match';
    } catch (e) {
      $('dead-none').hidden = false;
      $('dead-none').textContent = 'dead letters unavailable: ' + e.message;
    }
  }
  async function redrive(params, what) {
    if (!confirm('Put ' + what + ' back in the queue?')) return;
    try {
      const res = await fetch('/ops/api/dead/redrive?' + params, { method: 'POST', headers });
      const body = await res.json();
      if (!res.ok) throw new Error(body.detail || 'HTTP ' + res.status);
      deadMessage(body.redriven + ' job(s) back in the queue');
    } catch (e) {
      deadMessage('redrive failed: ' + e.message);
    }
    loadDead();
  }
  if ($('dead')) {
    $('dead-show').addEventListener('click', () => { deadMessage(''); loadDead(); });
    $('dead-redrive-matching').addEventListener('click', () => {
      const p = deadQuery();
      if (!p.toString()) { deadMessage('choose a kind or an error text first, or use Redrive all'); return; }
      redrive(p, 'the dead jobs matching ' + p);
    });
    $('dead-redrive-all').addEventListener('click', () => redrive(new URLSearchParams({ all: 'true' }), 'every dead job'));
    loadDead();
  }

  async function poll() {
    try {
      const res = await fetch('/ops/api/state', { headers, cache: 'no-store' });
      if (!res.ok) throw new Error('HTTP ' + res.status);
      render(await res.json());
    } catch (e) {
      const se = $('scrape-error');
      se.textContent = 'dashboard unreachable: ' + e.message;
      se.hidden = false;
    } finally {
      setTimeout(poll, interval);
    }
  }
  setTimeout(poll, interval);
})();
