// Ringway status page: reads GET /api/v1/status every 2 s and updates the page in place, and
// sends the operator's server changes. Every string from the API reaches the page through
// textContent or an attribute, never as markup (status-lib.js builds the DOM).

import {
  ApiError, TOKEN_KEY, algorithmWords, api, enc, errorWords, fmtAge, fmtRate, fmtRatio,
  fmtSeconds, h, maintenanceWords, num, parseTime, poolSettingsWords, setClass, setText, syncRows,
  targetWords, token,
} from './status-lib.js';
import { closePlan, drawChart, loadPlan, loadRing } from './status-draw.js';

const REFRESH_MS = 2000;
const HASHED = new Set(['consistent_hash', 'maglev']);
const ALGORITHMS = new Set(['round_robin', 'least_requests', 'random_two', ...HASHED]);
const STATUS_MEANING = {
  up: 'ready and healthy: takes traffic',
  checking: 'waits for its first passing health checks: takes no traffic yet',
  drain: 'draining: no new requests, in-flight ones finish',
  maint: 'maintenance: takes nothing, raises no health alarm',
  down: 'failing its health checks: takes no traffic',
  ejected: 'ejected after consecutive failures: takes no traffic until it recovers',
  removing: 'being removed: draining, leaves the pool once idle',
};
const STATUS_ORDER = ['up', 'checking', 'drain', 'maint', 'down', 'ejected', 'removing'];

const view = {
  timer: null,
  inFlight: false,
  lastOk: null, // the last status the API gave
  lastOkAt: null, // when it gave it, by this browser's clock
  failures: 0,
  pools: new Map(), // pool name -> the DOM of its section and what it last fetched
};

// ---- banner and notices -----------------------------------------------------------------

function showBanner(text) {
  const b = document.getElementById('banner');
  setText(b, text);
  b.hidden = false;
  document.body.classList.add('stale');
}

function hideBanner() {
  document.getElementById('banner').hidden = true;
  document.body.classList.remove('stale');
}

// Says how an action on a pool went, in a line of its own that keeps its place in the layout.
function notice(pv, text, isError) {
  setText(pv.msgText, text);
  setClass(pv.msg, 'pool-msg' + (isError ? ' error' : ' ok'));
  pv.msgClose.hidden = false;
  clearTimeout(pv.msgTimer);
  // Errors stay until closed or replaced; a confirmation goes after a while.
  if (!isError) pv.msgTimer = setTimeout(() => clearNotice(pv), 8000);
}

function clearNotice(pv) {
  setText(pv.msgText, '');
  setClass(pv.msg, 'pool-msg');
  pv.msgClose.hidden = true;
}

// ---- refresh loop ------------------------------------------------------------------------

function schedule(ms) {
  clearTimeout(view.timer);
  view.timer = setTimeout(refresh, ms);
}

async function refresh() {
  if (view.inFlight) return;
  view.inFlight = true;
  try {
    const st = await api('GET', '/status');
    view.failures = 0;
    view.lastOk = st;
    view.lastOkAt = Date.now();
    render(st);
    hideBanner();
  } catch (e) {
    view.failures += 1;
    const since = view.lastOkAt
      ? ' The figures below are from ' + new Date(view.lastOkAt).toLocaleTimeString() + '.'
      : '';
    let what;
    if (!(e instanceof ApiError)) what = 'The page could not show the status: ' + e.message;
    else if (e.status === 0) what = 'Disconnected: ' + e.message;
    else what = 'GET /api/v1/status answered ' + e.status + ': ' + e.message;
    showBanner(what + '.' + since + ' Retrying every ' + REFRESH_MS / 1000 + ' s.');
    if (!(e instanceof ApiError)) console.error(e);
  } finally {
    view.inFlight = false;
    schedule(REFRESH_MS);
  }
}

// ---- rendering ---------------------------------------------------------------------------

function render(st) {
  const now = parseTime(st.now);
  const started = parseTime(st.started_at);
  const meta = ['version ' + (st.version || '?')];
  if (isFinite(now) && isFinite(started)) meta.push('up ' + fmtAge(now - started));
  meta.push('updated ' + new Date(isFinite(now) ? now : Date.now()).toLocaleTimeString());
  setText(document.getElementById('meta'), meta.join(' · '));
  renderFleet(st.cluster);
  renderListeners(st.listeners || []);
  renderRoutes(st.routes || [], now);
  renderPools(st.pools || [], now);
}

