// hedge dashboard: follows the center's event stream and renders accounts, positions, the hedge plan,
// hedges, exposure and the event log. Plain browser JavaScript, no build step, no external fetches.
'use strict';

// ---------------------------------------------------------------------------------------------
// Small helpers

const $ = (sel, root = document) => root.querySelector(sel);

// Builds an element. Text always goes through textContent, never innerHTML, so data from the
// center (comments, reasons, symbol names) cannot inject markup.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'text') el.textContent = v;
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) if (c) el.append(c);
  return el;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function pad(n, w = 2) {
  return String(n).padStart(w, '0');
}

// MT5's own date layout (yyyy.mm.dd hh:mi:ss), in UTC.
function fmtTime(ms) {
  if (ms === undefined || ms === null || ms <= 0) return '';
  const d = new Date(ms);
  return `${d.getUTCFullYear()}.${pad(d.getUTCMonth() + 1)}.${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
}

function fmtAge(ms) {
  if (!ms) return 'never';
  const sec = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (sec < 60) return `${sec} s ago`;
  if (sec < 3600) return `${Math.floor(sec / 60)} min ago`;
  return `${Math.floor(sec / 3600)} h ago`;
}

// ---------------------------------------------------------------------------------------------
// Exact decimals. Volumes, prices and money arrive as JSON numbers whose shortest form is the
// decimal the center wrote; they are summed here as integers scaled by 10^10, never as floats.

const DEC_PLACES = 10;
const DEC_SCALE = 10n ** BigInt(DEC_PLACES);

function dec(value) {
  if (value === undefined || value === null || value === '') return null;
  let text = typeof value === 'number' ? String(value) : String(value).trim();
  if (/e/i.test(text)) {
    const n = Number(text);
    if (!Number.isFinite(n)) return null;
    text = n.toFixed(DEC_PLACES);
  }
  const m = /^([+-]?)(\d*)(?:\.(\d*))?$/.exec(text);
  if (!m || (m[2] === '' && (m[3] === undefined || m[3] === ''))) return null;
  const frac = (m[3] || '').slice(0, DEC_PLACES).padEnd(DEC_PLACES, '0');
  const v = BigInt(m[2] || '0') * DEC_SCALE + BigInt(frac);
  return m[1] === '-' ? -v : v;
}

// Multiplies two scaled decimals, rounding half away from zero back to the scale.
function decMul(a, b) {
  const p = a * b;
  const q = p / DEC_SCALE;
  const r = p % DEC_SCALE;
  const half = DEC_SCALE / 2n;
  if (r >= half) return q + 1n;
  if (r <= -half) return q - 1n;
  return q;
}

// Text of a scaled decimal with `digits` decimals (rounded half away from zero), or with trailing
// zeros trimmed when `digits` is undefined.
function fmtDec(v, digits) {
  if (v === null || v === undefined) return '';
  let x = v;
  if (digits !== undefined && digits < DEC_PLACES) {
    const unit = 10n ** BigInt(DEC_PLACES - digits);
    const q = x / unit;
    const r = x % unit;
    const half = unit / 2n;
    x = (r >= half ? q + 1n : r <= -half ? q - 1n : q) * unit;
  }
  const neg = x < 0n;
  const abs = neg ? -x : x;
  const int = abs / DEC_SCALE;
  let frac = (abs % DEC_SCALE).toString().padStart(DEC_PLACES, '0');
  if (digits === undefined) frac = frac.replace(/0+$/, '');
  else frac = frac.slice(0, digits);
  const sign = neg && (int !== 0n || /[1-9]/.test(frac)) ? '-' : '';
  return sign + int.toString() + (frac ? '.' + frac : '');
}

function fmtNum(value, digits) {
  const d = dec(value);
  return d === null ? '' : fmtDec(d, digits);
}

// Decimals a step implies: 0.01 -> 2, 1 -> 0.
function stepDigits(step) {
  const d = dec(step);
  if (d === null || d <= 0n) return undefined;
  const t = fmtDec(d);
  const i = t.indexOf('.');
  return i < 0 ? 0 : t.length - i - 1;
}

// ---------------------------------------------------------------------------------------------
// State

const TOKEN_KEY = 'hedge.dashboard.token';
const MAX_EVENTS = 5000;
const MAX_SAMPLES = 2000;

const S = {
  token: sessionStorage.getItem(TOKEN_KEY) || '',
  accounts: new Map(), // login -> Account
  positions: new Map(), // "login:position_id" -> Position
  hedges: new Map(), // id -> Hedge
  commands: new Map(), // id -> Command (operator close/retry requests and their outcome)
  plans: new Map(), // hedge login -> HedgePlan
  pauses: [],
  allocations: [], // the operator's allocations of client exposure to hedge accounts
  events: [], // newest last
  lastEventId: 0,
  exposure: new Map(), // symbol -> [{t, exposure, hedged}]
  deals: new Map(), // position key -> [VolumeChange]
  expanded: new Set(),
  unavailable: new Set(), // features whose endpoint the center does not have
  streamAbort: null,
  session: 0,
};

const posKey = (p) => `${p.login}:${p.position_id}`;

// The latest marks of an account's open positions (current price, swap, profit, commission).
function applyMarks(login, marks) {
  for (const m of marks) {
    const p = S.positions.get(`${login}:${m.position_id}`);
    if (!p || p.status === 'closed') continue;
    p.price_current = m.price_current;
    p.swap = m.swap;
    p.profit = m.profit;
    p.commission = m.commission;
  }
}

// Whether a hedge still holds a position on its hedge account.
function hedgeIsOpen(x) {
  return x.status === 'open' || x.status === 'partially_closed';
}

// The hedge account's latest marks of its open hedges' positions (a hedge is matched to its
// position on the hedge account by position id).
function applyHedgeMarks(login, marks) {
  const byPosition = new Map(marks.map((m) => [m.position_id, m]));
  for (const x of S.hedges.values()) {
    if (x.hedge_login !== login || !hedgeIsOpen(x)) continue;
    const m = byPosition.get(x.position_id);
    if (m) x.mark = m;
  }
}

// A hedge's floating P/L (profit + swap + commission of its mark) as a scaled decimal, or null
// when it is not open or its account has not marked it.
function hedgePnl(x) {
  if (!x.mark || !hedgeIsOpen(x)) return null;
  return (dec(x.mark.profit) || 0n) + (dec(x.mark.swap) || 0n) + (dec(x.mark.commission) || 0n);
}

// The latest command about a hedge, if any.
function commandOf(hedgeId) {
  let last = null;
  for (const c of S.commands.values()) if (c.hedge_id === hedgeId && (!last || c.id > last.id)) last = c;
  return last;
}

// ---------------------------------------------------------------------------------------------
// The center's API

class ApiError extends Error {
  constructor(status, body, fallback) {
    super((body && body.message) || fallback || `HTTP ${status}`);
    this.status = status;
    this.kind = (body && body.error) || '';
    this.field = body && body.field;
  }
}

async function api(method, path, body, extraHeaders) {
  const headers = { Authorization: `Bearer ${S.token}`, Accept: 'application/json', ...extraHeaders };
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const text = await res.text();
  let parsed = null;
  if (text) {
    try { parsed = JSON.parse(text); } catch (_) { parsed = null; }
  }
  if (!res.ok) {
    if (res.status === 401) signOut('The center refused the token. Sign in again.');
    throw new ApiError(res.status, parsed, text.slice(0, 200));
  }
  return parsed;
}

// One idempotency key per operator action (128 random bits). getRandomValues, unlike randomUUID,
// also works when the panel is served without TLS from another host.
function actionKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

// Sends one operator action. A lost answer (network error, center restarting) is resent with the
// same key, so the center acts once and answers the resend with the first result; a refusal (4xx)
// is final.
async function postAction(body) {
  const key = actionKey();
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await api('POST', '/v1/actions', body, { 'Idempotency-Key': key });
    } catch (e) {
      const lost = !(e instanceof ApiError) || e.status >= 500;
      if (!lost || attempt >= 4) throw e;
      await sleep(300 * attempt);
    }
  }
}

// Reads every page of a cursor-paged list.
async function pages(path, params, maxRows) {
  const items = [];
  let after;
  for (;;) {
    const q = new URLSearchParams(params);
    q.set('limit', '1000');
    if (after !== undefined) q.set('after', String(after));
    const page = await api('GET', `${path}?${q}`);
    items.push(...(page.items || []));
    if (page.next_after === undefined || page.next_after === null || items.length >= maxRows) break;
    after = page.next_after;
  }
  return items;
}

// ---------------------------------------------------------------------------------------------
// Loading and following the center

async function loadSnapshot() {
  const [accounts, positions, hedges, pauses, commands] = await Promise.all([
    api('GET', '/v1/accounts'),
    pages('/v1/positions', {}, 200000),
    pages('/v1/hedges', {}, 200000),
    api('GET', '/v1/pauses'),
    // An older center has no commands; the hedge actions then show as unavailable when used.
    pages('/v1/commands', {}, 200000).catch((e) => {
      if (e.status === 404 || e.status === 403) return [];
      throw e;
    }),
  ]);
  S.accounts = new Map((accounts || []).map((a) => [a.login, a]));
  S.positions = new Map(positions.map((p) => [posKey(p), p]));
  S.hedges = new Map(hedges.map((x) => [x.id, x]));
  S.commands = new Map(commands.map((c) => [c.id, c]));
  S.pauses = pauses || [];
  await refreshAllocations();
  reindexExposure();
  for (const sym of symbolsInPlay()) sampleExposure(sym, Date.now());
  await refreshPlans();
  markDirty('all');
}

// The event log from the start, keeping the newest entries; sets the stream's resume point.
async function loadEventLog() {
  let after = 0;
  for (let n = 0; n < 1000; n++) {
    const page = await api('GET', `/v1/events?after=${after}&limit=1000`);
    for (const e of page.items || []) addToLog(e);
    if (page.next_after === undefined || page.next_after === null) break;
    after = page.next_after;
  }
}

function addToLog(e) {
  if (e.id <= S.lastEventId) return false;
  S.lastEventId = e.id;
  S.events.push(e);
  if (S.events.length > MAX_EVENTS) S.events.splice(0, S.events.length - MAX_EVENTS);
  return true;
}

let planTimer = null;
function schedulePlanRefresh() {
  if (planTimer) return;
  planTimer = setTimeout(async () => {
    planTimer = null;
    try { await refreshPlans(); markDirty('plan'); } catch (e) { showError(e); }
  }, 150);
}

async function refreshPlans() {
  const hedgeLogins = [...S.accounts.values()].filter((a) => a.role === 'hedge').map((a) => a.login);
  let forbidden = false;
  const plans = await Promise.all(hedgeLogins.map((l) => api('GET', `/v1/plan/${l}`).catch((e) => {
    if (e.status === 403) { forbidden = true; return null; }
    if (e.status === 404) return null;
    throw e;
  })));
  S.planForbidden = forbidden;
  S.plans = new Map();
  plans.forEach((p, i) => { if (p) S.plans.set(hedgeLogins[i], p); });
}

// An older center has no allocations: every client then goes to every hedge account's plan.
async function refreshAllocations() {
  try {
    S.allocations = (await api('GET', '/v1/allocations')) || [];
  } catch (e) {
    if (e.status !== 404 && e.status !== 403) throw e;
    S.allocations = [];
  }
}

async function refreshPauses() {
  S.pauses = (await api('GET', '/v1/pauses')) || [];
  markDirty('accounts', 'plan');
}

function refusalsOf(account) {
  return JSON.stringify((account && account.status && account.status.pretrade_refusals) || []);
}

// Applies one event of the log: the stored object after the change travels in `data`.
function applyEvent(e) {
  const fresh = addToLog(e);
  const d = e.data || {};
  switch (e.kind) {
    case 'account_registered':
    case 'account_status':
    case 'override_set':
    case 'override_cleared':
      if (d && d.login !== undefined && d.role) {
        const { marks, ...account } = d;
        const before = S.accounts.get(d.login);
        S.accounts.set(d.login, account);
        // A hedge account's pre-trade refusals are residuals of its plan.
        if (d.role === 'hedge' && refusalsOf(before) !== refusalsOf(account)) schedulePlanRefresh();
        if (Array.isArray(marks)) {
          if (d.role === 'hedge') { applyHedgeMarks(d.login, marks); markDirty('hedges'); } else applyMarks(d.login, marks);
        }
      } else if (e.login !== undefined && S.accounts.has(e.login)) {
        const a = S.accounts.get(e.login);
        a.status = d.status || d;
        a.last_seen_ms = e.time_ms;
      }
      if (e.kind !== 'account_status') {
        reindexExposure();
        schedulePlanRefresh();
        if (fresh && e.kind !== 'account_registered') announce(e.reason);
      }
      markDirty('accounts', 'positions');
      break;
    case 'command_issued':
    case 'command_done':
    case 'command_failed':
      if (d && d.id !== undefined) {
        keepCommand(d);
        flash.add(`h${d.hedge_id}`);
        if (fresh) announce(`Command ${d.id} (${d.kind.replace('_', ' ')} ${d.hedge_id}): ${d.status}`);
        if (fresh && e.kind !== 'command_issued') {
          toast(`Command ${d.id}: ${d.kind.replace('_', ' ')} ${d.hedge_id} ${d.status}` +
            `${d.result_message ? ` (${d.result_message})` : ''}`, d.status === 'done');
        }
      }
      markDirty('hedges');
      break;
    case 'position_opened':
    case 'position_increased':
    case 'position_reduced':
    case 'position_closed':
    case 'position_modified':
    case 'position_reversed': {
      if (d && d.position_id !== undefined) {
        const key = posKey(d);
        const old = S.positions.get(key);
        if (!old || !(old.last_event_id > d.last_event_id)) { S.positions.set(key, d); indexPosition(d); }
        const deals = S.deals.get(key);
        if (deals && fresh && !deals.some((x) => x.event_id === e.id)) {
          deals.push({
            event_id: e.id, kind: e.kind.replace('position_', ''), side: d.side, volume: d.volume,
            time_ms: e.time_ms,
          });
        }
        flash.add(key);
        sampleExposure(d.symbol, e.time_ms);
      }
      markDirty('positions', 'exposure');
      break;
    }
    case 'hedge_executed':
    case 'hedge_failed':
    case 'hedge_reduced':
    case 'hedge_closed':
      if (d && d.id !== undefined) {
        const old = S.hedges.get(d.id);
        if (!old || !(old.event_id > d.event_id)) {
          // Events carry the hedge without its mark: an open hedge keeps the last one until the
          // next heartbeat.
          if (old && old.mark && !d.mark && hedgeIsOpen(d)) d.mark = old.mark;
          S.hedges.set(d.id, d);
          indexHedge(d);
        }
        flash.add(`h${d.id}`);
        sampleExposure(d.symbol, e.time_ms);
        if (fresh) announce(`Hedge ${d.id} ${d.symbol} ${d.status}`);
      }
      markDirty('hedges', 'exposure');
      break;
    case 'tumbler_fired':
      // The copier or terminal of a client account was killed: worth a look whatever tab is open.
      if (fresh) {
        announce(e.reason);
        toast(`Account ${e.login}: ${e.reason}`);
      }
      break;
    case 'allocation_set':
    case 'allocation_cleared':
      refreshAllocations().then(() => markDirty('accounts')).catch(showError);
      if (fresh) announce(e.reason);
      break;
    case 'paused':
    case 'resumed':
      refreshPauses().catch(showError);
      if (fresh) announce(`${e.kind === 'paused' ? 'Paused' : 'Resumed'} by ${e.actor}`);
      break;
    default:
      break;
  }
  if (!['account_status', 'hedge_failed', 'legacy_position', 'command_done', 'command_failed', 'tumbler_fired'].includes(e.kind)) {
    schedulePlanRefresh();
  }
  markDirty('events');
}

// Reads the event stream with fetch so the bearer token can be sent, resuming from the last event
// seen; reconnects with backoff when the center goes away (restart, network) and resynchronises.
async function follow(session) {
  let backoff = 500;
  let reconnect = false;
  while (S.session === session) {
    const ctrl = new AbortController();
    S.streamAbort = ctrl;
    let watchdog = null;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => ctrl.abort(), 45000);
    };
    try {
      const headers = { Authorization: `Bearer ${S.token}`, Accept: 'text/event-stream' };
      if (S.lastEventId) headers['Last-Event-ID'] = String(S.lastEventId);
      arm();
      const res = await fetch('/v1/events/stream', { headers, signal: ctrl.signal, cache: 'no-store' });
      if (res.status === 401) { signOut('The center refused the token. Sign in again.'); return; }
      if (!res.ok || !res.body) throw new Error(`event stream answered ${res.status}`);
      setConn('live', 'live');
      backoff = 500;
      if (reconnect) {
        // Objects changed while we were away are in the replayed events; the snapshot also
        // covers a center whose store was replaced.
        loadSnapshot().catch(showError);
      }
      reconnect = true;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      let ev = { id: null, event: null, data: [] };
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        arm();
        buf += value;
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          let line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line.endsWith('\r')) line = line.slice(0, -1);
          if (line === '') {
            if (ev.data.length) dispatch(ev);
            ev = { id: null, event: null, data: [] };
            continue;
          }
          if (line.startsWith(':')) continue;
          const c = line.indexOf(':');
          const field = c < 0 ? line : line.slice(0, c);
          let val = c < 0 ? '' : line.slice(c + 1);
          if (val.startsWith(' ')) val = val.slice(1);
          if (field === 'data') ev.data.push(val);
          else if (field === 'id') ev.id = val;
          else if (field === 'event') ev.event = val;
        }
      }
    } catch (err) {
      if (S.session !== session) return;
      if (err && err.name !== 'AbortError') console.warn('event stream:', err.message || err);
    } finally {
      clearTimeout(watchdog);
    }
    if (S.session !== session) return;
    setConn(`reconnecting in ${Math.round(backoff / 100) / 10} s`, 'down');
    await sleep(backoff + Math.random() * 250);
    backoff = Math.min(backoff * 2, 10000);
  }
}

function dispatch(ev) {
  let e;
  try { e = JSON.parse(ev.data.join('\n')); } catch (_) { return; }
  if (!e || typeof e !== 'object' || typeof e.id !== 'number') return;
  applyEvent(e);
}

// ---------------------------------------------------------------------------------------------
// Derived figures

// Exact per-symbol sums, kept up to date as positions and hedges change: each object's last
// contribution is remembered, so an update subtracts exactly what was added (even if a ratio changed
// since) and the dashboard never rescans 10,000 positions for one event.
const EXPO = { bySymbol: new Map(), parts: new Map() };

function expoEntry(symbol) {
  let e = EXPO.bySymbol.get(symbol);
  if (!e) { e = { exposure: 0n, hedged: 0n, open: 0, ratios: new Map() }; EXPO.bySymbol.set(symbol, e); }
  return e;
}

function expoApply(part, sign) {
  const e = expoEntry(part.symbol);
  e.open += sign;
  if (part.hedge) e.hedged += sign > 0 ? part.value : -part.value;
  else {
    e.exposure += sign > 0 ? part.value : -part.value;
    const n = (e.ratios.get(part.ratio) || 0) + sign;
    if (n > 0) e.ratios.set(part.ratio, n); else e.ratios.delete(part.ratio);
  }
}

function expoSet(key, part) {
  const old = EXPO.parts.get(key);
  if (old) expoApply(old, -1);
  if (part) { expoApply(part, 1); EXPO.parts.set(key, part); } else EXPO.parts.delete(key);
}

function positionPart(p) {
  if (!p || p.status === 'closed') return null;
  const a = S.accounts.get(p.login);
  if (a && a.role !== 'client') return null;
  const r = ratioOf(p.login);
  const v = decMul(dec(p.volume) || 0n, r);
  return { symbol: p.symbol, value: p.side === 'sell' ? -v : v, ratio: fmtDec(r) };
}

function hedgePart(x) {
  if (!x || !hedgeIsOpen(x)) return null;
  const v = dec(x.open_volume) || 0n;
  return { symbol: x.symbol, value: x.side === 'sell' ? -v : v, hedge: true };
}

function indexPosition(p) { expoSet(`p${posKey(p)}`, positionPart(p)); }
function indexHedge(x) { expoSet(`h${x.id}`, hedgePart(x)); }

// From scratch: after a snapshot, or when an account (its role or ratio) changed.
function reindexExposure() {
  EXPO.bySymbol = new Map();
  EXPO.parts = new Map();
  for (const p of S.positions.values()) indexPosition(p);
  for (const x of S.hedges.values()) indexHedge(x);
}

function symbolsInPlay() {
  const set = new Set();
  for (const [sym, e] of EXPO.bySymbol) if (e.open > 0) set.add(sym);
  for (const sym of S.exposure.keys()) set.add(sym);
  return [...set].sort();
}

// What the plan uses: the operator's override when there is one, else the agent's value.
function effective(a, field) {
  const o = a && a.overrides;
  return o && o[field] !== undefined && o[field] !== null ? o[field] : a ? a[field] : undefined;
}

function ratioOf(login) {
  const a = S.accounts.get(login);
  const r = a ? dec(effective(a, 'hedge_ratio')) : null;
  return r === null ? DEC_SCALE : r;
}

// Net client exposure (buys minus sells, times each client's ratio) and net open hedge volume.
function exposureOf(symbol) {
  const e = EXPO.bySymbol.get(symbol);
  if (!e) return { exposure: 0n, hedged: 0n, ratios: [] };
  return { exposure: e.exposure, hedged: e.hedged, ratios: [...e.ratios.keys()].sort() };
}

function sampleExposure(symbol, t) {
  if (!symbol) return;
  const { exposure, hedged } = exposureOf(symbol);
  let list = S.exposure.get(symbol);
  if (!list) { list = []; S.exposure.set(symbol, list); }
  const last = list[list.length - 1];
  if (last && last.exposure === exposure && last.hedged === hedged) return;
  list.push({ t: Math.max(t || Date.now(), last ? last.t : 0), exposure, hedged });
  if (list.length > MAX_SAMPLES) list.splice(0, list.length - MAX_SAMPLES);
}

function specFor(login, accountSymbol) {
  const a = S.accounts.get(login);
  if (!a || !a.symbols) return null;
  return a.symbols.find((x) => x.name === accountSymbol) || null;
}

function priceDigits(login, accountSymbol, symbol) {
  const spec = specFor(login, accountSymbol) || specFor(login, symbol);
  return spec ? spec.digits : undefined;
}

function volumeDigits(login, accountSymbol, symbol) {
  const spec = specFor(login, accountSymbol) || specFor(login, symbol);
  return spec ? stepDigits(spec.volume_step) : undefined;
}

function pausedFor(login, symbol) {
  return S.pauses.find((p) =>
    (p.login === undefined || p.login === null || p.login === login) &&
    (p.symbol === undefined || p.symbol === null || p.symbol === symbol));
}

const MARGIN_MODES = { 0: 'netting', 1: 'exchange', 2: 'hedging' };
const marginMode = (m) => MARGIN_MODES[m] !== undefined ? MARGIN_MODES[m] : String(m);
const sideText = (side) => (side === 'sell' ? 'SELL' : side === 'buy' ? 'BUY' : String(side || ''));
const sideClass = (side) => (side === 'sell' ? 'sell' : 'buy');

// ---------------------------------------------------------------------------------------------
// A signed figure as the number columns print it (digits, separators, a decimal point).
const CSV_NUMBER = /^[-+]?\d[\d\s.,]*$/;

// Virtualised table: a scroll box holding a header, a spacer as tall as every row, and only the
// rows in view (plus a margin). Columns are configurable and remembered per table.

const ROW_H = 30;
const flash = new Set();

// A table cell's horizontal padding (app.css: `.vt-row > div { padding: 0 8px }`).
const CELL_PADDING = 16;

class VTable {
  constructor(mount, opts) {
    this.opts = opts;
    this.id = opts.id;
    this.defs = opts.columns;
    this.rows = [];
    this.view = [];
    this.filter = '';
    this.sort = null; // {id, dir}
    this.active = -1;
    // Column widths in px: the declared width is the least, cells widen their column to fit.
    this.widths = new Map(opts.columns.map((c) => [c.id, c.width || 100]));
    this.loadConfig();
    this.scroll = h('div', {
      class: 'vt-scroll', role: 'grid', tabindex: '0', 'aria-label': opts.label,
      'aria-rowcount': '1', 'aria-colcount': '1', id: `${this.id}-grid`,
    });
    this.head = h('div', { class: 'vt-head', role: 'row', 'aria-rowindex': '1' });
    this.body = h('div', { class: 'vt-body', role: 'rowgroup' });
    this.empty = h('div', { class: 'vt-empty', text: opts.empty || 'Nothing to show.' });
    this.scroll.append(this.head, this.body);
    this.root = h('div', { class: `vt${opts.tall ? ' tall' : ''}`, dataset: { table: this.id } },
      this.scroll, this.empty);
    mount.replaceChildren(this.root);
    this.scroll.addEventListener('scroll', () => this.paint(), { passive: true });
    this.scroll.addEventListener('keydown', (ev) => this.onKey(ev));
    this.body.addEventListener('click', (ev) => {
      const row = ev.target.closest('.vt-row');
      if (row) this.setActive(Number(row.dataset.index), false);
    });
    new ResizeObserver(() => this.paint()).observe(this.scroll);
    this.buildTools();
    this.renderHead();
  }

  // Columns in the configured order with the configured names; `opts.shows` leaves out those that
  // do not apply now (the positions' History has realized money where Active has marks).
  get columns() {
    return this.config.filter((c) => c.show).map((c) => ({ ...this.defs.find((d) => d.id === c.id), name: c.name }))
      .filter((c) => c.id && (!this.opts.shows || this.opts.shows(c)));
  }

  loadConfig() {
    let saved = null;
    try { saved = JSON.parse(localStorage.getItem(`hedge.dashboard.columns.${this.id}`) || 'null'); } catch (_) { saved = null; }
    const byId = new Map(this.defs.map((d) => [d.id, d]));
    const config = [];
    if (Array.isArray(saved)) {
      for (const c of saved) {
        if (c && byId.has(c.id) && !config.some((x) => x.id === c.id)) {
          config.push({ id: c.id, name: String(c.name || byId.get(c.id).name).slice(0, 40), show: !!c.show });
        }
      }
    }
    for (const d of this.defs) {
      if (!config.some((c) => c.id === d.id)) config.push({ id: d.id, name: d.name, show: d.hidden !== true });
    }
    this.config = config;
  }

  saveConfig() {
    localStorage.setItem(`hedge.dashboard.columns.${this.id}`, JSON.stringify(this.config));
    this.renderHead();
    this.paint(true);
  }

  resetConfig() {
    localStorage.removeItem(`hedge.dashboard.columns.${this.id}`);
    this.loadConfig();
    this.saveConfig();
  }

  buildTools() {
    const tools = document.querySelector(`[data-tools="${this.id}"]`);
    if (!tools) return;
    const search = h('input', {
      type: 'search', id: `${this.id}-filter`, placeholder: 'Filter…', 'aria-label': `Filter ${this.opts.label}`,
    });
    search.addEventListener('input', () => { this.filter = search.value.trim().toLowerCase(); this.refresh(); });
    const cols = h('button', { type: 'button', text: 'Columns…', 'aria-haspopup': 'dialog', onclick: () => openColumns(this) });
    const csv = h('button', { type: 'button', text: 'Export CSV', onclick: () => this.exportCsv() });
    tools.append(search, cols, csv);
  }

  renderHead() {
    const cols = this.columns;
    this.template = this.templateOf(cols);
    this.head.style.gridTemplateColumns = this.template;
    this.scroll.setAttribute('aria-colcount', String(cols.length));
    this.head.replaceChildren(...cols.map((c, i) => {
      const sorted = this.sort && this.sort.id === c.id;
      const cell = h('div', {
        role: 'columnheader', 'aria-colindex': i + 1, class: c.num ? 'num' : '',
        'aria-sort': sorted ? (this.sort.dir > 0 ? 'ascending' : 'descending') : (c.sort ? 'none' : undefined),
        title: c.note || undefined,
      });
      if (c.sort) {
        const b = h('button', {
          type: 'button', class: 'expander', text: c.name + (sorted ? (this.sort.dir > 0 ? ' ▲' : ' ▼') : ''),
          onclick: () => {
            this.sort = sorted && this.sort.dir > 0 ? { id: c.id, dir: -1 } : sorted ? null : { id: c.id, dir: 1 };
            this.renderHead();
            this.refresh();
          },
        });
        cell.append(b);
      } else {
        cell.textContent = c.name;
      }
      return cell;
    }));
  }

  templateOf(cols) {
    return cols.map((c) => `${this.widths.get(c.id) || c.width || 100}px`).join(' ');
  }

  // Widens every column whose header or painted cells do not fit, so numbers, times and names are
  // never cut. Free text (comments, reasons) stops at its column's `max` and is shortened with an
  // ellipsis, the whole text in the cell's tooltip. Widths only grow: rows scrolled into view
  // later may widen a column once, but a live update never makes the table jump back and forth.
  fit() {
    const cols = this.columns;
    const rows = [this.head, ...this.body.children];
    let grew = false;
    const range = document.createRange();
    cols.forEach((c, i) => {
      let need = 0;
      const box = (this.widths.get(c.id) || c.width || 100) - CELL_PADDING;
      for (const row of rows) {
        const cell = row.children[i];
        if (!cell || !cell.firstChild) continue;
        // Chromium leaves the end padding out of scrollWidth: add it back, and a pixel for rounding.
        if (cell.scrollWidth > cell.clientWidth) need = Math.max(need, cell.scrollWidth + 9);
        // scrollWidth is rounded: a header less than a pixel too wide escapes it, yet the browser
        // still ends it with an ellipsis ("Com…"); its text's own width tells. Body cells are not
        // measured so (it would cost every repaint a layout query per cell): they clip instead of
        // ending in an ellipsis (app.css), so less than a pixel over loses nothing visible.
        if (row !== this.head) continue;
        range.selectNodeContents(cell);
        const text = range.getBoundingClientRect().width;
        if (text > box) need = Math.max(need, Math.ceil(text) + CELL_PADDING + 1);
      }
      if (!need) return;
      if (c.max) need = Math.min(need, c.max);
      if (need > (this.widths.get(c.id) || 0)) { this.widths.set(c.id, need); grew = true; }
    });
    if (!grew) return;
    this.template = this.templateOf(cols);
    for (const row of rows) row.style.gridTemplateColumns = this.template;
  }

  setRows(rows) {
    this.rows = rows;
    this.refresh();
  }

  // Applies the filter and the sort, then paints.
  refresh() {
    let view = this.rows;
    if (this.sort) {
      const def = this.defs.find((d) => d.id === this.sort.id);
      if (def) {
        const key = def.sort;
        const dir = this.sort.dir;
        view = [...view].sort((a, b) => {
          const x = key(a);
          const y = key(b);
          return (x < y ? -1 : x > y ? 1 : 0) * dir;
        });
      }
    }
    if (this.filter) {
      const cols = this.columns;
      view = view.filter((r) => cols.some((c) => String(c.text(r) ?? '').toLowerCase().includes(this.filter)));
    }
    if (this.opts.expand) view = this.opts.expand(view);
    this.view = view;
    if (this.active >= view.length) this.active = view.length - 1;
    this.paint(true);
  }

  paint() {
    const view = this.view;
    const cols = this.columns;
    this.body.style.height = `${view.length * ROW_H}px`;
    this.scroll.setAttribute('aria-rowcount', String(view.length + 1));
    this.empty.hidden = view.length > 0;
    const top = Math.max(0, this.scroll.scrollTop - ROW_H);
    const height = this.scroll.clientHeight || 320;
    const first = Math.max(0, Math.floor(top / ROW_H) - 5);
    const last = Math.min(view.length, Math.ceil((top + height) / ROW_H) + 5);
    const focusKey = document.activeElement && this.body.contains(document.activeElement)
      ? document.activeElement.dataset.focus : null;
    const rows = [];
    for (let i = first; i < last; i++) {
      const r = view[i];
      const key = this.opts.key(r);
      const el = h('div', {
        role: 'row', class: `vt-row${i === this.active ? ' active' : ''}${r.deal ? ' deal' : ''}`,
        'aria-rowindex': i + 2, id: `${this.id}-row-${i}`, 'aria-selected': i === this.active ? 'true' : 'false',
        dataset: { index: i, key },
      });
      if (!r.deal && flash.has(key)) { el.classList.add('flash'); flash.delete(key); }
      if (this.opts.rowClass) { const rc = this.opts.rowClass(r); if (rc) el.classList.add(rc); }
      el.style.top = `${i * ROW_H}px`;
      el.style.gridTemplateColumns = this.template;
      cols.forEach((c, ci) => {
        const cell = h('div', {
          role: 'gridcell', 'aria-colindex': ci + 1, class: c.num ? 'num' : '', dataset: c.max ? { capped: '' } : undefined,
        });
        const content = c.render ? c.render(r) : c.text(r);
        if (content instanceof Node) cell.append(content);
        else {
          const t = content === undefined || content === null ? '' : String(content);
          cell.textContent = t;
          if (t) cell.title = t;
        }
        if (c.cls) { const cc = c.cls(r); if (cc) cell.classList.add(cc); }
        el.append(cell);
      });
      rows.push(el);
    }
    this.body.replaceChildren(...rows);
    this.fit();
    if (focusKey) {
      const again = this.body.querySelector(`[data-focus="${CSS.escape(focusKey)}"]`);
      if (again) again.focus();
    }
    if (this.active >= 0 && this.active < view.length) {
      this.scroll.setAttribute('aria-activedescendant', `${this.id}-row-${this.active}`);
    } else {
      this.scroll.removeAttribute('aria-activedescendant');
    }
  }

  setActive(i, scroll = true) {
    if (!this.view.length) return;
    this.active = Math.max(0, Math.min(this.view.length - 1, i));
    if (scroll) {
      const y = this.active * ROW_H;
      const headH = ROW_H;
      if (y < this.scroll.scrollTop) this.scroll.scrollTop = y;
      else if (y + ROW_H + headH > this.scroll.scrollTop + this.scroll.clientHeight) {
        this.scroll.scrollTop = y + ROW_H + headH - this.scroll.clientHeight;
      }
    }
    this.paint();
  }

  onKey(ev) {
    if (ev.target !== this.scroll) return;
    const page = Math.max(1, Math.floor(this.scroll.clientHeight / ROW_H) - 1);
    const moves = { ArrowDown: 1, ArrowUp: -1, PageDown: page, PageUp: -page };
    if (ev.key in moves) this.setActive((this.active < 0 ? -1 : this.active) + moves[ev.key]);
    else if (ev.key === 'Home') this.setActive(0);
    else if (ev.key === 'End') this.setActive(this.view.length - 1);
    else if ((ev.key === 'Enter' || ev.key === ' ') && this.active >= 0 && this.opts.onEnter) {
      this.opts.onEnter(this.view[this.active]);
    } else return;
    ev.preventDefault();
  }

  // What is on screen (visible columns, current filter and order) as CSV in HedgeTerminal's report
  // layout: `;` after every cell, UTF-8 with a byte-order mark; cells holding `;`, quotes or line
  // breaks are quoted. Spreadsheets run a cell starting with = + - @ (or a tab or CR ahead of one)
  // as a formula, and comments and symbols come from the trading hosts: such text cells get a
  // leading ' so they open as the text they are. A figure in a number column (-12.50) is left
  // as it is, so it stays a number.
  exportCsv() {
    const cols = this.columns.filter((c) => !c.action);
    const cell = (v, num) => {
      let t = v === undefined || v === null ? '' : String(v);
      if (/^[=+\-@\t\r]/.test(t) && !(num && CSV_NUMBER.test(t))) t = `'${t}`;
      return /[;"\r\n]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t;
    };
    const lines = [cols.map((c) => cell(c.name) + ';').join('')];
    for (const r of this.view) lines.push(cols.map((c) => cell(c.text(r), c.num) + ';').join(''));
    const blob = new Blob(['\ufeff' + lines.join('\r\n') + '\r\n'], { type: 'text/csv;charset=utf-8' });
    const a = h('a', { href: URL.createObjectURL(blob), download: `${this.opts.file || this.id}.csv` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    this.root.dataset.exported = String(this.view.length);
    announce(`Exported ${this.view.length} rows`);
  }
}

// ---------------------------------------------------------------------------------------------
// Column configuration dialog

function openColumns(table) {
  const dlg = $('#columns');
  const list = $('#columns-list');
  $('#columns-title').textContent = `Columns: ${table.opts.label}`;
  const draw = (focusSel) => {
    list.replaceChildren(...table.config.map((c, i) => {
      const def = table.defs.find((d) => d.id === c.id);
      const tab = def.tab ? ` (${TAB_NAMES[def.tab]})` : '';
      const cb = h('input', { type: 'checkbox', id: `col-${c.id}`, 'aria-label': `Show ${def.name}${tab}` });
      cb.checked = c.show;
      cb.addEventListener('change', () => { c.show = cb.checked; table.saveConfig(); });
      const name = h('input', { type: 'text', value: c.name, maxlength: '40', 'aria-label': `Name of column ${def.name}` });
      name.addEventListener('change', () => { c.name = name.value.trim() || def.name; table.saveConfig(); });
      const move = (delta) => {
        const j = i + delta;
        if (j < 0 || j >= table.config.length) return;
        const [item] = table.config.splice(i, 1);
        table.config.splice(j, 0, item);
        table.saveConfig();
        draw(`[data-move="${c.id}:${delta}"]`);
      };
      return h('li', null, cb, name, tab ? h('span', { class: 'help', text: TAB_NAMES[def.tab] }) : null,
        h('button', { type: 'button', class: 'small', 'aria-label': `Move ${def.name} up`, text: '↑', dataset: { move: `${c.id}:-1` }, onclick: () => move(-1), disabled: i === 0 }),
        h('button', { type: 'button', class: 'small', 'aria-label': `Move ${def.name} down`, text: '↓', dataset: { move: `${c.id}:1` }, onclick: () => move(1), disabled: i === table.config.length - 1 }));
    }));
    if (focusSel) { const el = list.querySelector(focusSel); if (el && !el.disabled) el.focus(); }
  };
  $('#columns-reset').onclick = () => { table.resetConfig(); draw(); };
  draw();
  dlg.showModal();
}

// ---------------------------------------------------------------------------------------------
// Confirmation and actions

function confirmAction(title, text, { danger = false, label = 'Confirm' } = {}) {
  const dlg = $('#confirm');
  $('#confirm-title').textContent = title;
  $('#confirm-text').textContent = text;
  $('#confirm-reason').value = '';
  const ok = $('#confirm-ok');
  ok.textContent = label;
  ok.className = danger ? 'danger' : 'primary';
  dlg.returnValue = '';
  return new Promise((resolve) => {
    dlg.addEventListener('close', () => {
      resolve(dlg.returnValue === 'ok' ? { reason: $('#confirm-reason').value.trim() } : null);
    }, { once: true });
    dlg.showModal();
    $('#confirm-reason').focus();
  });
}

async function runAction(feature, work, okText) {
  try {
    await work();
    toast(okText, true);
  } catch (e) {
    if (e.status === 404 || e.status === 405) {
      S.unavailable.add(feature);
      markDirty('accounts', 'hedges', 'plan');
      toast('This center does not offer that action (the endpoint is missing).');
    } else if (e.status === 403) {
      toast(`Not allowed with this token: ${e.message}`);
    } else {
      showError(e);
    }
  }
}

async function pauseResume(action, login, symbol) {
  const scope = [login !== undefined ? `account ${login}` : null, symbol ? `symbol ${symbol}` : null]
    .filter(Boolean).join(', ') || 'every account and symbol';
  const verb = action === 'pause' ? 'Pause hedging' : 'Resume hedging';
  const text = action === 'pause'
    ? `New hedges stop for ${scope}; existing hedges are only reduced (close-only).`
    : `Hedging restarts for ${scope}.`;
  const answer = await confirmAction(`${verb}?`, text, { label: verb, danger: action === 'pause' });
  if (!answer) return;
  const body = { action };
  if (login !== undefined) body.login = login;
  if (symbol) body.symbol = symbol;
  body.reason = answer.reason || `${action} from the dashboard`;
  await runAction('actions', async () => {
    const ack = await postAction(body);
    if (ack && Array.isArray(ack.pauses)) { S.pauses = ack.pauses; markDirty('accounts', 'plan'); }
  }, `${verb}: ${scope}`);
}

async function closeHedge(x) {
  const answer = await confirmAction(`Close hedge ${x.id}?`,
    `Closes the remaining ${fmtNum(x.open_volume)} ${x.symbol} ${sideText(x.side)} on hedge account ${x.hedge_login}. ` +
    `${x.symbol} on account ${x.hedge_login} then becomes close-only: no new hedge opens for it until you ` +
    'resume it (Resume in the hedge plan, or on the pause above the accounts).',
    { label: 'Close hedge', danger: true });
  if (!answer) return;
  await runAction('close-hedge', () => hedgeCommand({ action: 'close_hedge', hedge_id: x.id, reason: answer.reason || 'closed from the dashboard' }),
    `Close of hedge ${x.id} requested; ${x.symbol} on account ${x.hedge_login} is now close-only`);
}

// Stores a command unless what is held is newer. The action's answer can arrive after the stream
// already said the hedger finished the command; a command only ever goes from pending to done or
// failed, so a finished one is never replaced by its pending self, even within one millisecond.
function keepCommand(c) {
  const old = S.commands.get(c.id);
  if (old && (old.updated_ms > c.updated_ms || (old.status !== 'pending' && c.status === 'pending'))) return;
  S.commands.set(c.id, c);
}

// Sends a close/retry action; the command it creates is shown on the hedge's row as it changes.
async function hedgeCommand(body) {
  const ack = await postAction(body);
  if (ack && ack.command) { keepCommand(ack.command); markDirty('hedges'); }
  if (ack && Array.isArray(ack.pauses)) { S.pauses = ack.pauses; markDirty('accounts', 'plan'); }
}

async function retryHedge(x) {
  const answer = await confirmAction(`Retry hedge ${x.id}?`,
    `Sends the failed ${sideText(x.side)} ${fmtNum(x.volume)} ${x.symbol} again on hedge account ${x.hedge_login}.`,
    { label: 'Retry' });
  if (!answer) return;
  await runAction('retry-hedge', () => hedgeCommand({ action: 'retry_hedge', hedge_id: x.id, reason: answer.reason || 'retried from the dashboard' }),
    `Retry of hedge ${x.id} requested`);
}

function sameMap(a, b) {
  const norm = (m) => JSON.stringify({
    prefix: (m && m.prefix) || '', suffix: (m && m.suffix) || '',
    explicit: Object.fromEntries(Object.entries((m && m.explicit) || {}).sort()),
  });
  return norm(a) === norm(b);
}

// Edits an account's symbol map and (client accounts) hedge ratio as operator overrides: the
// agent's registration stays as sent, the override wins in the plan and survives re-registration.
function editAccount(a) {
  const dlg = $('#edit-account');
  const client = a.role === 'client';
  const map = effective(a, 'symbol_map') || {};
  $('#edit-title').textContent = client ? `Edit account ${a.login}` : `Edit symbol names of account ${a.login}`;
  $('#edit-ratio').value = fmtNum(effective(a, 'hedge_ratio')) || '1';
  // Only a client's volumes are scaled by a ratio: a hedge account is not offered one.
  $('#edit-ratio').disabled = !client;
  $('#edit-ratio-field').hidden = !client;
  $('#edit-ratio-help').textContent = client ? `Agent's value: ${fmtNum(a.hedge_ratio)}.` : '';
  $('#edit-prefix').value = map.prefix || '';
  $('#edit-suffix').value = map.suffix || '';
  $('#edit-explicit').value = Object.entries(map.explicit || {}).map(([k, v]) => `${k}=${v}`).join('\n');
  $('#edit-map-help').textContent = `Agent's map: ${mapText(a.symbol_map)}.`;
  $('#edit-error').textContent = '';
  dlg.returnValue = '';
  dlg.addEventListener('close', async () => {
    if (dlg.returnValue !== 'save') return;
    const ratio = $('#edit-ratio').value.trim();
    const explicit = {};
    for (const line of $('#edit-explicit').value.split(/[\n,]/).map((l) => l.trim()).filter(Boolean)) {
      const [k, v] = line.split('=').map((t) => (t || '').trim());
      if (!k || !v) { toast(`Not ACCOUNT=CANONICAL: ${line}`); return; }
      explicit[k] = v;
    }
    if (client && (!/^\d+(\.\d+)?$/.test(ratio) || dec(ratio) <= 0n)) { toast('The hedge ratio must be a positive number.'); return; }
    const newMap = { prefix: $('#edit-prefix').value.trim(), suffix: $('#edit-suffix').value.trim(), explicit };
    const actions = [];
    if (client && dec(ratio) !== dec(effective(a, 'hedge_ratio'))) {
      actions.push({ action: 'set_hedge_ratio', login: a.login, hedge_ratio: ratio });
    }
    if (!sameMap(newMap, map)) actions.push({ action: 'set_symbol_map', login: a.login, symbol_map: newMap });
    if (!actions.length) { toast('Nothing changed.'); return; }
    const what = actions.map((x) => (x.action === 'set_hedge_ratio'
      ? `hedge ratio ${fmtNum(effective(a, 'hedge_ratio'))} → ${ratio}`
      : `symbols ${mapText(map)} → ${mapText(newMap)}`)).join('; ');
    const answer = await confirmAction(`Override account ${a.login}?`,
      `${what}. Kept when the agent registers again; clear the override to go back to the agent's value.`, { label: 'Save' });
    if (!answer) return;
    await runAction('edit-account', async () => {
      for (const body of actions) await applyOverride({ ...body, reason: answer.reason || 'edited from the dashboard' });
    }, `Account ${a.login} updated`);
  }, { once: true });
  dlg.showModal();
}

async function applyOverride(body) {
  const ack = await postAction(body);
  if (ack && ack.account && ack.account.login !== undefined) {
    S.accounts.set(ack.account.login, ack.account);
    reindexExposure();
    schedulePlanRefresh();
    markDirty('accounts', 'plan');
  }
}

async function clearOverride(a, field) {
  const name = field === 'hedge_ratio' ? 'hedge ratio' : 'symbol map';
  const answer = await confirmAction(`Clear the ${name} override of account ${a.login}?`,
    `The agent's ${name} (${field === 'hedge_ratio' ? fmtNum(a.hedge_ratio) : mapText(a.symbol_map)}) applies again.`, { label: 'Clear override' });
  if (!answer) return;
  await runAction('edit-account', () => applyOverride({ action: 'clear_override', login: a.login, field, reason: answer.reason || 'cleared from the dashboard' }),
    `The ${name} of account ${a.login} is the agent's again`);
}

function allocationScope(al) {
  const client = al.client_login !== undefined && al.client_login !== null ? `client ${al.client_login}` : 'all clients';
  return `${client}${al.symbol ? ` ${al.symbol}` : ''}`;
}

// The allocations in force, each with its Clear button.
function renderAllocationList() {
  const hedges = [...S.accounts.values()].filter((a) => a.role === 'hedge').length;
  const items = S.allocations.map((al) => h('li', { dataset: { allocationScope: allocationScope(al) } },
    h('span', { text: `${allocationScope(al)}: ${(al.weights || []).map((w) => `account ${w.hedge_login} ${pct(w.weight)}`).join(', ')}` }),
    h('button', { type: 'button', class: 'small', text: 'Clear', 'aria-label': `Clear the allocation of ${allocationScope(al)}`, onclick: () => clearAllocation(al) })));
  if (!items.length) {
    items.push(h('li', { class: 'help', text: hedges === 1
      ? 'None: the only hedge account covers every client.'
      : 'None: a client without a registered hedge account is not hedged.' }));
  }
  $('#alloc-list').replaceChildren(...items);
}

// Views, sets and clears the operator's allocations of client exposure to hedge accounts. The
// weights are sent as typed: the center decides whether they sum to 1, and its refusal is shown
// in the form, which stays open.
function editAllocations() {
  const byLogin = (a, b) => a.login - b.login;
  const accounts = [...S.accounts.values()];
  const clients = accounts.filter((a) => a.role === 'client').sort(byLogin);
  const hedges = accounts.filter((a) => a.role === 'hedge').sort(byLogin);
  $('#alloc-client').replaceChildren(h('option', { value: '', text: 'All clients' }),
    ...clients.map((c) => h('option', { value: String(c.login), text: `Client ${c.login}` })));
  $('#alloc-symbol').value = '';
  $('#alloc-symbols').replaceChildren(...symbolsInPlay().map((sym) => h('option', { value: sym })));
  const legend = $('#alloc-weights legend');
  $('#alloc-weights').replaceChildren(legend, ...hedges.flatMap((a) => [
    h('label', { for: `alloc-w-${a.login}`, text: `Hedge account ${a.login}` }),
    h('input', { id: `alloc-w-${a.login}`, type: 'text', inputmode: 'decimal', autocomplete: 'off', dataset: { hedge: a.login } }),
  ]));
  $('#alloc-reason').value = '';
  $('#alloc-error').textContent = '';
  renderAllocationList();
  $('#edit-allocation').showModal();
}

async function saveAllocation(ev) {
  ev.preventDefault();
  const error = $('#alloc-error');
  error.textContent = '';
  const weights = [];
  for (const input of document.querySelectorAll('#alloc-weights input')) {
    const text = input.value.trim();
    if (!text) continue;
    if (!/^\d+(\.\d+)?$/.test(text)) {
      error.textContent = `Not a weight: ${text} (a fraction such as 0.6)`;
      input.focus();
      return;
    }
    if (dec(text) !== 0n) weights.push({ hedge_login: Number(input.dataset.hedge), weight: text });
  }
  if (!weights.length) { error.textContent = 'Give at least one hedge account a weight.'; return; }
  const body = { action: 'set_allocation', weights, reason: $('#alloc-reason').value.trim() || 'set from the dashboard' };
  const client = $('#alloc-client').value;
  if (client) body.login = Number(client);
  const symbol = $('#alloc-symbol').value.trim();
  if (symbol) body.symbol = symbol;
  const scope = allocationScope({ client_login: body.login, symbol: body.symbol });
  try {
    await postAction(body);
  } catch (e) {
    if (e.status === 404 || e.status === 405) S.unavailable.add('allocations');
    error.textContent = e.status === 404 || e.status === 405
      ? 'This center does not offer allocations (the endpoint is missing).'
      : e.status === 403 ? `Not allowed with this token: ${e.message}` : e.message;
    return;
  }
  await afterAllocationChange();
  toast(`Allocation of ${scope} set: ${weights.map((w) => `account ${w.hedge_login} ${pct(w.weight)}`).join(', ')}`, true);
}

async function clearAllocation(al) {
  const scope = allocationScope(al);
  const answer = await confirmAction(`Clear the allocation of ${scope}?`,
    'The next most specific allocation (or the default) covers this scope again.', { label: 'Clear allocation', danger: true });
  if (!answer) return;
  const body = { action: 'clear_allocation', reason: answer.reason || 'cleared from the dashboard' };
  if (al.client_login !== undefined && al.client_login !== null) body.login = al.client_login;
  if (al.symbol) body.symbol = al.symbol;
  await runAction('allocations', async () => {
    await postAction(body);
    await afterAllocationChange();
  }, `Allocation of ${scope} cleared`);
}

async function afterAllocationChange() {
  await refreshAllocations();
  renderAllocationList();
  schedulePlanRefresh();
  markDirty('accounts', 'plan');
}

// ---------------------------------------------------------------------------------------------
// Rendering

let dirty = new Set();
let frame = 0;
function markDirty(...parts) {
  for (const p of parts) dirty.add(p);
  if (!frame) frame = requestAnimationFrame(render);
}

function render() {
  frame = 0;
  const all = dirty.has('all');
  const d = dirty;
  dirty = new Set();
  if (all || d.has('accounts')) renderAccounts();
  if (all || d.has('positions') || d.has('accounts')) renderPositions();
  // The summary's clients + hedges P/L moves with the hedges' marks.
  else if (d.has('hedges')) renderSummary(positionsTable.rows, positionsTab === 'active');
  if (all || d.has('plan') || d.has('positions') || d.has('hedges') || d.has('accounts')) renderPlan();
  if (all || d.has('hedges') || d.has('accounts')) renderHedges();
  if (all || d.has('exposure') || d.has('positions') || d.has('hedges')) renderExposure();
  if (all || d.has('events')) renderEvents();
}

function renderAccounts() {
  const box = $('#accounts');
  const accounts = [...S.accounts.values()].sort((a, b) =>
    (a.role === b.role ? 0 : a.role === 'hedge' ? -1 : b.role === 'hedge' ? 1 : a.role < b.role ? -1 : 1) || a.login - b.login);
  if (!accounts.length) { box.replaceChildren(h('p', { class: 'help', text: 'No account has registered yet.' })); }
  else box.replaceChildren(...accounts.map(accountCard));
  const pauses = $('#pauses');
  // Every pause can be ended from here, including the close-only one a hedge close leaves behind.
  pauses.replaceChildren(...S.pauses.map((p) => {
    const login = p.login !== undefined && p.login !== null ? p.login : undefined;
    const scope = `${login !== undefined ? `account ${login}` : 'all accounts'}${p.symbol ? `, ${p.symbol}` : ''}`;
    return h('span', { class: 'badge warn', dataset: { pause: `${login ?? '*'}/${p.symbol || '*'}` } },
      `Paused: ${scope} by ${p.actor}${p.reason ? ` (${p.reason})` : ''} since ${fmtTime(p.since_ms)} `,
      h('button', {
        type: 'button', class: 'small', text: 'Resume', 'aria-label': `Resume hedging for ${scope}`,
        dataset: { focus: `resume-pause-${login ?? '*'}-${p.symbol || '*'}` },
        onclick: () => pauseResume('resume', login, p.symbol || undefined),
      }));
  }));
}

function accountCard(a) {
  const st = a.status || null;
  const connected = st ? st.connected : null;
  const openBreakers = st && st.breakers ? Object.entries(st.breakers).filter(([, v]) => v !== 'closed') : [];
  const paused = S.pauses.find((p) => p.login === a.login && !p.symbol);
  const rec = st && st.reconciliation;
  const money = st && st.account;
  const refused = (st && st.pretrade_refusals) || [];
  const o = a.overrides || {};
  const overridden = (field, agentText, overrideText) => (o[field] === undefined || o[field] === null
    ? h('dd', { text: agentText })
    : h('dd', { class: 'override', dataset: { override: field } },
      h('span', { class: 'badge warn', text: 'override' }), ` ${overrideText} `,
      h('span', { class: 'agent-value', text: `(agent: ${agentText})` }), ' ',
      h('button', { type: 'button', class: 'small', text: 'Clear', 'aria-label': `Clear the ${field.replace('_', ' ')} override of account ${a.login}`, onclick: () => clearOverride(a, field) })));
  const card = h('article', { class: 'card', 'aria-label': `Account ${a.login}`, dataset: { login: a.login } },
    h('h3', null, `${a.login}`,
      h('span', { class: 'badge', text: a.role }),
      rec && rec.ok === false ? h('span', {
        class: 'badge bad', text: 'reconciliation mismatch', title: rec.detail || 'ledger and terminal disagree',
        dataset: { reconciliation: 'mismatch' },
      }) : null,
      h('span', { class: `badge ${connected === true ? 'ok' : connected === false ? 'bad' : ''}`, text: connected === true ? 'connected' : connected === false ? 'disconnected' : 'no heartbeat' }),
      paused ? h('span', { class: 'badge warn', text: 'paused' }) : null,
      openBreakers.length ? h('span', { class: 'badge bad', text: `${openBreakers.length} breaker${openBreakers.length > 1 ? 's' : ''} open` }) : null,
      st && st.center_check && st.center_check.ok === false ? h('span', {
        class: 'badge bad', text: 'center ≠ terminal', title: st.center_check.detail,
        dataset: { centerCheck: 'mismatch' },
      }) : null,
      st && st.dead_letters > 0 ? h('span', {
        class: 'badge bad', text: `${st.dead_letters} report${st.dead_letters > 1 ? 's' : ''} refused`,
        title: st.dead_letter_reason || 'the center refused reports of this account', dataset: { deadLetters: st.dead_letters },
      }) : null,
      refused.length ? h('span', {
        class: 'badge bad', text: `${refused.length} hedge${refused.length > 1 ? 's' : ''} refused`,
        title: refused.map((r) => `${r.symbol}: ${r.reason}`).join('\n'), dataset: { pretradeRefusals: refused.length },
      }) : null),
    h('dl', null,
      h('dt', { text: 'Server' }), h('dd', { text: [a.company, a.server].filter(Boolean).join(' · ') || '—' }),
      h('dt', { text: 'Margin mode' }), h('dd', { text: marginMode(a.margin_mode) }),
      h('dt', { text: 'Last heartbeat' }), h('dd', { text: fmtAge(a.last_seen_ms), title: fmtTime(a.last_seen_ms), dataset: { age: a.last_seen_ms } }),
      h('dt', { text: 'Outbox' }), h('dd', { text: st ? `${st.outbox_pending} pending` : '—' }),
      st && st.center_check ? [h('dt', { text: 'Center vs terminal' }), h('dd', {
        class: st.center_check.ok ? '' : 'sell', dataset: { centerCheck: st.center_check.ok ? 'ok' : 'mismatch' },
        text: st.center_check.ok ? `agree (${fmtAge(st.center_check.checked_ms)})` : `differ: ${st.center_check.detail}`,
      })] : null,
      st && st.dead_letters > 0 ? [h('dt', { text: 'Refused reports' }), h('dd', {
        class: 'sell', dataset: { deadLetter: 'reason' },
        text: `${st.dead_letters}, the center does not hold these changes of the account: ${st.dead_letter_reason || 'no reason given'}`,
      })] : null,
      refused.length ? [h('dt', { text: 'Pre-trade' }), h('dd', { class: 'sell', dataset: { pretrade: 'refused' } },
        ...refused.map((r) => h('div', {
          text: `${sideText(r.side)} ${fmtNum(r.volume)} ${r.symbol} not sent: ${r.reason}`,
          title: `since ${fmtTime(r.since_ms)}`,
        })))] : null,
      h('dt', { text: 'Breakers' }), h('dd', { text: !st ? '—' : openBreakers.length ? openBreakers.map(([k, v]) => `${k} ${v.replace('_', '-')}`).join(', ') : 'all closed', class: openBreakers.length ? 'sell' : '' }),
      money ? [
        h('dt', { text: 'Balance' }), h('dd', { class: 'num', dataset: { money: 'balance' }, text: `${fmtNum(money.balance, 2)} ${money.currency || ''}`.trim() }),
        h('dt', { text: 'Equity' }), h('dd', { class: 'num', text: fmtNum(money.equity, 2) }),
        h('dt', { text: 'Margin' }), h('dd', { class: 'num', text: `${fmtNum(money.margin, 2)} (free ${fmtNum(money.margin_free, 2)})` }),
        h('dt', { text: 'Floating P/L' }), h('dd', { class: `num ${(dec(money.profit) || 0n) < 0n ? 'sell' : ''}`, text: fmtNum(money.profit, 2) }),
      ] : null,
      rec ? [h('dt', { text: 'Reconciliation' }), h('dd', {
        class: rec.ok ? '' : 'sell', dataset: { reconciliation: rec.ok ? 'ok' : 'mismatch' },
        text: rec.ok ? `ok (${fmtAge(rec.checked_ms)})` : `mismatch: ${rec.detail || 'ledger and terminal disagree'}`,
      })] : null,
      a.role === 'client' ? [h('dt', { text: 'Hedge ratio' }), overridden('hedge_ratio', fmtNum(a.hedge_ratio), fmtNum(o.hedge_ratio))] : null,
      a.role === 'hedge' ? [h('dt', { text: 'Allocation' }), h('dd', { dataset: { allocation: a.login }, text: allocationText(a.login) })] : null,
      h('dt', { text: 'Symbols' }), overridden('symbol_map', mapText(a.symbol_map), mapText(o.symbol_map)),
      st && st.message ? [h('dt', { text: 'Message' }), h('dd', { text: st.message })] : null),
    h('div', { class: 'actions' },
      paused
        ? h('button', { type: 'button', class: 'small', text: 'Resume', 'aria-label': `Resume hedging for account ${a.login}`, dataset: { focus: `resume-${a.login}` }, onclick: () => pauseResume('resume', a.login) })
        : h('button', { type: 'button', class: 'small', text: 'Pause', 'aria-label': `Pause hedging for account ${a.login}`, dataset: { focus: `pause-${a.login}` }, onclick: () => pauseResume('pause', a.login) }),
      h('button', {
        type: 'button', class: 'small',
        text: S.unavailable.has('edit-account') ? 'Edit (unavailable)' : a.role === 'client' ? 'Edit map & ratio…' : 'Edit symbol map…',
        disabled: S.unavailable.has('edit-account'),
        'aria-label': a.role === 'client' ? `Edit symbol map and hedge ratio of account ${a.login}` : `Edit symbol map of account ${a.login}`,
        onclick: () => editAccount(a),
      })));
  return card;
}

// What share of which client exposure a hedge account covers: each allocation naming it, and
// the default (the only hedge account covers everyone; with several, nobody without an allocation).
function allocationText(login) {
  const hedgeCount = [...S.accounts.values()].filter((a) => a.role === 'hedge').length;
  const parts = S.allocations
    .map((al) => {
      const w = (al.weights || []).find((x) => x.hedge_login === login);
      if (!w) return null;
      const scope = `${al.client_login !== undefined && al.client_login !== null ? `client ${al.client_login}` : 'all clients'}${al.symbol ? ` ${al.symbol}` : ''}`;
      return `${scope}: ${pct(w.weight)}`;
    })
    .filter(Boolean);
  const registered = [...S.accounts.values()].filter((a) => a.role === 'client' && a.hedge_login === login).map((a) => `client ${a.login}: 100% (registered)`);
  const all = [...parts, ...registered];
  if (all.length) return all.join('; ');
  if (hedgeCount === 1 && !S.allocations.length) return 'all clients: 100% (the only hedge account)';
  return 'none';
}

// A weight (exact decimal text or number) as a percentage, without float drift.
function pct(weight) {
  const d = dec(weight);
  if (d === null) return String(weight);
  return `${fmtDec(d * 100n)}%`;
}

function mapText(m) {
  if (!m) return 'canonical names';
  const parts = [];
  if (m.prefix || m.suffix) parts.push(`${m.prefix || ''}*${m.suffix || ''}`);
  const ex = Object.entries(m.explicit || {});
  if (ex.length) parts.push(ex.map(([k, v]) => `${k}=${v}`).join(', '));
  return parts.join('; ') || 'canonical names';
}

// Positions: HedgeTerminal's panel columns, for every client account.
let positionsTab = 'active';
let positionsTable;
let planTable;
let hedgesTable;
let eventsTable;

const NOT_REPORTED = 'not reported by the center';
const MARKED = "from the agent's latest mark of the open position";
const REALIZED = "summed over the position's exit deals as the terminal reported them; \u2014 where a close came without its deal (an older agent, a close found only in a snapshot)";
const TAB_NAMES = { active: 'Active', history: 'History' };
const optMoney = (v) => (v === undefined || v === null ? '—' : fmtNum(v, 2));
const known = (v) => v !== undefined && v !== null;

// A closed position's realized P/L: profit + commission + swap + fee of its exit deals, exactly;
// null while unknown.
function realizedPnl(p) {
  if (!known(p.realized_profit)) return null;
  return (dec(p.realized_profit) || 0n) + (dec(p.realized_commission) || 0n) +
    (dec(p.realized_swap) || 0n) + (dec(p.realized_fee) || 0n);
}

// The currency an account's money is in: its terminal's latest word, else its registration's.
function accountCurrency(login) {
  const a = S.accounts.get(login);
  return (a && a.status && a.status.account && a.status.account.currency) || (a && a.currency) || '';
}

function positionColumns() {
  const pd = (p) => priceDigits(p.login, p.account_symbol, p.symbol);
  const vd = (p) => volumeDigits(p.login, p.account_symbol, p.symbol);
  const dealOr = (f, g) => (r) => (r.deal ? g(r) : f(r));
  return [
    {
      id: 'collapse', name: 'Deals', width: 58, action: true, text: (r) => (r.deal ? '' : S.expanded.has(posKey(r)) ? '−' : '+'),
      render: (r) => (r.deal ? '' : h('button', {
        type: 'button', class: 'expander', text: S.expanded.has(posKey(r)) ? '▾' : '▸',
        'aria-expanded': S.expanded.has(posKey(r)) ? 'true' : 'false',
        'aria-label': `${S.expanded.has(posKey(r)) ? 'Hide' : 'Show'} deals of position ${r.position_id}`,
        dataset: { focus: `exp-${posKey(r)}` }, onclick: () => toggleDeals(r),
      })),
    },
    { id: 'login', name: 'Account', width: 90, text: dealOr((p) => p.login, () => ''), sort: (p) => p.login },
    { id: 'symbol', name: 'Symbol', width: 90, text: dealOr((p) => p.account_symbol && p.account_symbol !== p.symbol ? `${p.symbol} (${p.account_symbol})` : p.symbol, () => ''), sort: (p) => p.symbol },
    { id: 'entry_id', name: 'Entry ID', width: 100, num: true, text: dealOr((p) => p.position_id, (d) => `event ${d.event_id}`), sort: (p) => p.position_id },
    { id: 'entry_date', name: 'Entry Date', width: 160, text: dealOr((p) => fmtTime(p.opened_ms), (d) => fmtTime(d.time_ms)), sort: (p) => p.opened_ms },
    { id: 'type', name: 'Type', width: 80, text: dealOr((p) => sideText(p.side), (d) => `${d.kind.replace('_', ' ')} ${sideText(d.side)}`), cls: (r) => (r.deal ? '' : sideClass(r.side)), sort: (p) => p.side },
    // A closed position shows the volume it had, as the panel's history does.
    { id: 'volume', name: 'Vol.', width: 70, num: true, text: dealOr((p) => fmtNum(p.status === 'closed' ? p.max_volume : p.volume, vd(p)), (d) => fmtNum(d.volume, vd(d.parent))), sort: (p) => Number(p.status === 'closed' ? p.max_volume : p.volume) },
    { id: 'max_volume', name: 'Max vol.', width: 75, num: true, hidden: true, text: dealOr((p) => fmtNum(p.max_volume, vd(p)), () => '') },
    { id: 'entry_price', name: 'Entry Price', width: 90, num: true, text: dealOr((p) => fmtNum(p.price, pd(p)), () => '') },
    { id: 'sl', name: 'S/L', width: 80, num: true, text: dealOr((p) => fmtNum(p.sl, pd(p)), () => '') },
    { id: 'tp', name: 'T/P', width: 80, num: true, text: dealOr((p) => fmtNum(p.tp, pd(p)), () => '') },
    { id: 'price', name: 'Price', tab: 'active', width: 80, num: true, note: MARKED, text: dealOr((p) => (p.price_current === undefined || p.price_current === null ? '—' : fmtNum(p.price_current, pd(p))), () => '') },
    { id: 'commission', name: 'Comm.', tab: 'active', width: 70, num: true, note: MARKED, text: dealOr((p) => optMoney(p.commission), () => '') },
    { id: 'swap', name: 'Swap', tab: 'active', width: 70, num: true, note: MARKED, text: dealOr((p) => optMoney(p.swap), () => '') },
    { id: 'profit', name: 'Profit', tab: 'active', width: 80, num: true, note: MARKED, text: dealOr((p) => optMoney(p.profit), () => ''), cls: (r) => (!r.deal && (dec(r.profit) || 0n) < 0n ? 'sell' : ''), sort: (p) => Number(p.profit || 0) },
    { id: 'exit_price', name: 'Exit Price', tab: 'history', width: 90, num: true, note: "volume-weighted average price of the position's exit deals", text: dealOr((p) => (known(p.exit_price) ? fmtNum(p.exit_price, pd(p)) : '—'), () => '') },
    { id: 'realized_commission', name: 'Comm.', tab: 'history', width: 70, num: true, note: REALIZED, text: dealOr((p) => optMoney(p.realized_commission), () => '') },
    { id: 'realized_swap', name: 'Swap', tab: 'history', width: 70, num: true, note: REALIZED, text: dealOr((p) => optMoney(p.realized_swap), () => '') },
    { id: 'realized_fee', name: 'Fee', tab: 'history', width: 60, num: true, hidden: true, note: REALIZED, text: dealOr((p) => optMoney(p.realized_fee), () => '') },
    { id: 'realized_profit', name: 'Profit', tab: 'history', width: 80, num: true, note: REALIZED, text: dealOr((p) => optMoney(p.realized_profit), () => ''), cls: (r) => (!r.deal && (dec(r.realized_profit) || 0n) < 0n ? 'sell' : ''), sort: (p) => Number(p.realized_profit || 0) },
    {
      id: 'realized_pnl', name: 'P/L', tab: 'history', width: 80, num: true, note: `profit + commission + swap + fee; ${REALIZED}`,
      text: dealOr((p) => { const v = realizedPnl(p); return v === null ? '—' : fmtDec(v, 2); }, () => ''),
      cls: (r) => (!r.deal && (realizedPnl(r) || 0n) < 0n ? 'sell' : ''), sort: (p) => Number(fmtDec(realizedPnl(p) || 0n)),
    },
    { id: 'magic', name: 'Magic', width: 80, num: true, hidden: true, text: dealOr((p) => (p.magic ? p.magic : 'Manual'), () => '') },
    { id: 'status', name: 'Status', width: 110, text: dealOr((p) => p.status.replace('_', ' '), () => ''), sort: (p) => p.status },
    { id: 'exit_date', name: 'Exit Date', width: 160, text: dealOr((p) => (p.status === 'closed' ? fmtTime(p.updated_ms) : ''), () => ''), sort: (p) => p.updated_ms },
    { id: 'entry_comment', name: 'Entry Comment', width: 140, max: 260, text: dealOr((p) => p.comment, () => '') },
    { id: 'exit_comment', name: 'Exit Comment', width: 140, max: 260, text: dealOr((p) => p.exit_comment || '', () => '') },
  ];
}

async function toggleDeals(p) {
  const key = posKey(p);
  if (S.expanded.has(key)) {
    S.expanded.delete(key);
    renderPositions();
    return;
  }
  S.expanded.add(key);
  renderPositions();
  try {
    const detail = await api('GET', `/v1/positions/${p.login}/${p.position_id}`);
    S.deals.set(key, (detail && detail.history) || []);
  } catch (e) {
    S.deals.set(key, []);
    showError(e);
  }
  renderPositions();
}

function expandDeals(view) {
  if (!S.expanded.size) return view;
  const out = [];
  for (const p of view) {
    out.push(p);
    const key = posKey(p);
    if (!S.expanded.has(key)) continue;
    const deals = S.deals.get(key);
    if (!deals) { out.push({ deal: true, loading: true, parent: p, event_id: '…', kind: 'loading', side: '', volume: null, time_ms: 0 }); continue; }
    for (const d of deals) out.push({ ...d, deal: true, parent: p });
  }
  return out;
}

function renderPositions() {
  const active = positionsTab === 'active';
  const rows = [];
  for (const p of S.positions.values()) if ((p.status !== 'closed') === active) rows.push(p);
  rows.sort((a, b) => a.opened_ms - b.opened_ms || a.position_id - b.position_id);
  positionsTable.setRows(rows);
  renderSummary(rows, active);
}

// Summary row, after the panel's: balance, floating P/L, margin from the client accounts' own
// figures (the status `account` block), summed exactly per currency; the listed positions' P/L;
// the clients' and the open hedges' P/L together; lots per symbol (never across symbols, where a
// lot of gold and a lot of EURUSD are different things); the count.
function renderSummary(rows, active) {
  const el = $('#positions-summary');
  const lots = new Map(); // symbol -> {buy, sell}
  let marked = 0n;
  let anyMark = false;
  for (const p of rows) {
    const v = dec(p.volume) || 0n;
    const t = lots.get(p.symbol) || { buy: 0n, sell: 0n };
    if (p.side === 'sell') t.sell += v; else t.buy += v;
    lots.set(p.symbol, t);
    if (p.profit !== undefined && p.profit !== null) {
      anyMark = true;
      marked += (dec(p.profit) || 0n) + (dec(p.swap) || 0n) + (dec(p.commission) || 0n);
    }
  }
  const byCurrency = new Map();
  for (const a of S.accounts.values()) {
    const m = a.role === 'client' && a.status && a.status.account;
    if (!m) continue;
    const c = m.currency || '';
    const t = byCurrency.get(c) || { balance: 0n, profit: 0n, margin: 0n, equity: 0n };
    t.balance += dec(m.balance) || 0n;
    t.profit += dec(m.profit) || 0n;
    t.margin += dec(m.margin) || 0n;
    t.equity += dec(m.equity) || 0n;
    byCurrency.set(c, t);
  }
  const money = (f) => (byCurrency.size
    ? [...byCurrency].map(([c, t]) => `${fmtDec(f(t), 2)}${c ? ` ${c}` : ''}`).join(' + ')
    : '—');
  const note = byCurrency.size ? null : 'no client agent has reported its account yet';
  const item = (label, value, key, title) => h('span', { title: title || undefined, dataset: { sum: key } }, h('b', { text: `${label}: ` }), value);
  const parts = [];
  parts.push(item('Balance', money((t) => t.balance), 'balance', note));
  if (active) {
    parts.push(item('Accounts\u2019 floating P/L', money((t) => t.profit), 'floating',
      note || 'the client accounts\u2019 floating profit as their terminals report it'));
    parts.push(item('Margin', money((t) => t.margin), 'margin', note));
    parts.push(item('Positions P/L (incl. swap & commission)', anyMark ? fmtDec(marked, 2) : '—', 'total',
      anyMark ? 'profit + swap + commission of the listed positions, from their latest marks' : NOT_REPORTED));
    const hedges = openHedgesPnl();
    parts.push(item('Clients + hedges P/L', anyMark && hedges.marked ? fmtDec(marked + hedges.pnl, 2) : '—', 'combined',
      'what the book makes: the listed client positions\u2019 P/L plus the open hedges\u2019 P/L' +
      (hedges.unmarked ? ` (${hedges.unmarked} open hedge(s) not marked yet)` : '')));
  } else {
    parts.push(item('Equity', money((t) => t.equity), 'equity', note));
    parts.push(...realizedTotals(rows, item));
  }
  parts.push(item('Positions', String(rows.length), 'count'));
  const symbols = [...lots].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  if (symbols.length) {
    parts.push(h('span', { class: 'lots', dataset: { sum: 'lots' } }, h('b', { text: 'Lots, net per symbol: ' }),
      ...symbols.map(([sym, t]) => h('span', {
        class: 'lot', dataset: { symbol: sym }, title: `${sym}: buy ${fmtDec(t.buy)}, sell ${fmtDec(t.sell)}`,
      }, `${sym} ${fmtDec(t.buy - t.sell)}`))));
  }
  el.replaceChildren(...parts);
}

// History's totals of the listed positions' realized figures, exact, per account currency (money
// in different currencies is never added); positions whose figures are unknown are counted apart.
function realizedTotals(rows, item) {
  const byCurrency = new Map();
  let unknown = 0;
  for (const p of rows) {
    const pnl = realizedPnl(p);
    if (pnl === null) { unknown += 1; continue; }
    const c = accountCurrency(p.login);
    const t = byCurrency.get(c) || { pnl: 0n, profit: 0n, commission: 0n, swap: 0n, fee: 0n };
    t.pnl += pnl;
    t.profit += dec(p.realized_profit) || 0n;
    t.commission += dec(p.realized_commission) || 0n;
    t.swap += dec(p.realized_swap) || 0n;
    t.fee += dec(p.realized_fee) || 0n;
    byCurrency.set(c, t);
  }
  const currencies = [...byCurrency].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const money = (f) => (currencies.length
    ? currencies.map(([c, t]) => `${fmtDec(f(t), 2)}${c ? ` ${c}` : ''}`).join(', ')
    : '—');
  const apart = unknown ? `; ${unknown} position(s) whose figures are unknown are not in it` : '';
  const parts = [
    item('Realized P/L', money((t) => t.pnl), 'realized', `profit + commission + swap + fee of the listed positions' exit deals, per account currency${apart}`),
    item('Profit', money((t) => t.profit), 'realized-profit', `per account currency${apart}`),
    item('Commission', money((t) => t.commission), 'realized-commission', `per account currency${apart}`),
    item('Swap', money((t) => t.swap), 'realized-swap', `per account currency${apart}`),
  ];
  if (currencies.some(([, t]) => t.fee !== 0n)) parts.push(item('Fee', money((t) => t.fee), 'realized-fee', `per account currency${apart}`));
  if (unknown) parts.push(item('Unknown figures', String(unknown), 'realized-unknown', 'closed positions with a close reported without its deal: their figures are not in the totals'));
  return parts;
}

// The open hedges' P/L over every hedge account, and how many are not marked yet.
function openHedgesPnl() {
  const out = { pnl: 0n, marked: 0, unmarked: 0 };
  for (const x of S.hedges.values()) {
    if (!hedgeIsOpen(x)) continue;
    const v = hedgePnl(x);
    if (v === null) out.unmarked += 1; else { out.pnl += v; out.marked += 1; }
  }
  return out;
}

function planColumns() {
  return [
    { id: 'hedge_login', name: 'Hedge acct', width: 95, hidden: true, text: (r) => r.hedge_login ?? '' },
    { id: 'symbol', name: 'Symbol', width: 90, text: (r) => r.symbol, sort: (r) => r.symbol },
    {
      id: 'act', name: 'Actions', width: 90, action: true, text: () => '',
      render: (r) => {
        // A pause of the symbol everywhere, or on this row's hedge account (a hedge close leaves one).
        const paused = S.pauses.find((p) => p.symbol === r.symbol &&
          (p.login === undefined || p.login === null || r.hedge_login === '' || p.login === r.hedge_login));
        const login = paused && paused.login !== undefined && paused.login !== null ? paused.login : undefined;
        const label = `Resume hedging ${r.symbol}${login !== undefined ? ` on account ${login}` : ''}`;
        return paused
          ? h('button', { type: 'button', class: 'small', text: 'Resume', 'aria-label': label, dataset: { focus: `res-${r.symbol}-${r.hedge_login}` }, onclick: () => pauseResume('resume', login, r.symbol) })
          : h('button', { type: 'button', class: 'small', text: 'Pause', 'aria-label': `Pause hedging ${r.symbol}`, dataset: { focus: `pau-${r.symbol}-${r.hedge_login}` }, onclick: () => pauseResume('pause', undefined, r.symbol) });
      },
    },
    { id: 'client', name: 'Client', width: 75, hidden: true, text: (r) => r.client_login ?? '' },
    { id: 'client_lots', name: 'Client lots', width: 85, num: true, text: (r) => fmtNum(r.client_lots) },
    { id: 'base_quantity', name: 'Base qty', width: 85, num: true, text: (r) => (r.base_quantity === undefined || r.base_quantity === null ? '—' : fmtNum(r.base_quantity)) },
    { id: 'exposure', name: 'Exposure', width: 85, num: true, text: (r) => fmtNum(r.exposure) },
    { id: 'ratio', name: 'Ratio', width: 65, num: true, text: (r) => r.ratios.join(', ') },
    { id: 'hedged', name: 'Hedged', width: 80, num: true, text: (r) => fmtNum(r.hedged) },
    { id: 'unhedged', name: 'Unhedged', width: 85, num: true, text: (r) => fmtNum(r.unhedged) },
    {
      id: 'order', name: 'Covering order', width: 150,
      text: (r) => (r.item ? `${sideText(r.item.side)} ${fmtNum(r.item.volume)} (${r.item.action})${r.refused ? ` — ${r.refused.reason}` : ''}` : r.state),
      cls: (r) => (r.refused ? 'sell' : r.item ? sideClass(r.item.side) : ''),
    },
    { id: 'residual', name: 'Residual', width: 80, num: true, text: (r) => fmtNum(r.residual) },
    { id: 'hedge_lots', name: 'Hedge lots', width: 85, num: true, text: (r) => (r.hedge_lots === undefined ? '' : fmtNum(r.hedge_lots)) },
    { id: 'account_symbol', name: 'Acct symbol', width: 95, hidden: true, text: (r) => r.account_symbol || '' },
    { id: 'item', name: 'Item id', width: 90, num: true, hidden: true, text: (r) => (r.item ? r.item.id : '') },
  ];
}

const RESIDUAL_TEXT = {
  below_min: 'below min volume', paused: 'paused', no_symbol_spec: 'no symbol spec', bad_symbol_spec: 'bad symbol spec',
  no_allocation: 'no allocation', hedge_account_unknown: 'hedge account unknown',
  contract_size_missing: 'contract size missing', ambiguous_symbol: 'ambiguous symbol',
  allocation_rounding: 'rounded across hedge accounts', pretrade_refused: 'refused by pre-trade check',
};

// Why a residual is not hedged, in words: whose exposure it is and, for an ambiguous name, which
// of the account's symbols it could be.
function residualText(r) {
  let text = RESIDUAL_TEXT[r.reason] || r.reason;
  if (r.reason === 'ambiguous_symbol' && r.candidates && r.candidates.length) text += `: candidates ${r.candidates.join(', ')}`;
  if (r.client_login !== undefined && r.client_login !== null) text = `client ${r.client_login}: ${text}`;
  return text;
}

function renderPlan() {
  const rows = [];
  const seen = new Set();
  for (const [login, plan] of S.plans) {
    for (const item of plan.items || []) {
      seen.add(item.symbol);
      rows.push({ key: `i${login}:${item.symbol}:${item.id}`, hedge_login: login, symbol: item.symbol, account_symbol: item.account_symbol, client_lots: item.client_lots, base_quantity: item.base_quantity, exposure: item.exposure, hedged: item.hedged, unhedged: item.unhedged, residual: item.residual, hedge_lots: item.hedge_lots, item, ratios: exposureOf(item.symbol).ratios });
    }
    // What the hedge account's pre-trade checks did not send of an order: shown on the order's
    // row, with the reason, as the plan says it (the order stays, the hedger checks it again).
    const refused = new Map();
    for (const r of plan.residuals || []) {
      if (r.reason === 'pretrade_refused') refused.set(r.symbol, { reason: r.detail || residualText(r), unhedged: r.unhedged });
    }
    for (const row of rows) if (row.item && row.hedge_login === login && refused.has(row.symbol)) row.refused = refused.get(row.symbol);
    for (const r of plan.residuals || []) {
      if (r.reason === 'pretrade_refused') continue;
      seen.add(r.symbol);
      rows.push({ key: `r${login}:${r.symbol}`, hedge_login: login, symbol: r.symbol, account_symbol: r.account_symbol, client_lots: r.client_lots, base_quantity: r.base_quantity, exposure: r.exposure, hedged: r.hedged, unhedged: r.unhedged, residual: r.unhedged, hedge_lots: r.hedge_lots, state: residualText(r), ratios: exposureOf(r.symbol).ratios });
    }
  }
  // Client exposure no plan counts: the same list is in every hedge account's plan, shown once.
  const first = S.plans.values().next();
  for (const r of first.done ? [] : first.value.client_residuals || []) {
    seen.add(r.symbol);
    rows.push({ key: `u${r.client_login}:${r.symbol}:${r.reason}`, hedge_login: '', client_login: r.client_login, symbol: r.symbol, account_symbol: r.account_symbol, client_lots: r.client_lots, base_quantity: r.base_quantity, exposure: r.exposure, hedged: r.hedged, unhedged: r.unhedged, residual: r.unhedged, state: residualText(r), ratios: exposureOf(r.symbol).ratios });
  }
  for (const sym of symbolsInPlay()) {
    if (seen.has(sym)) continue;
    const x = exposureOf(sym);
    if (x.exposure === 0n && x.hedged === 0n) continue;
    rows.push({ key: `c${sym}`, hedge_login: '', symbol: sym, exposure: fmtDec(x.exposure), hedged: fmtDec(x.hedged), unhedged: fmtDec(x.exposure + x.hedged), residual: fmtDec(x.exposure + x.hedged), state: 'covered', ratios: x.ratios });
  }
  for (const r of rows) {
    if (pausedFor(r.hedge_login === '' ? undefined : r.hedge_login, r.symbol) && r.state !== 'paused') r.state = r.item ? r.state : `${r.state} (paused)`;
  }
  rows.sort((a, b) => (a.symbol < b.symbol ? -1 : a.symbol > b.symbol ? 1 : 0));
  planTable.setRows(rows);
  $('#plan-note').textContent = S.planForbidden
    ? 'This token may not read the hedge plan (admin or hedge tokens may); exposure is computed from the positions and hedges.'
    : '';
}

function hedgeColumns() {
  return [
    { id: 'id', name: 'Hedge', width: 70, num: true, text: (x) => x.id, sort: (x) => x.id },
    { id: 'symbol', name: 'Symbol', width: 85, text: (x) => x.symbol, sort: (x) => x.symbol },
    { id: 'side', name: 'Side', width: 60, text: (x) => sideText(x.side), cls: (x) => sideClass(x.side) },
    { id: 'volume', name: 'Volume', width: 75, num: true, text: (x) => fmtNum(x.volume) },
    { id: 'open_volume', name: 'Open', width: 70, num: true, text: (x) => fmtNum(x.open_volume) },
    { id: 'status', name: 'Status', width: 130, text: (x) => x.status.replace('_', ' '), cls: (x) => `status-${x.status === 'partially_closed' ? 'open' : x.status}`, sort: (x) => x.status },
    {
      id: 'act', name: 'Actions', width: 100, action: true, text: () => '',
      render: (x) => {
        const cmd = commandOf(x.id);
        if (cmd && cmd.status === 'pending') {
          return h('button', { type: 'button', class: 'small', text: cmd.kind === 'close_hedge' ? 'Closing…' : 'Retrying…', disabled: true, 'aria-label': `Command ${cmd.id} for hedge ${x.id} is pending`, dataset: { focus: `pending-${x.id}` } });
        }
        if (hedgeIsOpen(x)) {
          const off = S.unavailable.has('close-hedge');
          return h('button', { type: 'button', class: 'small', text: off ? 'Close n/a' : 'Close', disabled: off, title: off ? 'The center has no close endpoint' : undefined, 'aria-label': `Close hedge ${x.id}`, dataset: { focus: `close-${x.id}` }, onclick: () => closeHedge(x) });
        }
        if (x.status === 'failed') {
          const off = S.unavailable.has('retry-hedge');
          return h('button', { type: 'button', class: 'small', text: off ? 'Retry n/a' : 'Retry', disabled: off, title: off ? 'The center has no retry endpoint' : undefined, 'aria-label': `Retry hedge ${x.id}`, dataset: { focus: `retry-${x.id}` }, onclick: () => retryHedge(x) });
        }
        return '';
      },
    },
    {
      id: 'command', name: 'Command', width: 170, note: 'the latest operator command about this hedge',
      text: (x) => {
        const c = commandOf(x.id);
        if (!c) return '';
        // The row is the hedge's; "#N" would read as a hedge id, so the command's id comes last and named.
        const what = { close_hedge: 'close', retry_hedge: 'retry' }[c.kind] || c.kind.replace('_', ' ');
        return `${what} ${c.status}${c.result_retcode ? ` (${c.result_retcode})` : ''}${c.result_message ? ` ${c.result_message}` : ''} · command ${c.id}`;
      },
      cls: (x) => { const c = commandOf(x.id); return c ? `command-${c.status}` : ''; },
    },
    {
      id: 'pnl', name: 'P/L', width: 80, num: true, note: "profit + swap + commission, from the hedge account's latest mark of the hedge's position",
      text: (x) => { const v = hedgePnl(x); return v === null ? (hedgeIsOpen(x) ? '—' : '') : fmtDec(v, 2); },
      cls: (x) => ((hedgePnl(x) || 0n) < 0n ? 'sell' : ''),
      sort: (x) => Number(fmtDec(hedgePnl(x) || 0n)),
    },
    { id: 'latency', name: 'Latency', width: 85, num: true, text: (x) => (x.latency_us === undefined || x.latency_us === null ? '' : `${(x.latency_us / 1000).toFixed(3)} ms`), sort: (x) => x.latency_us || 0 },
    { id: 'slippage', name: 'Slippage', width: 80, num: true, text: (x) => fmtNum(x.slippage) },
    { id: 'retcode', name: 'Retcode', width: 75, num: true, text: (x) => (x.retcode === undefined || x.retcode === null ? '' : x.retcode) },
    { id: 'message', name: 'Message', width: 160, max: 320, text: (x) => x.message || '' },
    { id: 'price', name: 'Price', width: 85, num: true, text: (x) => fmtNum(x.price, priceDigits(x.hedge_login, x.account_symbol, x.symbol)) },
    { id: 'hedge_login', name: 'Account', width: 85, text: (x) => x.hedge_login },
    { id: 'created', name: 'Time', width: 150, text: (x) => fmtTime(x.created_ms), sort: (x) => x.created_ms },
    { id: 'plan_item_id', name: 'Plan item', width: 90, num: true, hidden: true, text: (x) => x.plan_item_id },
    { id: 'position_id', name: 'Position', width: 90, num: true, hidden: true, text: (x) => x.position_id || '' },
  ];
}

function renderHedges() {
  const rows = [...S.hedges.values()].sort((a, b) => b.id - a.id);
  hedgesTable.setRows(rows);
  renderHedgesSummary();
}

// Per hedge account: the P/L of its open hedges summed exactly, in the account's currency, and how
// many open hedges its agent has not marked yet.
function renderHedgesSummary() {
  const el = $('#hedges-summary');
  const byAccount = new Map();
  for (const x of S.hedges.values()) {
    if (!hedgeIsOpen(x)) continue;
    const t = byAccount.get(x.hedge_login) || { pnl: 0n, marked: 0, unmarked: 0 };
    const v = hedgePnl(x);
    if (v === null) t.unmarked += 1; else { t.pnl += v; t.marked += 1; }
    byAccount.set(x.hedge_login, t);
  }
  const parts = [];
  for (const [login, t] of [...byAccount].sort((a, b) => a[0] - b[0])) {
    const a = S.accounts.get(login);
    const currency = (a && a.status && a.status.account && a.status.account.currency) || '';
    const value = t.marked ? `${fmtDec(t.pnl, 2)}${currency ? ` ${currency}` : ''}` : '—';
    const title = t.unmarked ? `${t.unmarked} open hedge(s) not marked by the hedger yet` : 'profit + swap + commission of the open hedges';
    parts.push(h('span', { title, dataset: { sum: `hedge-pnl-${login}` } }, h('b', { text: `Hedge P/L ${login}: ` }), value));
  }
  el.replaceChildren(...parts);
}

function eventColumns() {
  return [
    { id: 'id', name: 'Event', width: 75, num: true, text: (e) => e.id },
    { id: 'time', name: 'Time', width: 150, text: (e) => fmtTime(e.time_ms) },
    { id: 'kind', name: 'Kind', width: 140, text: (e) => e.kind.replace(/_/g, ' ') },
    { id: 'login', name: 'Account', width: 85, text: (e) => e.login ?? '' },
    { id: 'symbol', name: 'Symbol', width: 80, text: (e) => e.symbol || '' },
    { id: 'actor', name: 'Who', width: 100, text: (e) => e.actor },
    { id: 'reason', name: 'Reason', width: 360, max: 520, text: (e) => e.reason },
  ];
}

function renderEvents() {
  const kind = $('#events-kind').value;
  const kinds = new Set(S.events.map((e) => e.kind));
  const sel = $('#events-kind');
  for (const k of kinds) {
    if (![...sel.options].some((o) => o.value === k)) sel.append(h('option', { value: k, text: k.replace(/_/g, ' ') }));
  }
  const rows = [];
  // Agents send their money and marks with every heartbeat; by default those status events stay out
  // of the way of the decisions and actions.
  const keep = kind === '*' ? () => true : kind ? (e) => e.kind === kind : (e) => e.kind !== 'account_status';
  for (let i = S.events.length - 1; i >= 0; i--) if (keep(S.events[i])) rows.push(S.events[i]);
  eventsTable.setRows(rows);
}

// Exposure per symbol over time, as an inline SVG step chart.
function renderExposure() {
  const sel = $('#exposure-symbol');
  const symbols = [...S.exposure.keys()].sort();
  const current = sel.value;
  if (sel.options.length !== symbols.length || [...sel.options].some((o, i) => o.value !== symbols[i])) {
    sel.replaceChildren(...symbols.map((x) => h('option', { value: x, text: x })));
    if (symbols.includes(current)) sel.value = current;
  }
  const box = $('#exposure-chart');
  const sym = sel.value;
  const list = S.exposure.get(sym) || [];
  if (!list.length) { box.replaceChildren(h('p', { class: 'help', text: 'No exposure yet.' })); return; }
  const W = 640;
  const H = 260;
  const L = 56;
  const R = 12;
  const T = 12;
  const B = 28;
  const now = Date.now();
  const pts = [...list, { ...list[list.length - 1], t: Math.max(now, list[list.length - 1].t) }];
  // At least the last minute, so the axis's times are seconds apart from the start.
  const t0 = Math.min(pts[0].t, now - 60000);
  const t1 = Math.max(pts[pts.length - 1].t, t0 + 1000);
  const cover = (p) => -p.hedged;
  // What the hedge does not cover: clients' exposure plus the (opposite) hedge. The two lines above
  // lie on each other when all is hedged; this one says by how much they differ.
  const unhedged = (p) => p.exposure + p.hedged;
  let lo = 0n;
  let hi = 0n;
  for (const p of pts) {
    for (const v of [p.exposure, cover(p), unhedged(p)]) { if (v < lo) lo = v; if (v > hi) hi = v; }
  }
  if (lo === hi) hi = lo + DEC_SCALE;
  const span = Number(hi - lo);
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - Number(v - lo) / span) * (H - T - B);
  const step = (f) => pts.map((p, i) => `${i ? `H${x(p.t).toFixed(1)}V` : `M${x(p.t).toFixed(1)},`}${y(f(p)).toFixed(1)}`).join(' ');
  const last = list[list.length - 1];
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': 'chart-title chart-desc', preserveAspectRatio: 'none' },
    s('title', { id: 'chart-title', text: `${sym} exposure over time` }),
    s('desc', { id: 'chart-desc', text: `Client exposure now ${fmtDec(last.exposure)} lots, hedge ${fmtDec(last.hedged)} lots, unhedged ${fmtDec(unhedged(last))} lots, ${list.length} changes since ${fmtTime(t0)}.` }),
    s('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }),
    s('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }),
    s('line', { class: 'zero', x1: L, y1: y(0n), x2: W - R, y2: y(0n) }),
    s('text', { x: L - 6, y: y(hi) + 4, 'text-anchor': 'end', text: fmtDec(hi) }),
    s('text', { x: L - 6, y: y(lo) + 4, 'text-anchor': 'end', text: fmtDec(lo) }),
    s('text', { x: L - 6, y: y(0n) + 4, 'text-anchor': 'end', text: '0' }),
    // The drawing is squeezed to the box's width: fewer labels where five would overlap.
    timeTicks(t0, t1, x, H - B, box.clientWidth && box.clientWidth < 520 ? 3 : 5),
    s('path', { class: 'exposure', d: step((p) => p.exposure) }),
    s('path', { class: 'hedged', d: step(cover) }),
    s('path', { class: 'unhedged', d: step(unhedged) }));
  box.replaceChildren(svg, h('div', { class: 'legend' },
    h('span', null, h('span', { class: 'sw exposure' }), `client exposure (${fmtDec(last.exposure)})`),
    h('span', null, h('span', { class: 'sw hedged' }), `hedge, opposite sign (${fmtDec(-last.hedged)})`),
    h('span', { dataset: { unhedged: fmtDec(unhedged(last)) } }, h('span', { class: 'sw unhedged' }),
      `unhedged: the difference (${fmtDec(unhedged(last))})`)));
}

// `n` labelled times along the axis at `yAxis` (the date too when the span crosses midnight), in
// UTC like every time on the page.
function timeTicks(t0, t1, x, yAxis, n) {
  const sameDay = fmtTime(t0).slice(0, 10) === fmtTime(t1).slice(0, 10);
  const group = s('g', { class: 'ticks' });
  for (let i = 0; i < n; i++) {
    const t = t0 + ((t1 - t0) * i) / (n - 1);
    const text = (sameDay ? fmtTime(t).slice(11) : fmtTime(t).slice(5)) + (i === n - 1 ? ' UTC' : '');
    const anchor = i === 0 ? 'start' : i === n - 1 ? 'end' : 'middle';
    group.append(
      s('line', { class: 'tick', x1: x(t), y1: yAxis, x2: x(t), y2: yAxis + 4 }),
      s('text', { x: x(t), y: yAxis + 18, 'text-anchor': anchor, text }));
  }
  return group;
}

// ---------------------------------------------------------------------------------------------
// Status line, announcements, errors

function setConn(text, cls) {
  const el = $('#conn-state');
  el.textContent = text;
  el.className = `pill ${cls || ''}`;
  el.dataset.state = cls || '';
}

let announceTimer = null;
function announce(text) {
  clearTimeout(announceTimer);
  announceTimer = setTimeout(() => { $('#announce').textContent = text; }, 100);
}

let toastTimer = null;
function toast(text, ok = false) {
  const el = $('#toast');
  el.textContent = text;
  el.className = `toast${ok ? ' ok' : ''}`;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, 5000);
}

