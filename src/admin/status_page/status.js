// Ringway status page: reads GET /api/v1/status every 2 s and updates the page in place.
// Every string from the API reaches the page through textContent or an attribute, never as
// markup. The only network calls go through api(), to same-origin /api/v1 endpoints.
'use strict';

(() => {
  const API = '/api/v1';
  const REFRESH_MS = 2000;
  const TIMEOUT_MS = 5000;
  const TOKEN_KEY = 'ringway.admin-token';
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const HASHED = new Set(['consistent_hash', 'maglev']);
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

  // ---- small DOM helpers ------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    for (const c of children) {
      if (c !== null && c !== undefined) el.append(c);
    }
    return el;
  }

  function svg(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    setAttrs(el, attrs);
    for (const c of children) {
      if (c !== null && c !== undefined) el.append(c);
    }
    return el;
  }

  function setAttrs(el, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'text') el.textContent = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }

  // Changes a node's text only when it differs, so a refresh does not disturb a selection.
  function setText(el, text) {
    const t = String(text);
    if (el.textContent !== t) el.textContent = t;
  }

  function setClass(el, cls) {
    if (el.getAttribute('class') !== cls) el.setAttribute('class', cls);
  }

  // Brings the rows of `tbody` in line with `items`, keeping rows (and what is typed in them)
  // whose key is still there, so nothing jumps or loses focus on a refresh.
  function syncRows(tbody, items, keyOf, create, update, emptyText, columns) {
    const old = new Map();
    for (const tr of Array.from(tbody.rows)) {
      if (tr.dataset.key !== undefined) old.set(tr.dataset.key, tr);
      else tr.remove();
    }
    let prev = null;
    for (const item of items) {
      const key = keyOf(item);
      let tr = old.get(key);
      if (tr) old.delete(key);
      else {
        tr = create(item);
        tr.dataset.key = key;
      }
      update(tr, item);
      const want = prev ? prev.nextSibling : tbody.firstChild;
      if (tr !== want) tbody.insertBefore(tr, want);
      prev = tr;
    }
    for (const tr of old.values()) tr.remove();
    if (items.length === 0) {
      tbody.append(h('tr', { class: 'empty' }, h('td', { colspan: columns, text: emptyText })));
    }
  }

  // ---- formatting --------------------------------------------------------------------------

  function parseTime(s) {
    if (typeof s !== 'string') return NaN;
    // Browsers disagree on more than three digits of fractional seconds.
    return Date.parse(s.replace(/(\.\d{3})\d+/, '$1'));
  }

  function fmtRate(r) {
    if (typeof r !== 'number' || !isFinite(r)) return '—';
    if (r === 0) return '0';
    if (r < 0.1) return '<0.1';
    if (r < 100) return r.toFixed(1);
    return Math.round(r).toLocaleString('en');
  }

  function fmtRatio(r) {
    if (typeof r !== 'number' || !isFinite(r)) return '—';
    if (r === 0) return '0 %';
    if (r < 0.001) return '<0.1 %';
    return (r * 100).toFixed(r < 0.1 ? 1 : 0) + ' %';
  }

  function fmtSeconds(s) {
    if (typeof s !== 'number' || !isFinite(s)) return '—';
    if (s < 0.001) return (s * 1000).toFixed(2) + ' ms';
    if (s < 0.01) return (s * 1000).toFixed(1) + ' ms';
    if (s < 1) return Math.round(s * 1000) + ' ms';
    return s.toFixed(s < 10 ? 2 : 1) + ' s';
  }

  function fmtShare(x) {
    if (typeof x !== 'number' || !isFinite(x)) return '—';
    return (x * 100).toFixed(1) + ' %';
  }

  function fmtAge(ms) {
    if (!isFinite(ms)) return '';
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min';
    if (s < 86400) return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
    return Math.floor(s / 86400) + ' d ' + Math.floor((s % 86400) / 3600) + ' h';
  }

  function num(x, fallback) {
    return typeof x === 'number' && isFinite(x) ? x : fallback;
  }

  function hashKeyWords(k) {
    if (k && typeof k === 'object') {
      const [kind, name] = Object.entries(k)[0] || [];
      return hashKeyWords(kind + ':' + name);
    }
    const key = String(k || 'path');
    const simple = {
      path: 'the path', uri: 'the path and query', client_ip: 'the client IP address',
    };
    if (simple[key]) return simple[key];
    const m = /^(header|cookie|query)[:=](.*)$/.exec(key);
    if (m) {
      const what = { header: 'header', cookie: 'cookie', query: 'query parameter' }[m[1]];
      return 'the ' + what + ' ' + m[2];
    }
    return key;
  }

  function algorithmWords(b) {
    const alg = b && b.algorithm;
    switch (alg) {
      case 'round_robin': return 'Smooth weighted round robin';
      case 'least_requests': return 'Least requests: the server with the fewest in flight, by weight';
      case 'random_two': return 'Power of two choices: the less busy of two random servers';
      case 'consistent_hash':
      case 'maglev': {
        const parts = [];
        if (alg === 'consistent_hash') {
          parts.push('Consistent hashing on ' + hashKeyWords(b.hash_key));
          if (b.vnodes !== undefined) parts.push(b.vnodes + ' points per unit of weight');
        } else {
          parts.push('Maglev hashing on ' + hashKeyWords(b.hash_key));
          if (b.table_size !== undefined) parts.push('a table of ' + b.table_size + ' entries');
        }
        parts.push(typeof b.bounded_load === 'number'
          ? 'bounded load ' + b.bounded_load : 'no load bound');
        if (b.hash) parts.push('hash ' + b.hash);
        return parts.join(', ');
      }
      default: return alg ? String(alg) : 'unknown algorithm';
    }
  }

  function poolSettingsWords(p) {
    const parts = [];
    if (typeof p.retries === 'number') parts.push(p.retries + (p.retries === 1 ? ' retry' : ' retries'));
    if (typeof p.max_conns === 'number') {
      parts.push(p.max_conns > 0 ? 'at most ' + p.max_conns + ' connections per server' : 'no connection limit');
    }
    parts.push(p.slow_start ? 'slow start ' + p.slow_start : 'no slow start');
    const hc = p.health_check;
    if (hc) {
      parts.push('health check GET ' + hc.path + ' every ' + hc.interval + ' (timeout ' + hc.timeout
        + ', rise ' + hc.rise + ', fall ' + hc.fall + ', expect ' + [].concat(hc.expect).join(', ') + ')');
    } else {
      parts.push('no active health check');
    }
    const pa = p.passive;
    parts.push(pa ? 'ejects for ' + pa.eject + ' after ' + pa.failures + ' failures in a row'
      : 'no passive ejection');
    return parts.join(' · ');
  }

  function targetWords(t) {
    if (!t) return '—';
    switch (t.kind) {
      case 'pool': return 'pool ' + t.pool;
      case 'redirect': return 'redirect ' + (t.status || '') + ' → ' + t.to;
      case 'static': return 'static files ' + t.dir;
      default: return String(t.kind);
    }
  }

  // ---- the API -----------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function token() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || '';
    } catch (_) {
      return '';
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    const t = token();
    if (t) headers.Authorization = 'Bearer ' + t;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
    let res;
    let text;
    try {
      res = await fetch(API + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
        credentials: 'omit',
        redirect: 'error',
        signal: ctl.signal,
      });
      text = await res.text();
    } catch (e) {
      if (e.name === 'AbortError') throw new ApiError(0, 'no answer within ' + TIMEOUT_MS / 1000 + ' s');
      throw new ApiError(0, 'the admin API cannot be reached (' + (e.message || 'network error') + ')');
    } finally {
      clearTimeout(timer);
    }
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch (_) {
      json = null;
    }
    if (!res.ok) {
      const msg = json && json.error && json.error.message ? json.error.message
        : (text || res.statusText || 'error').slice(0, 300);
      throw new ApiError(res.status, msg);
    }
    if (json === null) throw new ApiError(res.status, 'the answer is not JSON');
    return json;
  }

  function enc(s) {
    return encodeURIComponent(s);
  }

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

  function errorWords(e, what) {
    if (!(e instanceof ApiError)) return what + ' failed: ' + e.message;
    const msg = e.message.replace(/[.\s]+$/, '');
    if (e.status === 0) return what + ' failed: ' + msg + '.';
    if (e.status === 422 || e.status === 400) return what + ' was refused (' + e.status + '): ' + msg + '.';
    let text = what + ' failed (' + e.status + '): ' + msg + '.';
    if (e.status === 401) {
      text += token() ? ' The admin token was refused; check it at the top of the page.'
        : ' This server needs the admin token: enter it at the top of the page.';
    }
    return text;
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
    renderListeners(st.listeners || []);
    renderRoutes(st.routes || []);
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

  function renderRoutes(list) {
    syncRows(document.querySelector('#routes tbody'), list, (r) => r.name,
      () => h('tr', {}, h('th', { scope: 'row' }), h('td'), h('td', { class: 'mono' }), h('td'),
        h('td', { class: 'num' }), h('td', { class: 'num' })),
      (tr, r) => {
        setText(tr.cells[0], r.name);
        setText(tr.cells[1], r.host || 'any host');
        setClass(tr.cells[1], r.host ? 'mono' : 'muted');
        setText(tr.cells[2], r.path || '/');
        setText(tr.cells[3], targetWords(r.target));
        setText(tr.cells[4], fmtRate(r.requests_per_s));
        setText(tr.cells[5], fmtRatio(r.error_5xx_ratio));
        setClass(tr.cells[5], 'num' + (r.error_5xx_ratio > 0 ? ' bad' : ''));
      }, 'No route.', 6);
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
    const algo = algorithmWords(p.balance);
    setText(pv.algo, p.description && !algo.toLowerCase().includes(String(p.description).toLowerCase())
      ? algo + ' (' + p.description + ')' : algo);
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
      if (key !== pv.ringKey) {
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
    tr.append(h('th', { scope: 'row' }, name, runtime));
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
    tr.refs = { name, runtime, moveBtn, input, weight, ramp };
    return tr;
  }

  function updateServerRow(pv, tr, s, now) {
    const c = tr.cells;
    const status = STATUS_MEANING[s.status] ? s.status : 'down';
    setText(tr.refs.name, s.name);
    tr.refs.runtime.hidden = !s.added_at_runtime;
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
      health = 'up · no check';
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

  // ---- charts ------------------------------------------------------------------------------

  const CHART_W = 320;
  const CHART_H = 96;
  const CHART_PAD = { l: 4, r: 4, t: 16, b: 14 };
  const WINDOW_MS = 5 * 60 * 1000;

  function niceMax(x) {
    if (!(x > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(x)));
    for (const m of [1, 2, 2.5, 5, 10]) if (x <= m * p) return m * p;
    return 10 * p;
  }

  function drawChart(pv, history, now) {
    const end = isFinite(now) ? now : Date.now();
    const pts = history.map((pt) => ({ t: parseTime(pt.at), r: pt.requests_per_s, p: pt.p99_s }))
      .filter((pt) => isFinite(pt.t) && pt.t >= end - WINDOW_MS - 2000);
    const rMax = niceMax(Math.max(0, ...pts.map((pt) => num(pt.r, 0))));
    const pMax = niceMax(Math.max(0, ...pts.map((pt) => num(pt.p, 0))));
    const iw = CHART_W - CHART_PAD.l - CHART_PAD.r;
    const ih = CHART_H - CHART_PAD.t - CHART_PAD.b;
    const x = (t) => CHART_PAD.l + iw * Math.min(1, Math.max(0, 1 - (end - t) / WINDOW_MS));
    const y = (v, max) => CHART_PAD.t + ih * (1 - Math.min(1, v / max));
    // A missing p99 (no request in that sample) breaks its line rather than drawing a zero.
    let rate = '';
    let area = '';
    let p99 = '';
    let penUp = true;
    for (const pt of pts) {
      const px = x(pt.t).toFixed(1);
      if (typeof pt.r === 'number') {
        rate += (rate ? 'L' : 'M') + px + ' ' + y(pt.r, rMax).toFixed(1);
      }
      if (typeof pt.p === 'number') {
        p99 += (penUp ? 'M' : 'L') + px + ' ' + y(pt.p, pMax).toFixed(1);
        penUp = false;
      } else {
        penUp = true;
      }
    }
    const rated = pts.filter((pt) => typeof pt.r === 'number');
    if (rated.length > 1) {
      const base = (CHART_PAD.t + ih).toFixed(1);
      area = rate + 'L' + x(rated[rated.length - 1].t).toFixed(1) + ' ' + base + 'L' + x(rated[0].t).toFixed(1) + ' ' + base + 'Z';
    }
    const last = pts[pts.length - 1];
    const summary = 'Last five minutes of pool ' + pv.name + ': requests per second up to '
      + fmtRate(rMax) + ', p99 latency up to ' + fmtSeconds(pMax) + '.';
    const grid = [];
    for (const f of [0, 0.5, 1]) {
      const gy = (CHART_PAD.t + ih * f).toFixed(1);
      grid.push(svg('line', { x1: CHART_PAD.l, x2: CHART_W - CHART_PAD.r, y1: gy, y2: gy, class: 'gridline' }));
    }
    const chart = svg('svg', {
      viewBox: '0 0 ' + CHART_W + ' ' + CHART_H, width: CHART_W, height: CHART_H,
      role: 'img', 'aria-label': summary, class: 'spark',
    },
    svg('title', { text: summary }),
    ...grid,
    area ? svg('path', { d: area, class: 'rate-area' }) : null,
    rate ? svg('path', { d: rate, class: 'rate-line' }) : null,
    p99 ? svg('path', { d: p99, class: 'p99-line' }) : null,
    svg('text', { x: CHART_PAD.l, y: 11, class: 'axis rate-text', text: fmtRate(rMax) + ' req/s' }),
    svg('text', { x: CHART_W - CHART_PAD.r, y: 11, class: 'axis p99-text end', text: 'p99 ' + fmtSeconds(pMax) }),
    svg('text', { x: CHART_PAD.l, y: CHART_H - 2, class: 'axis', text: '−5 min' }),
    svg('text', { x: CHART_W - CHART_PAD.r, y: CHART_H - 2, class: 'axis end', text: 'now' }),
    pts.length === 0 ? svg('text', { x: CHART_W / 2, y: CHART_H / 2, class: 'axis middle', text: 'no samples yet' }) : null);
    const caption = h('figcaption', {},
      h('span', { class: 'key rate-key', 'aria-hidden': 'true' }), ' requests/s ',
      h('span', { class: 'key p99-key', 'aria-hidden': 'true' }), ' p99',
      last ? ' · now ' + fmtRate(last.r) + ' req/s, p99 ' + fmtSeconds(last.p) : '');
    pv.chart.replaceChildren(chart, caption);
  }

  // ---- the ring of a hashed pool -----------------------------------------------------------

  async function loadRing(pv) {
    const key = pv.ringKey;
    try {
      const ring = await api('GET', '/pools/' + enc(pv.name) + '/ring');
      if (key !== pv.ringKey) return;
      pv.ring = ring;
      drawRing(pv);
    } catch (e) {
      if (key !== pv.ringKey) return;
      pv.ring = null;
      pv.ringKey = null; // try again on the next refresh
      pv.ringFig.replaceChildren(h('figcaption', { class: 'muted', text: errorWords(e, 'Reading the ring') }));
    }
  }

  const TWO64 = 2n ** 64n;
  function turn(start) {
    try {
      return Number((BigInt(start) * 1000000n) / TWO64) / 1000000;
    } catch (_) {
      return NaN;
    }
  }

  function arc(cx, cy, r0, r1, a0, a1) {
    // Angles in turns from 12 o'clock, clockwise.
    const pt = (r, a) => {
      const t = 2 * Math.PI * a;
      return (cx + r * Math.sin(t)).toFixed(2) + ' ' + (cy - r * Math.cos(t)).toFixed(2);
    };
    if (a1 - a0 >= 0.9999) {
      return 'M' + pt(r1, 0) + 'A' + r1 + ' ' + r1 + ' 0 1 1 ' + pt(r1, 0.5) + 'A' + r1 + ' ' + r1 + ' 0 1 1 ' + pt(r1, 0)
        + 'M' + pt(r0, 0) + 'A' + r0 + ' ' + r0 + ' 0 1 0 ' + pt(r0, 0.5) + 'A' + r0 + ' ' + r0 + ' 0 1 0 ' + pt(r0, 0) + 'Z';
    }
    const large = a1 - a0 > 0.5 ? 1 : 0;
    return 'M' + pt(r1, a0) + 'A' + r1 + ' ' + r1 + ' 0 ' + large + ' 1 ' + pt(r1, a1)
      + 'L' + pt(r0, a1) + 'A' + r0 + ' ' + r0 + ' 0 ' + large + ' 0 ' + pt(r0, a0) + 'Z';
  }

  // Segments of the ring as [from, to, server] in turns: from the partitions when they can be
  // drawn, else one arc per server sized by its share.
  function ringSegments(ring) {
    let parts = Array.isArray(ring.simplified) && ring.simplified.length ? ring.simplified : ring.partitions;
    if (Array.isArray(parts) && parts.length > 0 && parts.length <= 5000) {
      const pts = parts.map((p) => ({ a: turn(p.start), server: p.server }))
        .filter((p) => isFinite(p.a)).sort((a, b) => a.a - b.a);
      if (pts.length === parts.length) {
        // A partition runs from its start to the next one's; the last wraps round to the first.
        return pts.map((p, i) => [p.a, i + 1 < pts.length ? pts[i + 1].a : pts[0].a + 1, p.server]);
      }
    }
    let a = 0;
    return (ring.shares || []).map((s) => {
      const seg = [a, a + num(s.share, 0), s.server];
      a += num(s.share, 0);
      return seg;
    });
  }

  function drawRing(pv) {
    const ring = pv.ring;
    const shares = ring.shares || [];
    const segs = ringSegments(ring);
    const g = svg('g');
    for (const [a0, a1, server] of segs) {
      if (!(a1 > a0)) continue;
      const from = a0 % 1;
      g.append(svg('path', {
        d: arc(60, 60, 34, 56, from, from + (a1 - a0)),
        class: 'seg c' + (pv.colours.has(server) ? pv.colours.get(server) : 7),
      }, svg('title', { text: server })));
    }
    const label = 'Hash ring of pool ' + pv.name + ': ' + shares.map((s) => s.server + ' ' + fmtShare(s.share)).join(', ');
    const pic = svg('svg', { viewBox: '0 0 120 120', width: 130, height: 130, role: 'img', 'aria-label': label, class: 'ring-svg' },
      svg('title', { text: label }), g,
      svg('text', { x: 60, y: 58, class: 'axis middle', text: ring.algorithm === 'maglev' ? 'table' : 'ring' }),
      svg('text', { x: 60, y: 70, class: 'axis middle', text: segs.length + ' arcs' }));

    const total = (pv.servers || []).reduce((t, s) => t + num(s.weight, 0), 0);
    const weightOf = new Map((pv.servers || []).map((s) => [s.name, num(s.weight, 0)]));
    const rows = h('tbody');
    for (const s of shares) {
      const ideal = total > 0 && weightOf.has(s.server) ? weightOf.get(s.server) / total : null;
      const bar = svg('svg', { viewBox: '0 0 100 8', width: 100, height: 8, 'aria-hidden': 'true', class: 'bar' },
        svg('rect', { x: 0, y: 0, width: 100, height: 8, class: 'bar-bg' }),
        svg('rect', { x: 0, y: 0, width: Math.max(0.5, Math.min(100, num(s.share, 0) * 100)).toFixed(2), height: 8,
          class: 'seg c' + (pv.colours.has(s.server) ? pv.colours.get(s.server) : 7) }));
      rows.append(h('tr', {},
        h('th', { scope: 'row' }, h('span', { class: 'swatch seg-bg c' + (pv.colours.has(s.server) ? pv.colours.get(s.server) : 7), 'aria-hidden': 'true' }), ' ', s.server),
        h('td', {}, bar),
        h('td', { class: 'num', text: fmtShare(s.share) }),
        h('td', { class: 'num muted', text: ideal === null ? '' : 'weight ' + fmtShare(ideal) })));
    }
    const table = h('table', { class: 'shares' },
      h('caption', { text: 'Share of the hash space' }),
      h('thead', { class: 'sr-only' }, h('tr', {}, h('th', { scope: 'col', text: 'Server' }),
        h('th', { scope: 'col', text: 'Bar' }), h('th', { scope: 'col', text: 'Share' }),
        h('th', { scope: 'col', text: 'By weight' }))),
      rows);
    pv.ringFig.replaceChildren(pic, table);
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

  function closePlan(pv) {
    pv.openPlan = null;
    pv.planBox.hidden = true;
    pv.planBox.replaceChildren();
  }

  async function loadPlan(pv, server) {
    const key = pv.ringKey;
    pv.planBox.hidden = false;
    if (!pv.planBox.firstChild) pv.planBox.replaceChildren(h('p', { class: 'muted', text: 'Asking the ring planner about ' + server + '…' }));
    let plan;
    try {
      plan = await api('POST', '/pools/' + enc(pv.name) + '/ring/plan', { remove: [server] });
    } catch (e) {
      if (pv.openPlan !== server) return;
      pv.planBox.replaceChildren(planHeading(pv, server),
        h('p', { class: 'bad', text: errorWords(e, 'The ring planner') }));
      return;
    }
    if (pv.openPlan !== server || key !== pv.ringKey) return;
    const moves = (plan.moves || []).slice().sort((a, b) => num(b.share, 0) - num(a.share, 0));
    const list = h('ul', { class: 'moves' });
    for (const m of moves) {
      list.append(h('li', {},
        h('span', { class: 'swatch seg-bg c' + (pv.colours.has(m.to) ? pv.colours.get(m.to) : 7), 'aria-hidden': 'true' }),
        ' ' + fmtShare(m.share) + ' of the keys from ' + m.from + ' to ' + m.to));
    }
    const after = (plan.after || []).map((a) => a.server + ' ' + fmtShare(a.share)).join(', ');
    pv.planBox.replaceChildren(planHeading(pv, server),
      h('p', {}, h('strong', { text: fmtShare(plan.moved_share) }), ' of the hash space would move.'),
      moves.length ? list : h('p', { class: 'muted', text: 'Nothing would move.' }),
      after ? h('p', { class: 'muted', text: 'Shares after: ' + after + '.' }) : null);
  }

  function planHeading(pv, server) {
    return h('div', { class: 'plan-head' },
      h('h4', { text: 'If ' + server + ' leaves pool ' + pv.name }),
      h('button', { type: 'button', class: 'link', text: 'Close', onclick: () => { closePlan(pv); if (view.lastOk) render(view.lastOk); } }));
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
})();