function renderListeners(list) {
  syncRows(document.querySelector('#listeners tbody'), list, (l) => l.name,
    () => h('tr', {}, h('th', { scope: 'row' }), h('td', { class: 'mono' }), h('td', { class: 'num' })),
    (tr, l) => {
      setText(tr.cells[0], l.name);
      setText(tr.cells[1], l.bind);
      setText(tr.cells[2], num(l.open_connections, '—'));
    }, 'No listener.', 3);
}

// Cluster mode only: the instances of the fleet and the config revision each runs.
function renderFleet(c) {
  const section = document.getElementById('fleet');
  section.hidden = !c;
  if (!c) return;
  const etcd = c.etcd || {};
  const link = etcd.connected
    ? 'etcd connected, revision ' + etcd.revision
    : 'etcd unreachable since ' + (etcd.since || '?') + ' (' + (etcd.error || 'no answer') +
      '): serving revision ' + etcd.revision;
  setText(document.getElementById('fleet-etcd'), 'Prefix ' + c.prefix + ' · ' + link);
  setClass(document.getElementById('fleet-etcd'), 'legend' + (etcd.connected ? '' : ' bad'));
  syncRows(document.querySelector('#instances tbody'), c.instances || [], (i) => i.name,
    () => h('tr', {}, h('th', { scope: 'row' }), h('td', { class: 'mono' }), h('td'),
      h('td', { class: 'num' }), h('td'), h('td')),
    (tr, i) => {
      setText(tr.cells[0], i.name + (i.self ? ' (this one)' : ''));
      setText(tr.cells[1], i.admin || '—');
      const rev = i.config_revision == null ? 'its file' : 'revision ' + i.config_revision;
      setText(tr.cells[2], rev + ' (' + i.config_source + ')' +
        (i.config_error ? ' — not applied: ' + i.config_error : ''));
      setClass(tr.cells[2], i.config_error ? 'bad' : '');
      setText(tr.cells[3], num(i.revision_seen, '—'));
      setText(tr.cells[4], i.health);
      setClass(tr.cells[4], i.health === 'ok' ? '' : 'bad');
      setText(tr.cells[5], i.started_at || '—');
    }, 'No instance registered.', 6);
}

function renderRoutes(list, now) {
  syncRows(document.querySelector('#routes tbody'), list, (r) => r.name,
    () => h('tr', {}, h('th', { scope: 'row' }), h('td'), h('td', { class: 'mono' }), h('td'),
      h('td', { class: 'num' }), h('td', { class: 'num' }), h('td')),
    (tr, r) => {
      setText(tr.cells[0], r.name);
      setText(tr.cells[1], r.host || 'any host');
      setClass(tr.cells[1], r.host ? 'mono' : 'muted');
      setText(tr.cells[2], r.path || '/');
      setText(tr.cells[3], targetWords(r.target));
      setText(tr.cells[4], fmtRate(r.requests_per_s));
      setText(tr.cells[5], fmtRatio(r.error_5xx_ratio));
      setClass(tr.cells[5], 'num' + (r.error_5xx_ratio > 0 ? ' bad' : ''));
      const m = maintenanceWords(r.maintenance, isFinite(now) ? now : Date.now());
      setText(tr.cells[6], m.text);
      setClass(tr.cells[6], m.cls);
      tr.cells[6].title = m.title;
    }, 'No route.', 7);
}

function renderLegend() {
  const p = document.getElementById('legend');
  p.append('Server status: ');
  for (const s of STATUS_ORDER) {
    p.append(h('span', { class: 'badge st-' + s, title: STATUS_MEANING[s], text: s }), ' ');
  }
}

function renderPools(pools, now) {
  const host = document.getElementById('pools');
  const seen = new Set();
  let prev = null;
  for (const p of pools) {
    seen.add(p.name);
    let pv = view.pools.get(p.name);
    if (!pv) {
      pv = createPool(p);
      view.pools.set(p.name, pv);
    }
    updatePool(pv, p, now);
    const want = prev ? prev.nextSibling : host.firstChild;
    if (pv.section !== want) host.insertBefore(pv.section, want);
    prev = pv.section;
  }
  for (const [name, pv] of view.pools) {
    if (!seen.has(name)) {
      pv.section.remove();
      view.pools.delete(name);
    }
  }
  if (pools.length === 0 && !host.firstChild) host.append(h('p', { class: 'muted', text: 'No pool.' }));
  else if (pools.length > 0) {
    for (const c of Array.from(host.children)) if (c.tagName === 'P') c.remove();
  }
}

