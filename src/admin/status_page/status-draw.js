// Ringway status page: the pictures of a pool. The chart of its last five minutes, the ring of
// a hashed pool with each server's share, and the ring planner's "what moves if this server
// goes" preview.

import {
  api, enc, errorWords, fmtRate, fmtSeconds, fmtShare, h, num, parseTime, svg,
} from './status-lib.js';

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

export function drawChart(pv, history, now) {
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

export async function loadRing(pv) {
  const key = pv.ringKey;
  try {
    const ring = await api('GET', '/pools/' + enc(pv.name) + '/ring');
    if (key !== pv.ringKey) return;
    pv.ring = ring;
    drawRing(pv);
  } catch (e) {
    if (key !== pv.ringKey) return;
    pv.ring = null;
    pv.ringKey = null; // try again, but not on every refresh
    pv.ringRetryAt = Date.now() + 10000;
    pv.ringFig.replaceChildren(h('figcaption', { class: 'muted', text: errorWords(e, 'Reading the ring') }));
  }
}

// Where a hash value sits on the ring, in turns. Hash values come as decimal strings (a u64
// does not fit a JS number); the hash space is 0..=max_hash (u64 for xxh3, less for sha1-28).
function turn(start, space) {
  try {
    return Number((BigInt(start) * 1000000n) / space) / 1000000;
  } catch (_) {
    return NaN;
  }
}

function hashSpace(ring) {
  try {
    if (typeof ring.max_hash === 'string') return BigInt(ring.max_hash) + 1n;
  } catch (_) { /* the u64 space below */ }
  return 2n ** 64n;
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
    const space = hashSpace(ring);
    const pts = parts.map((p) => ({ a: turn(p.start, space), server: p.server }))
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

export function closePlan(pv) {
  pv.openPlan = null;
  pv.planBox.hidden = true;
  pv.planBox.replaceChildren();
}

export async function loadPlan(pv, server) {
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
    h('button', { type: 'button', class: 'link', text: 'Close', onclick: () => { closePlan(pv); pv.onPlanClosed(); } }));
}