function showError(e) {
  console.warn(e);
  toast(e && e.message ? e.message : String(e));
}

// ---------------------------------------------------------------------------------------------
// Session

async function signIn(token) {
  S.token = token;
  S.session += 1;
  const session = S.session;
  setConn('connecting…', 'warn');
  await loadEventLog();
  await loadSnapshot();
  sessionStorage.setItem(TOKEN_KEY, token);
  $('#login-section').hidden = true;
  $('#app').hidden = false;
  $('#nav').hidden = false;
  $('#logout').hidden = false;
  markDirty('all');
  follow(session);
}

function signOut(message) {
  S.session += 1;
  if (S.streamAbort) S.streamAbort.abort();
  S.token = '';
  sessionStorage.removeItem(TOKEN_KEY);
  $('#app').hidden = true;
  $('#nav').hidden = true;
  $('#logout').hidden = true;
  $('#login-section').hidden = false;
  $('#login-error').textContent = message || '';
  setConn('signed out', '');
  $('#token').focus();
}

function setTab(tab) {
  positionsTab = tab;
  for (const [id, name] of [['tab-active', 'active'], ['tab-history', 'history']]) {
    const b = $(`#${id}`);
    b.setAttribute('aria-selected', String(name === tab));
    b.tabIndex = name === tab ? 0 : -1;
  }
  $('#positions-table').setAttribute('aria-labelledby', tab === 'active' ? 'tab-active' : 'tab-history');
  positionsTable.active = -1;
  positionsTable.renderHead();
  renderPositions();
}