const SERVER_COLUMNS = ['Server', 'Address', 'Status', 'Health', 'Weight', 'In flight',
  'Requests/s', '5xx', 'p50', 'p99'];

function createPool(p) {
  const id = 'pool-' + view.pools.size;
  const pv = { name: p.name, hashed: false, ringKey: null, ring: null, plan: null, openPlan: null };
  pv.onPlanClosed = () => { if (view.lastOk) render(view.lastOk); };
  pv.heading = h('h3', { id: id + '-h' });
  pv.algo = h('p', { class: 'algo' });
  pv.settings = h('p', { class: 'settings muted' });
  pv.figs = h('dl', { class: 'figs' });
  pv.figValues = {};
  for (const [k, label] of [['rps', 'Requests/s'], ['err', '5xx'], ['inflight', 'In flight'],
    ['p50', 'p50 (1 min)'], ['p99', 'p99 (1 min)']]) {
    pv.figValues[k] = h('dd');
    pv.figs.append(h('div', {}, h('dt', { text: label }), pv.figValues[k]));
  }
  pv.chart = h('figure', { class: 'chart' });
  pv.ringFig = h('figure', { class: 'ring', hidden: true });
  pv.planBox = h('div', { class: 'plan', hidden: true, 'aria-live': 'polite' });
  pv.msgText = h('span');
  pv.msgClose = h('button', {
    type: 'button', class: 'link', hidden: true, 'aria-label': 'Close this message', text: 'Close',
    onclick: () => clearNotice(pv),
  });
  pv.msg = h('p', { class: 'pool-msg', role: 'status', 'aria-live': 'polite' }, pv.msgText, ' ', pv.msgClose);
  const head = h('tr', {});
  for (const c of SERVER_COLUMNS) {
    head.append(h('th', { scope: 'col', class: /^(In flight|Requests|5xx|p50|p99|Weight)/.test(c) ? 'num' : null, text: c }));
  }
  pv.moveHead = h('th', { scope: 'col', text: 'If it goes' });
  head.append(pv.moveHead, h('th', { scope: 'col', text: 'Actions' }));
  pv.tbody = h('tbody');
  pv.caption = h('caption', { class: 'sr-only' });
  pv.table = h('table', { class: 'grid servers' }, pv.caption, h('thead', {}, head), pv.tbody);
  pv.section = h('section', { class: 'pool', 'aria-labelledby': id + '-h', 'data-pool': p.name },
    pv.heading, pv.algo, pv.settings,
    h('div', { class: 'pool-top' }, pv.figs, pv.chart, pv.ringFig),
    pv.msg, h('div', { class: 'table-wrap' }, pv.table), pv.planBox);
  return pv;
}

function updatePool(pv, p, now) {
  setText(pv.heading, 'Pool ' + p.name);
  setText(pv.caption, 'Servers of pool ' + p.name);
  // The API's own description only where the page does not know the algorithm.
  const known = p.balance && ALGORITHMS.has(p.balance.algorithm);
  setText(pv.algo, known || !p.description ? algorithmWords(p.balance) : p.description);
  setText(pv.settings, poolSettingsWords(p));
  setText(pv.figValues.rps, fmtRate(p.requests_per_s));
  setText(pv.figValues.err, fmtRatio(p.error_5xx_ratio));
  setClass(pv.figValues.err, p.error_5xx_ratio > 0 ? 'bad' : '');
  setText(pv.figValues.p50, fmtSeconds(p.p50_s));
  setText(pv.figValues.p99, fmtSeconds(p.p99_s));
  setText(pv.figValues.inflight, num(p.in_flight, '—'));
  drawChart(pv, p.history || [], now);

  const servers = p.servers || [];
  pv.hashed = HASHED.has(p.balance && p.balance.algorithm);
  pv.colours = new Map(servers.map((s, i) => [s.name, i % 8]));
  pv.servers = servers;
  pv.moveHead.hidden = !pv.hashed;
  syncRows(pv.tbody, servers, (s) => s.name, (s) => createServerRow(pv, s),
    (tr, s) => updateServerRow(pv, tr, s, now), 'No server.', SERVER_COLUMNS.length + 2);

  pv.ringFig.hidden = !pv.hashed;
  if (pv.hashed) {
    // The ring changes only with the set of servers and their weights: fetch it again then.
    const key = servers.map((s) => s.name + '=' + s.weight + ':' + s.status).join(',');
    if (key !== pv.ringKey && Date.now() >= (pv.ringRetryAt || 0)) {
      pv.ringKey = key;
      loadRing(pv);
      if (pv.openPlan !== null) loadPlan(pv, pv.openPlan);
    }
  } else {
    pv.planBox.hidden = true;
    pv.openPlan = null;
  }
  if (pv.openPlan !== null && !servers.some((s) => s.name === pv.openPlan)) closePlan(pv);
}

