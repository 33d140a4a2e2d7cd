// Ringway status page: what the other modules share. DOM building that never parses markup,
// number and time formatting, the algorithm in words, and api(): the page's one way to the
// network, to same-origin /api/v1 endpoints only.

export const API = '/api/v1';
export const TOKEN_KEY = 'ringway.admin-token';
const TIMEOUT_MS = 5000;
const SVG_NS = 'http://www.w3.org/2000/svg';

// ---- small DOM helpers ------------------------------------------------------------------

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  for (const c of children) {
    if (c !== null && c !== undefined) el.append(c);
  }
  return el;
}

export function svg(tag, attrs, ...children) {
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
export function setText(el, text) {
  const t = String(text);
  if (el.textContent !== t) el.textContent = t;
}

export function setClass(el, cls) {
  if (el.getAttribute('class') !== cls) el.setAttribute('class', cls);
}

// Brings the rows of `tbody` in line with `items`, keeping rows (and what is typed in them)
// whose key is still there, so nothing jumps or loses focus on a refresh.
export function syncRows(tbody, items, keyOf, create, update, emptyText, columns) {
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

export function parseTime(s) {
  if (typeof s !== 'string') return NaN;
  // Browsers disagree on more than three digits of fractional seconds.
  return Date.parse(s.replace(/(\.\d{3})\d+/, '$1'));
}

export function fmtRate(r) {
  if (typeof r !== 'number' || !isFinite(r)) return '—';
  if (r === 0) return '0';
  if (r < 0.1) return '<0.1';
  if (r < 100) return r.toFixed(1);
  return Math.round(r).toLocaleString('en');
}

export function fmtRatio(r) {
  if (typeof r !== 'number' || !isFinite(r)) return '—';
  if (r === 0) return '0 %';
  if (r < 0.001) return '<0.1 %';
  return (r * 100).toFixed(r < 0.1 ? 1 : 0) + ' %';
}

export function fmtSeconds(s) {
  if (typeof s !== 'number' || !isFinite(s)) return '—';
  if (s < 0.001) return (s * 1000).toFixed(2) + ' ms';
  if (s < 0.01) return (s * 1000).toFixed(1) + ' ms';
  if (s < 1) return Math.round(s * 1000) + ' ms';
  return s.toFixed(s < 10 ? 2 : 1) + ' s';
}

export function fmtShare(x) {
  if (typeof x !== 'number' || !isFinite(x)) return '—';
  return (x * 100).toFixed(1) + ' %';
}

export function fmtAge(ms) {
  if (!isFinite(ms)) return '';
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return s + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min';
  if (s < 86400) return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  return Math.floor(s / 86400) + ' d ' + Math.floor((s % 86400) / 3600) + ' h';
}

export function num(x, fallback) {
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

export function algorithmWords(b) {
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

function expectWords(e) {
  if (Array.isArray(e)) return e.join(', ');
  if (e && typeof e === 'object') return JSON.stringify(e);
  return String(e);
}

export function poolSettingsWords(p) {
  const parts = [];
  if (typeof p.retries === 'number') parts.push(p.retries + (p.retries === 1 ? ' retry' : ' retries'));
  if (typeof p.max_conns === 'number') {
    parts.push(p.max_conns > 0 ? 'at most ' + p.max_conns + ' connections per server' : 'no connection limit');
  }
  parts.push(p.slow_start ? 'slow start ' + p.slow_start : 'no slow start');
  const hc = p.health_check;
  if (hc) {
    parts.push('health check GET ' + hc.path + ' every ' + hc.interval + ' (timeout ' + hc.timeout
      + ', rise ' + hc.rise + ', fall ' + hc.fall + ', expect ' + expectWords(hc.expect) + ')');
  } else {
    parts.push('no active health check');
  }
  const pa = p.passive;
  parts.push(pa ? 'ejects for ' + pa.eject + ' after ' + pa.failures + ' failures in a row'
    : 'no passive ejection');
  return parts.join(' · ');
}

export function targetWords(t) {
  if (!t) return '—';
  switch (t.kind) {
    case 'pool': return 'pool ' + t.pool;
    case 'redirect': return 'redirect ' + (t.status || '') + ' → ' + t.to;
    case 'static': return 'static files ' + t.dir;
    default: return String(t.kind);
  }
}

// A route's maintenance in words, with a class for its colour and the details for a tooltip.
export function maintenanceWords(m, now) {
  if (!m) return { text: '—', cls: 'muted', title: 'no [route.maintenance] table' };
  const title = [];
  if (m.windows && m.windows.length) title.push('windows: ' + m.windows.join('; '));
  if (m.allow && m.allow.length) title.push('still allowed: ' + m.allow.join(', '));
  const at = (s) => parseTime(s) - now;
  if (m.active) {
    const why = [];
    if (m.enabled) why.push('by hand');
    if (m.in_window) why.push('in a window');
    let text = 'in maintenance (' + why.join(', ') + ')';
    if (m.ends_at) text += ', ends in ' + fmtAge(at(m.ends_at));
    else text += ', until switched off';
    return { text, cls: 'bad', title: title.join('\n') };
  }
  if (m.next_window) {
    const start = parseTime(m.next_window.start);
    const end = parseTime(m.next_window.end);
    const text = 'next window in ' + fmtAge(start - now) + ' (' +
      new Date(start).toLocaleString() + ', ' + fmtAge(end - start) + ')';
    return { text, cls: '', title: title.join('\n') };
  }
  return { text: 'off', cls: 'muted', title: title.join('\n') };
}

// ---- the API -----------------------------------------------------------------------------

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function token() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  } catch (_) {
    return '';
  }
}

export async function api(method, path, body) {
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

export function enc(s) {
  return encodeURIComponent(s);
}

export function errorWords(e, what) {
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