function init() {
  positionsTable = new VTable($('#positions-table'), {
    id: 'positions', label: 'Client positions', columns: positionColumns(), tall: true, file: 'positions',
    shows: (c) => !c.tab || c.tab === positionsTab,
    key: (r) => (r.deal ? `d${posKey(r.parent)}:${r.event_id}` : posKey(r)),
    expand: expandDeals, onEnter: (r) => { if (!r.deal) toggleDeals(r); },
    empty: 'No positions.',
  });
  planTable = new VTable($('#plan-table'), {
    id: 'plan', label: 'Hedge plan', columns: planColumns(), key: (r) => r.key, file: 'plan',
    empty: 'Nothing to hedge: no client exposure.',
  });
  hedgesTable = new VTable($('#hedges-table'), {
    id: 'hedges', label: 'Hedges', columns: hedgeColumns(), key: (x) => `h${x.id}`, file: 'hedges',
    empty: 'No hedge yet.',
  });
  eventsTable = new VTable($('#events-table'), {
    id: 'events', label: 'Event log', columns: eventColumns(), key: (e) => `e${e.id}`, file: 'events',
    empty: 'No events.',
  });
  $('#events-kind').addEventListener('change', () => renderEvents());
  $('#exposure-symbol').addEventListener('change', () => renderExposure());
  $('#tab-active').addEventListener('click', () => setTab('active'));
  $('#tab-history').addEventListener('click', () => setTab('history'));
  for (const id of ['tab-active', 'tab-history']) {
    $(`#${id}`).addEventListener('keydown', (ev) => {
      if (ev.key === 'ArrowRight' || ev.key === 'ArrowLeft') {
        const next = positionsTab === 'active' ? 'history' : 'active';
        setTab(next);
        $(`#tab-${next}`).focus();
        ev.preventDefault();
      }
    });
  }
  $('[data-pause-all]').addEventListener('click', () => pauseResume('pause'));
  $('[data-resume-all]').addEventListener('click', () => pauseResume('resume'));
  $('[data-edit-allocation]').addEventListener('click', editAllocations);
  $('#alloc-form').addEventListener('submit', (ev) => { saveAllocation(ev).catch(showError); });
  $('#alloc-close').addEventListener('click', () => $('#edit-allocation').close());
  $('#logout').addEventListener('click', () => signOut(''));
  $('#login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const token = $('#token').value.trim();
    if (!token) return;
    $('#login-error').textContent = '';
    try {
      await signIn(token);
      $('#token').value = '';
    } catch (e) {
      if (S.token) signOut(e.status ? `Sign-in failed: ${e.message}` : `The center did not answer: ${e.message}`);
    }
  });
  // Heartbeat ages and the chart's time axis move even when nothing happens.
  let ticks = 0;
  setInterval(() => {
    if ($('#app').hidden) return;
    ticks += 1;
    // Heartbeats that change nothing are not events; the accounts are re-read for their times.
    if (ticks % 5 === 0 && S.token) {
      api('GET', '/v1/accounts').then((list) => {
        for (const a of list || []) S.accounts.set(a.login, a);
        markDirty('accounts');
      }).catch(() => {});
    }
    for (const dd of document.querySelectorAll('[data-age]')) dd.textContent = fmtAge(Number(dd.dataset.age));
    renderExposure();
  }, 1000);
  if (S.token) {
    signIn(S.token).catch((e) => signOut(e.status ? '' : `The center did not answer: ${e.message}`));
  } else {
    $('#token').focus();
  }
}

document.addEventListener('DOMContentLoaded', init);