function createServerRow(pv, s) {
  const tr = h('tr', { 'data-server': s.name });
  const name = h('span', { class: 'name' });
  const runtime = h('span', { class: 'tag', text: 'added at run time', title: 'added through the API, not in the config file' });
  const discovered = h('span', { class: 'tag', text: 'from DNS', title: 'found by DNS discovery, not in the config file' });
  tr.append(h('th', { scope: 'row' }, name, runtime, discovered));
  tr.append(h('td', { class: 'mono' }));
  tr.append(h('td', {}, h('span', { class: 'badge' })));
  tr.append(h('td', { class: 'health' }));
  const weight = h('span');
  const ramp = h('span', { class: 'ramp', hidden: true });
  tr.append(h('td', { class: 'num weight' }, weight, ramp));
  for (let i = 0; i < 5; i += 1) tr.append(h('td', { class: 'num' }));
  const moveBtn = h('button', {
    type: 'button', class: 'link', 'data-action': 'plan', 'data-pool': pv.name, 'data-server': s.name,
    'aria-expanded': 'false', text: 'What moves?',
    onclick: () => togglePlan(pv, s.name),
  });
  tr.append(h('td', {}, moveBtn));
  const actions = h('td', { class: 'actions' });
  for (const [state, label, title] of [
    ['ready', 'Ready', 'restore: take traffic again'],
    ['drain', 'Drain', 'take no new requests, finish in-flight ones'],
    ['maint', 'Maint', 'maintenance: take nothing, no health alarm'],
  ]) {
    actions.append(h('button', {
      type: 'button', 'data-action': state, 'data-pool': pv.name, 'data-server': s.name,
      title: title, 'aria-label': label + ' ' + s.name, text: label,
      onclick: (ev) => patchServer(pv, s.name, { state }, ev.currentTarget),
    }), ' ');
  }
  const input = h('input', {
    type: 'number', min: 1, step: 1, inputmode: 'numeric', class: 'weight-input',
    'aria-label': 'New weight of ' + s.name, 'data-pool': pv.name, 'data-server': s.name,
  });
  input.addEventListener('input', () => { input.dataset.dirty = '1'; });
  // The API checks the range and says what is wrong; the browser's own check would hide that.
  const form = h('form', { class: 'weight-form', novalidate: true }, input, ' ',
    h('button', {
      type: 'submit', 'data-action': 'weight', 'data-pool': pv.name, 'data-server': s.name,
      'aria-label': 'Set the weight of ' + s.name, text: 'Set',
    }));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const w = Number(input.value);
    if (!input.value.trim() || !Number.isInteger(w)) {
      notice(pv, 'Weight of ' + s.name + ': enter a whole number.', true);
      return;
    }
    patchServer(pv, s.name, { weight: w }, form.querySelector('button')).then((ok) => {
      if (ok) delete input.dataset.dirty;
    });
  });
  actions.append(form);
  tr.append(actions);
  tr.refs = { name, runtime, discovered, moveBtn, input, weight, ramp };
  return tr;
}

function updateServerRow(pv, tr, s, now) {
  const c = tr.cells;
  const status = STATUS_MEANING[s.status] ? s.status : 'down';
  setText(tr.refs.name, s.name);
  tr.refs.runtime.hidden = !s.added_at_runtime;
  tr.refs.discovered.hidden = !s.discovered;
  setText(c[1], s.address);
  const badge = c[2].firstChild;
  setText(badge, s.status || '?');
  setClass(badge, 'badge st-' + status);
  badge.title = STATUS_MEANING[status];
  setClass(tr, 'row-' + status);

  // Health: the word, then the last check as "200, 3 s ago".
  let health = s.health || '—';
  const lc = s.last_check;
  if (lc) {
    const age = parseTime(lc.at);
    const ago = isFinite(age) && isFinite(now) ? ', ' + fmtAge(now - age) + ' ago' : '';
    health += ' · ' + (lc.passed ? '' : 'failed: ') + (lc.detail || (lc.passed ? 'passed' : '')) + ago;
  } else if (s.health === 'up' && !s.ejected) {
    health = 'up · no health check';
  }
  if (s.ejected) health += ' · ejected';
  setText(c[3], health);
  setClass(c[3], 'health' + (lc && !lc.passed ? ' bad' : ''));

  // Weight, with the slow-start ramp while it ramps.
  const ramp = num(s.ramp, 1);
  const ramping = ramp < 1 || (typeof s.effective_weight === 'number' && s.effective_weight !== s.weight);
  setText(tr.refs.weight, ramping ? num(s.effective_weight, '?') + ' / ' + s.weight : num(s.weight, '—'));
  setText(tr.refs.ramp, ramping ? 'slow start ' + Math.round(ramp * 100) + ' %' : '');
  tr.refs.ramp.hidden = !ramping;
  setText(c[5], num(s.in_flight, '—'));
  setText(c[6], fmtRate(s.requests_per_s));
  setText(c[7], fmtRatio(s.error_5xx_ratio));
  setClass(c[7], 'num' + (s.error_5xx_ratio > 0 ? ' bad' : ''));
  setText(c[8], fmtSeconds(s.p50_s));
  setText(c[9], fmtSeconds(s.p99_s));
  c[10].hidden = !pv.hashed;
  const open = pv.openPlan === s.name;
  tr.refs.moveBtn.setAttribute('aria-expanded', String(open));
  setText(tr.refs.moveBtn, open ? 'Hide' : 'What moves?');

  const st = s.state || '';
  for (const b of c[11].querySelectorAll('button[data-action]')) {
    const a = b.dataset.action;
    if (a === 'ready' || a === 'drain' || a === 'maint') {
      const current = st === a;
      b.setAttribute('aria-pressed', String(current));
      b.disabled = current || s.status === 'removing' || b.dataset.busy === '1';
    }
  }
  const input = tr.refs.input;
  if (document.activeElement !== input && !input.dataset.dirty && typeof s.weight === 'number') {
    if (input.value !== String(s.weight)) input.value = String(s.weight);
  }
}

// ---- server changes ----------------------------------------------------------------------

async function patchServer(pv, server, body, button) {
  const pool = pv.name;
  const what = body.state ? (body.state === 'ready' ? 'Restore' : body.state === 'drain' ? 'Drain' : 'Maintenance')
    + ' of ' + server : 'Weight ' + body.weight + ' for ' + server;
  if (button) {
    button.dataset.busy = '1';
    button.disabled = true;
  }
  try {
    const s = await api('PATCH', '/pools/' + enc(pool) + '/servers/' + enc(server), body);
    notice(pv, what + ': done, ' + s.name + ' is now ' + s.status
      + (body.weight !== undefined ? ' with weight ' + s.weight : '') + '.', false);
    return true;
  } catch (e) {
    notice(pv, errorWords(e, what), true);
    return false;
  } finally {
    if (button) {
      delete button.dataset.busy;
      button.disabled = false;
    }
    schedule(0);
  }
}

// ---- "what moves if this server goes" ----------------------------------------------------

function togglePlan(pv, server) {
  if (pv.openPlan === server) closePlan(pv);
  else {
    pv.openPlan = server;
    loadPlan(pv, server);
  }
  if (view.lastOk) render(view.lastOk);
}

// ---- the token ---------------------------------------------------------------------------

function showTokenState() {
  setText(document.getElementById('token-state'), token()
    ? 'Token set for this tab.' : 'No token: changes are sent without one.');
}

function setupToken() {
  const form = document.getElementById('token-form');
  const input = document.getElementById('token');
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    try {
      if (input.value) sessionStorage.setItem(TOKEN_KEY, input.value);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) {
      setText(document.getElementById('token-state'), 'This browser cannot keep the token: no session storage.');
      return;
    }
    input.value = '';
    showTokenState();
  });
  document.getElementById('token-forget').addEventListener('click', () => {
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) { /* nothing kept */ }
    input.value = '';
    showTokenState();
  });
  showTokenState();
}

function start() {
  setupToken();
  renderLegend();
  refresh();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
