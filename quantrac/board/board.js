// quantrac operator board: plain ES module, no build step, no third-party code, no network
// beyond this server. Every user-facing text comes from the translation table
// (GET /api/v1/i18n?lang=vi|en, config/messages/*.yaml) through t().

const API = '/api/v1';
// Station clocks and the board: UTC+07:00 (Asia/Ho_Chi_Minh, no daylight saving).
const TZ_OFFSET_MS = 7 * 3600 * 1000;

// Mirrors quantrac/alerts/model.py (tests/test_unit_board_i18n.py keeps them equal).
export const KINDS = [
  'exceedance', 'warning', 'data_loss', 'device_fault',
  'calibration', 'stuck_value', 'out_of_range', 'clock_drift',
];
export const SEVERITIES = ['critical', 'major', 'minor', 'info'];
export const STATES = ['open', 'acknowledged', 'resolved'];
export const STATION_STATUSES = ['online', 'late', 'data_loss', 'offline'];
// A station's worst open alert, worst first (quantrac/api/routes.py: TROUBLE_TIERS).
export const TROUBLE_TIERS = ['exceedance', 'fault', 'data_loss', 'warning'];
export const ROLES = ['operator', 'inspector', 'admin', 'facility'];
export const AQI_COLOURS = {
  good: '#00E400', moderate: '#FFFF00', poor: '#FF7E00',
  bad: '#FF0000', very_bad: '#8F3F97', hazardous: '#7E0023',
};
const STATUS_COLOURS = { online: '#2e7d32', late: '#f9a825', data_loss: '#6d4c41', offline: '#757575' };
const TROUBLE_COLOURS = { exceedance: '#c62828', fault: '#6a1b9a', data_loss: '#6d4c41', warning: '#f9a825' };
const EXPORTING_ROLES = new Set(['inspector', 'admin', 'facility']);
const ACTING_ROLES = new Set(['operator', 'admin']);

// Evidence in an alert's details: key → translation key, and how to show the value.
const DETAIL_FIELDS = [
  ['value', 'alert.detail.value', 'number'],
  ['limit', 'alert.detail.limit', 'number'],
  ['limit_min', 'board.detail.limit_min', 'number'],
  ['unit', 'alert.detail.unit', 'text'],
  ['multiple', 'alert.detail.multiple', 'multiple'],
  ['excess', 'board.detail.excess', 'number'],
  ['band', 'alert.detail.band', 'text'],
  ['averaging', 'alert.detail.averaging', 'averaging'],
  ['window_start', 'alert.detail.window_start', 'time'],
  ['window_end', 'alert.detail.window_end', 'time'],
  ['regulation', 'alert.detail.regulation', 'text'],
  ['column', 'alert.detail.column', 'text'],
  ['formula', 'board.detail.formula', 'code'],
  ['limit_source', 'board.detail.limit_source', 'source'],
  ['unverified', 'board.detail.unverified', 'unverified'],
  ['completeness', 'alert.detail.completeness', 'percent'],
  ['maximum', 'alert.detail.maximum', 'number'],
  ['minimum', 'board.detail.minimum', 'number'],
  ['last_measured_at', 'board.detail.last_measured_at', 'time'],
  ['silent_minutes', 'board.detail.silent_minutes', 'number'],
  ['threshold_minutes', 'board.detail.threshold_minutes', 'number'],
  ['ahead_seconds', 'board.detail.ahead_seconds', 'number'],
  ['received_at', 'board.detail.received_at', 'time'],
  ['status', 'board.detail.status', 'status'],
  ['since', 'board.detail.since', 'time'],
  ['minutes', 'board.detail.minutes', 'number'],
  ['allowed_minutes', 'board.detail.allowed_minutes', 'number'],
  ['identical_readings', 'board.detail.identical_readings', 'number'],
];

const S = {
  lang: localStorage.getItem('quantrac.lang') === 'en' ? 'en' : 'vi',
  messages: {},
  token: sessionStorage.getItem('quantrac.token'),
  user: JSON.parse(sessionStorage.getItem('quantrac.user') || 'null'),
  filters: { state: 'open,acknowledged', severity: '', kind: '', station: '' },
  stations: [], // the last station list, for names and the station filter
  fresh: new Map(), // alert id → time it changed live (highlighted for a while)
  view: null, // {name, params, refresh(), onEvent(ev), dispose()}
  renderSeq: 0,
  stream: { controller: null, state: 'off', backoff: 1000, lastByte: 0 },
  sound: false,
  audio: null,
  critical: [], // new critical alerts not yet seen
};

// --- small helpers -----------------------------------------------------------------------------

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

/** Build an element: h('a', {href: '#', class: 'x', onclick: fn}, 'text', child, ...). */
function h(tag, attrs = {}, ...children) {
  const svg = ['svg', 'g', 'circle', 'rect', 'line', 'path', 'polyline', 'polygon', 'text',
    'title', 'a', 'tspan'].includes(tag) && attrs.svg !== false && (attrs.svg || tag !== 'a');
  const el = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag)
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false || key === 'svg') continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'dataset') {
      // An absent value sets no attribute (not the text 'undefined').
      for (const [name, v] of Object.entries(value)) if (v !== undefined && v !== null) el.dataset[name] = v;
    }
    else if (key === 'style' && typeof value === 'object') Object.assign(el.style, value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

/** On a phone a table is a list of cards: each cell carries its column's name. */
function labelCells(table) {
  const names = [...table.querySelectorAll('thead th')].map((th) => th.textContent);
  for (const row of table.querySelectorAll('tbody tr')) {
    [...row.children].forEach((cell, i) => { if (names[i] && cell.colSpan === 1) cell.dataset.label = names[i]; });
  }
  table.classList.add('cards');
}

/** Replace an element's children (null and false are skipped, unlike replaceChildren). */
function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** The text for a key in the current language, {placeholders} filled in. */
export function t(key, params = {}) {
  let text = S.messages[key];
  if (text === undefined) {
    console.warn('quantrac board: missing translation', key);
    text = key;
  }
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m));
}

const locale = () => (S.lang === 'vi' ? 'vi-VN' : 'en-GB');
const canAct = () => !!S.user && ACTING_ROLES.has(S.user.role);
const canExport = () => !!S.user && EXPORTING_ROLES.has(S.user.role);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function fmtNumber(value, digits = 2) {
  if (value === null || value === undefined || Number.isNaN(value)) return '—';
  return new Intl.NumberFormat(locale(), { maximumFractionDigits: digits }).format(value);
}

/** A value with its unit: with ``digits`` decimals (see limitDigits), else the precision its size needs (3 significant figures, at most 2 decimals). */
function fmtValue(value, unit = '', digits = null) {
  if (value === null || value === undefined || Number.isNaN(value)) return '—';
  const abs = Math.abs(value);
  const d = digits ?? (abs >= 100 ? 0 : abs >= 10 ? 1 : 2);
  const text = new Intl.NumberFormat(locale(), { minimumFractionDigits: d, maximumFractionDigits: d }).format(value);
  return unit ? `${text} ${unit}` : text;
}

/** The decimals a number is written with (75 → 0, 0.05 → 2). */
function writtenDecimals(value) {
  const text = String(value);
  if (text.includes('e')) return 3;
  return (text.split('.')[1] || '').length;
}

/**
 * The decimals a value and the limit it is compared with share, so "153,0 mg/L" reads beside
 * "75,0 mg/L" (not "153" beside "75,0"): the limit's own decimals as the regulation writes it
 * or, if more, the precision the limit's size needs (3 significant figures), at most 3.
 * No limit: null, each value then takes the precision its own size needs.
 */
function limitDigits(...bounds) {
  const given = bounds.filter((b) => typeof b === 'number' && Number.isFinite(b));
  if (!given.length) return null;
  return Math.max(...given.map((b) => {
    const abs = Math.abs(b);
    return Math.min(3, Math.max(writtenDecimals(b), abs >= 100 ? 0 : abs >= 10 ? 1 : 2));
  }));
}

/** A limit's bound ("≤ 75,0 mg/L", "6,00–9,00") with the given decimals; its own text without numbers. */
function boundText(l, digits) {
  const unit = l.unit && l.unit !== l.param && l.unit !== 'pH' ? ` ${l.unit}` : '';
  const n = (x) => fmtValue(x, '', digits);
  if (typeof l.minimum === 'number' && typeof l.maximum === 'number') return `${n(l.minimum)}–${n(l.maximum)}${unit}`;
  if (typeof l.maximum === 'number') return `≤ ${n(l.maximum)}${unit}`;
  if (typeof l.minimum === 'number') return `≥ ${n(l.minimum)}${unit}`;
  return (S.lang === 'vi' && l.text_vi) || l.text || '';
}

function fmtPercent(share, digits = 1) {
  if (share === null || share === undefined) return '—';
  return new Intl.NumberFormat(locale(), { style: 'percent', maximumFractionDigits: digits }).format(share);
}

function parseTime(value) {
  if (!value) return null;
  // A bare date (daily points) is a local calendar day.
  const date = /^\d{4}-\d{2}-\d{2}$/.test(value) ? new Date(`${value}T00:00:00+07:00`)
    : new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

function fmtTime(value, style = 'full') {
  // Local time of the stations (UTC+07:00, fixed), day first as written in Vietnam.
  const date = value instanceof Date ? value : parseTime(value);
  if (!date) return '—';
  const local = new Date(date.getTime() + TZ_OFFSET_MS);
  const two = (n) => String(n).padStart(2, '0');
  const day = `${two(local.getUTCDate())}/${two(local.getUTCMonth() + 1)}`;
  const time = `${two(local.getUTCHours())}:${two(local.getUTCMinutes())}`;
  if (style === 'time') return time;
  if (style === 'day') return day;
  if (style === 'date') return `${day}/${local.getUTCFullYear()}`;
  if (style === 'short') return `${day} ${time}`;
  return `${day}/${local.getUTCFullYear()} ${time}`;
}

function fmtAgo(value) {
  const date = parseTime(value);
  if (!date) return t('board.never');
  const seconds = Math.max(0, Math.round((Date.now() - date.getTime()) / 1000));
  if (seconds < 60) return t('board.ago.seconds', { n: seconds });
  if (seconds < 3600) return t('board.ago.minutes', { n: Math.floor(seconds / 60) });
  if (seconds < 86400) return t('board.ago.hours', { n: Math.floor(seconds / 3600) });
  return t('board.ago.days', { n: Math.floor(seconds / 86400) });
}

function timeEl(value, style = 'full') {
  const date = parseTime(value);
  if (!date) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: date.toISOString(), title: fmtTime(date) }, fmtTime(date, style));
}

const kindName = (kind) => (KINDS.includes(kind) ? t(`alert.kind.${kind}`) : kind);
const severityName = (sev) => (SEVERITIES.includes(sev) ? t(`alert.severity.${sev}`) : sev);
const stateName = (state) => (STATES.includes(state) ? t(`alert.state.${state}`) : state);
const eventName = (event) => (S.messages[`alert.event.${event}`] ? t(`alert.event.${event}`) : event);
const target = (param) => param || t('alert.station_wide');

/** A reading status other than 00: calibration (01) or device fault (02), never shown as normal data. */
function statusChip(status) {
  const code = String(status).padStart(2, '0');
  const name = S.messages[`status.${code}`] ? t(`status.${code}`) : code;
  return h('span', { class: `badge reading-status reading-status-${code}`, dataset: { status: code } }, `${code} · ${name}`);
}

function severityBadge(severity) {
  return h('span', { class: `badge sev sev-${severity}` }, severityName(severity));
}

function stateBadge(state) {
  return h('span', { class: `badge state state-${state}` }, stateName(state));
}

function statusBadge(status) {
  return h('span', { class: `badge status status-${status}` }, t(`board.status.${status}`));
}

function aqiBadge(aqi) {
  if (!aqi) return h('span', { class: 'muted' }, '—');
  const colour = AQI_COLOURS[aqi.category] || '#999';
  const category = S.messages[`aqi.category.${aqi.category}`] ? t(`aqi.category.${aqi.category}`)
    : aqi.category;
  if (aqi.stale) {
    // An old index is not today's air: grey, with its hour.
    return h('span', { class: 'aqi stale', dataset: { stale: 'true' }, title: t('board.aqi.stale_help') },
      h('span', { class: 'swatch', style: { background: '#bdbdbd' }, 'aria-hidden': 'true' }),
      `${aqi.aqi} · ${category} `, h('span', { class: 'muted small' },
        `(${t('board.aqi.stale', { hour: fmtTime(aqi.hour_start, 'short') })})`));
  }
  return h('span', {
    class: 'aqi', title: t('board.aqi.title', { hour: fmtTime(aqi.hour_start), dominant: aqi.dominant || '—' }),
  }, h('span', { class: 'swatch', style: { background: colour }, 'aria-hidden': 'true' }),
  `${aqi.aqi} · ${category}`);
}

// --- API ---------------------------------------------------------------------------------------

class ApiFailure extends Error {
  constructor(status, body) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code;
    this.details = body?.error?.details;
  }
}

async function api(path, { method = 'GET', body, auth = true } = {}) {
  // Errors come back in the board's language, not the browser's.
  const headers = { Accept: 'application/json', 'Accept-Language': S.lang };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (auth && S.token) headers.Authorization = `Bearer ${S.token}`;
  const response = await fetch(API + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store',
  });
  let data = null;
  try { data = await response.json(); } catch { data = null; }
  if (response.status === 401 && auth) {
    signOut(t('board.login.expired'));
    throw new ApiFailure(401, data);
  }
  if (!response.ok) throw new ApiFailure(response.status, data);
  return data;
}

function errorText(error) {
  if (error instanceof ApiFailure && error.code && S.messages[`api.error.${error.code}`]) {
    const detail = ['invalid_parameter', 'invalid_request', 'invalid_registry'].includes(error.code) ? ` (${error.message})` : '';
    return `${t(`api.error.${error.code}`)}${detail}`;
  }
  if (error instanceof ApiFailure) {
    if (error.status === 403) return t('board.error.forbidden');
    if (error.status === 409) return t('board.error.conflict', { message: error.message });
    if (error.status === 404) return t('board.error.not_found');
    return t('board.error.api', { status: error.status, message: error.message });
  }
  return t('board.error.network');
}

function errorBox(error) {
  return h('p', { class: 'error', role: 'alert' }, errorText(error));
}

// --- language ----------------------------------------------------------------------------------

async function loadMessages(lang) {
  const response = await fetch(`${API}/i18n?lang=${lang}`, { cache: 'no-store' });
  if (!response.ok) throw new Error(`i18n ${response.status}`);
  S.messages = await response.json();
  S.lang = lang;
  localStorage.setItem('quantrac.lang', lang);
  document.documentElement.lang = lang;
  document.title = t('board.page_title');
  for (const el of $$('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of $$('[data-i18n-aria-label]')) el.setAttribute('aria-label', t(el.dataset.i18nAriaLabel));
  for (const button of $$('[data-lang]')) button.setAttribute('aria-pressed', String(button.dataset.lang === lang));
  renderHeader();
  renderStreamState();
  renderBanner();
}

async function switchLanguage(lang) {
  if (lang === S.lang) return;
  await loadMessages(lang);
  if (S.token) route();
}

// --- sign in / out -----------------------------------------------------------------------------

function renderHeader() {
  const who = $('#who');
  const signedIn = !!(S.token && S.user);
  who.hidden = !signedIn;
  $('#logout').hidden = !signedIn;
  $('nav.tabs').hidden = !signedIn;
  $('label.sound').hidden = !signedIn;
  if (signedIn) {
    fill(who,
      h('span', { class: 'who-name' }, S.user.display_name || S.user.username),
      ' ',
      h('span', { class: `badge role role-${S.user.role}` },
        ROLES.includes(S.user.role) ? t(`board.role.${S.user.role}`) : S.user.role),
    );
    who.title = t('board.signed_in_as', { user: S.user.username });
  }
}

function showLogin(message) {
  document.body.dataset.view = 'login';
  $('#view').hidden = true;
  $('#login-view').hidden = false;
  const error = $('#login-error');
  error.hidden = !message;
  error.textContent = message || '';
  renderHeader();
  $('#login-username').focus();
}

async function onLogin(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const username = form.username.value.trim();
  const password = form.password.value;
  const error = $('#login-error');
  if (!username || !password) {
    error.textContent = t('board.login.missing');
    error.hidden = false;
    return;
  }
  const button = form.querySelector('button[type=submit]');
  button.disabled = true;
  try {
    const data = await api('/login', { method: 'POST', body: { username, password }, auth: false });
    S.token = data.token;
    S.user = data.user;
    sessionStorage.setItem('quantrac.token', data.token);
    sessionStorage.setItem('quantrac.user', JSON.stringify(data.user));
    form.password.value = '';
    startSession();
  } catch (exc) {
    error.textContent = exc instanceof ApiFailure && exc.status === 401 ? t('board.login.failed')
      : errorText(exc);
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
}

function signOut(message) {
  S.token = null;
  S.user = null;
  sessionStorage.removeItem('quantrac.token');
  sessionStorage.removeItem('quantrac.user');
  stopStream();
  disposeView();
  S.critical = [];
  renderBanner();
  showLogin(message);
}

function startSession() {
  $('#login-view').hidden = true;
  $('#view').hidden = false;
  renderHeader();
  startStream();
  if (!location.hash || location.hash === '#' || location.hash === '#/') location.hash = '#/alerts';
  else route();
}

// --- live alert stream: fetch() streaming, so the token stays in a header ------------------------

function renderStreamState() {
  const el = $('#stream-state');
  el.dataset.state = S.stream.state;
  el.textContent = S.stream.state === 'off' ? '' : t(`board.stream.${S.stream.state}`);
}

function setStreamState(state) {
  S.stream.state = state;
  renderStreamState();
}

function stopStream() {
  if (S.stream.controller) S.stream.controller.abort();
  S.stream.controller = null;
  setStreamState('off');
}

async function startStream() {
  stopStream();
  const controller = new AbortController();
  S.stream.controller = controller;
  S.stream.backoff = 1000;
  setStreamState('connecting');
  while (!controller.signal.aborted && S.token) {
    try {
      await readStream(controller);
    } catch (exc) {
      if (controller.signal.aborted) return;
      if (exc instanceof ApiFailure && exc.status === 401) return;
    }
    if (controller.signal.aborted) return;
    setStreamState('reconnecting');
    await sleep(S.stream.backoff);
    S.stream.backoff = Math.min(S.stream.backoff * 2, 15000);
  }
}

async function readStream(controller) {
  // One connection; returns when it ends. A silent connection (no keep-alive for 45 s) is cut.
  const attempt = new AbortController();
  const abort = () => attempt.abort();
  controller.signal.addEventListener('abort', abort, { once: true });
  S.stream.lastByte = Date.now();
  const watchdog = setInterval(() => {
    if (Date.now() - S.stream.lastByte > 45000) attempt.abort();
  }, 5000);
  try {
    const response = await fetch(`${API}/alerts/stream`, {
      headers: { Authorization: `Bearer ${S.token}`, Accept: 'text/event-stream' },
      cache: 'no-store',
      signal: attempt.signal,
    });
    if (response.status === 401) {
      signOut(t('board.login.expired'));
      throw new ApiFailure(401, null);
    }
    if (!response.ok || !response.body) throw new ApiFailure(response.status, null);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    let connected = false;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      S.stream.lastByte = Date.now();
      buffer += value.replace(/\r/g, '');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (!connected) {
          // The server's first frame: from now on nothing is missed; catch up on the gap.
          connected = true;
          S.stream.backoff = 1000;
          setStreamState('live');
          if (S.view?.refresh) S.view.refresh();
        }
        handleFrame(frame);
      }
    }
  } finally {
    clearInterval(watchdog);
    controller.signal.removeEventListener('abort', abort);
  }
}

function handleFrame(frame) {
  let type = 'message';
  const data = [];
  for (const line of frame.split('\n')) {
    if (!line || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') type = value;
    else if (field === 'data') data.push(value);
  }
  if (type !== 'alert' || !data.length) return;
  let event;
  try { event = JSON.parse(data.join('\n')); } catch { return; }
  onAlertEvent(event);
}

function onAlertEvent(event) {
  S.fresh.set(event.alert_id, Date.now());
  const isNewCritical = event.severity === 'critical'
    && (event.event === 'opened' || event.event === 'escalated');
  if (isNewCritical && !S.critical.some((c) => c.alert_id === event.alert_id)) {
    S.critical.unshift(event);
    renderBanner(true);
    beep();
  }
  if (['acknowledged', 'resolved', 'auto_resolved'].includes(event.event)) {
    S.critical = S.critical.filter((c) => c.alert_id !== event.alert_id);
    renderBanner();
  }
  if (S.view?.onEvent) S.view.onEvent(event);
}

// --- new critical alert: banner and optional beep ----------------------------------------------

function renderBanner(flash = false) {
  const banner = $('#critical-banner');
  const latest = S.critical[0];
  if (!latest || !S.token) {
    banner.hidden = true;
    document.body.classList.remove('has-banner');
    return;
  }
  $('#critical-text').textContent = t(
    S.critical.length > 1 ? 'board.banner.new_critical_more' : 'board.banner.new_critical',
    {
      kind: kindName(latest.kind),
      station: latest.station_name || latest.station,
      param: target(latest.param),
      at: fmtTime(latest.at, 'time'),
      more: S.critical.length - 1,
    },
  );
  $('#critical-link').href = `#/alerts/${latest.alert_id}`;
  banner.dataset.alertId = latest.alert_id;
  banner.hidden = false;
  document.body.classList.add('has-banner');
  if (flash) {
    banner.classList.remove('flash');
    void banner.offsetWidth; // restart the animation
    banner.classList.add('flash');
  }
}

function dismissBanner() {
  S.critical = [];
  renderBanner();
}

function setSound(on) {
  S.sound = on;
  $('#sound-toggle').checked = on;
  if (on) {
    // Created inside the user's click, as browsers require before any sound.
    try {
      S.audio = S.audio || new AudioContext();
      S.audio.resume();
    } catch {
      S.audio = null;
    }
  }
}

function beep() {
  if (!S.sound || !S.audio) return;
  const ctx = S.audio;
  const start = ctx.currentTime + 0.02;
  for (let i = 0; i < 3; i += 1) {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = 'square';
    osc.frequency.value = i % 2 ? 660 : 880;
    gain.gain.setValueAtTime(0.0001, start + i * 0.3);
    gain.gain.exponentialRampToValueAtTime(0.2, start + i * 0.3 + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, start + i * 0.3 + 0.22);
    osc.connect(gain).connect(ctx.destination);
    osc.start(start + i * 0.3);
    osc.stop(start + i * 0.3 + 0.25);
  }
}

// --- routing -----------------------------------------------------------------------------------

function disposeView() {
  if (S.view?.dispose) S.view.dispose();
  S.view = null;
}

function route() {
  if (!S.token) return;
  const [name = 'alerts', id, sub] = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  disposeView();
  S.renderSeq += 1;
  for (const link of $$('[data-nav]')) {
    if (link.dataset.nav === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  document.body.dataset.view = name;
  const root = $('#view');
  fill(root);
  const views = { alerts: id ? alertView : alertsView, stations: id ? stationView : stationsView,
    indicators: indicatorsView, reports: reportsView };
  (views[name] || alertsView)(root, id, sub);
}

/** A view's async loader: ignored if the user has moved on meanwhile. */
function current() {
  const seq = S.renderSeq;
  return () => seq === S.renderSeq;
}

function debounce(fn, ms) {
  let timer = null;
  const run = () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
  run.cancel = () => clearTimeout(timer);
  return run;
}

// --- alerts list -------------------------------------------------------------------------------

function alertsView(root) {
  const alive = current();
  const select = (id, labelKey, options, value, onchange) => h('div', { class: 'field' },
    h('label', { for: id }, t(labelKey)),
    h('select', { id, onchange },
      options.map(([v, text]) => h('option', { value: v, selected: v === value }, text))));
  const update = (key) => (e) => {
    S.filters[key] = e.target.value;
    load();
  };
  const stationOptions = [['', t('board.filter.all')],
    ...S.stations.map((s) => [s.id, `${s.id} · ${s.name}`])];
  const filters = h('form', { class: 'filters', role: 'search', onsubmit: (e) => e.preventDefault() },
    select('filter-state', 'board.filter.state', [
      ['open,acknowledged', t('board.filter.active')],
      ...STATES.map((s) => [s, stateName(s)]),
      ['', t('board.filter.all')],
    ], S.filters.state, update('state')),
    select('filter-severity', 'board.filter.severity',
      [['', t('board.filter.all')], ...SEVERITIES.map((s) => [s, severityName(s)])],
      S.filters.severity, update('severity')),
    select('filter-kind', 'board.filter.kind',
      [['', t('board.filter.all')], ...KINDS.map((k) => [k, kindName(k)])],
      S.filters.kind, update('kind')),
    select('filter-station', 'board.filter.station', stationOptions, S.filters.station,
      update('station')));
  const summary = h('p', { class: 'summary', id: 'alerts-summary', 'aria-live': 'polite' });
  const body = h('tbody', { id: 'alerts-body' });
  const table = h('table', { class: 'alerts', id: 'alerts-table' },
    h('caption', { class: 'sr-only' }, t('board.alerts.caption')),
    h('thead', {}, h('tr', {},
      ['board.col.severity', 'board.col.alert', 'board.col.station', 'board.col.evidence',
        'board.col.opened', 'board.col.last_data', 'board.col.count', 'board.col.state',
        'board.col.actions'].map((k) => h('th', { scope: 'col' }, t(k))))),
    body);
  root.append(
    h('div', { class: 'view-head' }, h('h1', {}, t('board.alerts.title')), summary),
    filters,
    h('div', { class: 'table-wrap' }, table),
  );
  if (!canAct()) root.append(h('p', { class: 'muted', id: 'read-only-note' }, t('board.alerts.read_only')));

  // Only the newest request draws: an earlier one (the first load, a live update) answering
  // late must not overwrite the list of the filter chosen since.
  let requested = 0;
  async function load() {
    const query = new URLSearchParams({ limit: '200', sort: 'severity' });
    for (const [key, value] of Object.entries(S.filters)) if (value) query.set(key, value);
    const mine = ++requested;
    const newest = () => alive() && mine === requested;
    try {
      const data = await api(`/alerts?${query}`);
      if (!newest()) return;

      // Live updates redraw the rows: keep the keyboard focus on the same control.
      const active = document.activeElement;
      const kept = body.contains(active) ? {
        id: active.closest('tr')?.dataset.alertId, action: active.dataset.action, href: active.getAttribute('href'),
      } : null;
      const shown = foldRepeats(data.items);
      summary.textContent = t('board.alerts.summary', { shown: shown.length, total: data.total });
      fill(body, ...(shown.length ? shown.map(alertRow)
        : [h('tr', {}, h('td', { colspan: 9, class: 'empty' }, t('board.alerts.none')))]));
      labelCells(table);
      if (kept?.id) {
        const again = [...body.querySelectorAll(`tr[data-alert-id="${kept.id}"] a, tr[data-alert-id="${kept.id}"] button`)]
          .find((el) => (kept.action ? el.dataset.action === kept.action : el.getAttribute('href') === kept.href));
        if (again) again.focus();
      }
    } catch (exc) {
      if (!newest()) return;
      fill(body, h('tr', {}, h('td', { colspan: 9 }, errorBox(exc))));
    }
  }

  const later = debounce(load, 250);
  const tick = setInterval(() => { if (alive()) load(); }, 60000);
  const counting = setInterval(tickSilent, 20000);
  if (!S.stations.length) {
    api('/stations').then((data) => {
      S.stations = data.items;
      if (!alive()) return;
      const stationSelect = $('#filter-station');
      for (const s of data.items) stationSelect.append(h('option', { value: s.id }, `${s.id} · ${s.name}`));
    }).catch(() => {});
  }
  S.view = {
    name: 'alerts',
    refresh: load,
    onEvent: later,
    dispose: () => { later.cancel(); clearInterval(tick); clearInterval(counting); },
  };
  load();
}

/** Repeated open/clear of one condition: the newest row stays, the earlier resolved ones fold into it. */
/** The station page, opened on the alert's parameter when it has one. */
function stationHref(alert) {
  const base = `#/stations/${encodeURIComponent(alert.station_id)}`;
  return alert.param ? `${base}/${encodeURIComponent(alert.param)}` : base;
}

function foldRepeats(items) {
  const kept = new Map();
  const out = [];
  for (const alert of items) {
    const key = `${alert.station_id}|${alert.param || ''}|${alert.kind}`;
    const first = kept.get(key);
    if (first && alert.state === 'resolved') {
      first.folded = (first.folded || 0) + 1;
      continue;
    }
    if (!first) kept.set(key, alert);
    out.push(alert);
  }
  return out;
}

function flapBadge(alert) {
  const n = Math.max(alert.flaps_24h || 0, (alert.folded || 0) + 1);
  if (n < 2) return null;
  return h('span', { class: 'badge flaps', title: t('board.alerts.flaps_help'), dataset: { flaps: n } },
    '↻ ', t('board.alerts.flaps', { n }));
}

/** 'mất tín hiệu từ 14:05 (37 phút)': from the last reading, counting up while the page is open. */
function silentSince(alert) {
  const d = alert.details || {};
  const since = parseTime(d.last_measured_at || alert.newest_reading_at || alert.first_data_at);
  if (!since) return t('board.alerts.silent', { minutes: d.silent_minutes ?? '—' });
  const until = alert.state === 'resolved' ? parseTime(alert.resolved_at) : null;
  return h('span', { class: 'silent-since', dataset: { since: since.toISOString(), until: until?.toISOString() } },
    silentText(since, until));
}

function silentText(since, until) {
  const minutes = Math.max(0, Math.floor(((until || new Date()) - since) / 60000));
  return t('board.alerts.silent_since', { time: fmtTime(since, 'short'), duration: fmtDuration(minutes) });
}

/** 45 phút, 2 giờ 5 phút, 3 ngày 4 giờ. */
function fmtDuration(minutes) {
  if (minutes < 60) return t('board.duration.minutes', { m: minutes });
  if (minutes < 1440) return t('board.duration.hours', { h: Math.floor(minutes / 60), m: minutes % 60 });
  return t('board.duration.days', { d: Math.floor(minutes / 1440), h: Math.floor((minutes % 1440) / 60) });
}

function tickSilent() {
  for (const el of $$('.silent-since')) {
    if (!el.dataset.until) el.textContent = silentText(new Date(el.dataset.since), null);
  }
}

function evidenceText(alert) {
  const d = alert.details || {};
  if (d.value !== undefined && d.value !== null && d.limit !== undefined && d.limit !== null) {
    const multiple = d.multiple ? ` (×${fmtNumber(d.multiple)})` : '';
    const digits = limitDigits(d.limit, d.limit_min);
    return `${fmtValue(d.value, '', digits)} / ${fmtValue(d.limit, '', digits)} ${d.unit || alert.unit || ''}${multiple}`.trim();
  }
  if (alert.last_value !== null && alert.last_value !== undefined) {
    const digits = limitDigits(d.limit, d.limit_min);
    const value = digits === null ? fmtNumber(alert.last_value) : fmtValue(alert.last_value, '', digits);
    return `${value} ${d.unit || alert.unit || ''}`.trim();
  }
  if (d.silent_minutes !== undefined || alert.kind === 'data_loss') return silentSince(alert);
  return '—';
}

function actionButtons(alert, compact = true) {
  if (!canAct() || alert.state === 'resolved') return [];
  const buttons = [];
  if (alert.state === 'open') {
    buttons.push(h('button', {
      type: 'button', class: compact ? 'small' : 'primary', dataset: { action: 'acknowledge', alertId: alert.id },
      'aria-label': t('board.act.acknowledge_label', { id: alert.id }),
    }, t('board.act.acknowledge')));
  }
  buttons.push(h('button', {
    type: 'button', class: compact ? 'small' : '', dataset: { action: 'resolve', alertId: alert.id },
    'aria-label': t('board.act.resolve_label', { id: alert.id }),
  }, t('board.act.resolve')));
  buttons.push(h('button', {
    type: 'button', class: compact ? 'small' : '', dataset: { action: 'assign', alertId: alert.id },
    'aria-label': t('board.act.assign_label', { id: alert.id }),
  }, t('board.act.assign')));
  return buttons;
}

function alertRow(alert) {
  const freshAt = S.fresh.get(alert.id);
  const fresh = freshAt && Date.now() - freshAt < 30000;
  const d = alert.details || {};
  return h('tr', {
    class: `sev-row sev-${alert.severity} state-${alert.state}${fresh ? ' fresh' : ''}`,
    dataset: { alertId: alert.id, state: alert.state, severity: alert.severity, kind: alert.kind },
  },
  h('td', {}, severityBadge(alert.severity)),
  h('td', {}, h('a', { href: `#/alerts/${alert.id}` }, kindName(alert.kind)), ' · ',
    h('span', { class: 'param' }, target(alert.param)),
    d.unverified ? h('span', { class: 'unverified', title: t('board.detail.unverified_help') }, ' ', t('board.unverified_mark')) : null,
    d.status && d.status !== '00' ? h('div', {}, statusChip(d.status)) : null,
    flapBadge(alert) ? h('div', {}, flapBadge(alert)) : null),
  h('td', {}, h('a', { href: stationHref(alert) }, alert.station_name),
    h('div', { class: 'muted small' }, alert.station_id)),
  h('td', { class: 'num' }, evidenceText(alert),
    d.averaging ? h('div', { class: 'muted small' }, `${t('board.alerts.mean_of', { averaging: averagingName(d.averaging) })}${d.band ? ` · ${t('alert.detail.band')} ${d.band}` : ''}`) : null),
  h('td', {}, timeEl(alert.opened_at, 'short')),
  h('td', {}, timeEl(alert.newest_reading_at || alert.last_data_at, 'short')),
  h('td', { class: 'num' }, fmtNumber(alert.count, 0)),
  h('td', {}, stateBadge(alert.state),
    alert.state === 'resolved' ? h('div', { class: 'muted small closed-by' }, closedBy(alert))
      : alert.acknowledged_by ? h('div', { class: 'muted small' }, alert.acknowledged_by) : null,
    alert.assigned_to && alert.state !== 'resolved'
      ? h('div', { class: 'small assignee', dataset: { assignee: alert.assigned_to } },
        t('board.alert.assigned_short', { user: alert.assigned_to })) : null),
  h('td', { class: 'actions' }, actionButtons(alert)));
}

// --- acknowledge / resolve / note --------------------------------------------------------------

let dialogAction = null;

function openActDialog(alertId, action, summary = '') {
  const dialog = $('#act-dialog');
  dialogAction = { alertId: Number(alertId), action };
  $('#act-title').textContent = t(`board.act.${action}_title`, { id: alertId });
  $('#act-summary').textContent = summary;
  $('#act-submit').textContent = t(action === 'assign' ? 'board.act.assign_submit' : `board.act.${action}`);
  $('#act-assignee-field').hidden = action !== 'assign';
  if (action === 'assign') loadAssignees(Number(alertId));
  $('#act-note').value = '';
  $('#act-note').setAttribute('aria-required', String(action === 'resolve'));
  $('label[for=act-note]').textContent = t(action === 'resolve' ? 'board.dialog.note_resolve' : 'board.dialog.note');
  $('#act-error').hidden = true;
  dialog.dataset.action = action;
  dialog.showModal();
  $('#act-note').focus();
}

async function submitAct(event) {
  event.preventDefault();
  if (!dialogAction) return;
  const { alertId, action } = dialogAction;
  const note = $('#act-note').value.trim();
  const submit = $('#act-submit');
  if (action === 'resolve' && !note) {
    const error = $('#act-error');
    error.textContent = t('board.dialog.note_required');
    error.hidden = false;
    $('#act-note').focus();
    return;
  }
  const assignee = $('#act-assignee').value;
  if (action === 'assign' && !assignee) {
    const error = $('#act-error');
    error.textContent = t('board.dialog.assignee_required');
    error.hidden = false;
    $('#act-assignee').focus();
    return;
  }
  const body = action === 'assign' ? { assignee, note: note || null } : { note: note || null };
  submit.disabled = true;
  try {
    await api(`/alerts/${alertId}/${action}`, { method: 'POST', body });
    $('#act-dialog').close();
    dialogAction = null;
    S.fresh.set(alertId, Date.now());
    S.critical = S.critical.filter((c) => c.alert_id !== alertId);
    renderBanner();
    if (S.view?.refresh) S.view.refresh();
  } catch (exc) {
    const error = $('#act-error');
    error.textContent = errorText(exc);
    error.hidden = false;
  } finally {
    submit.disabled = false;
  }
}

/** The users an alert can be given to (they may act on alerts and cover its station). */
async function loadAssignees(alertId) {
  const select = $('#act-assignee');
  fill(select);
  try {
    const data = await api(`/alerts/${alertId}/assignees`);
    if (dialogAction?.alertId !== alertId) return;
    if (!data.items.length) {
      const error = $('#act-error');
      error.textContent = t('board.dialog.no_assignees');
      error.hidden = false;
      return;
    }
    fill(select, h('option', { value: '' }, '—'), ...data.items.map((u) => h('option', { value: u.username },
      u.display_name ? `${u.display_name} (${u.username})` : u.username)));
    select.focus();
  } catch (exc) {
    const error = $('#act-error');
    error.textContent = errorText(exc);
    error.hidden = false;
  }
}

function rowSummary(alertId) {
  const row = $(`tr[data-alert-id="${alertId}"]`);
  return row ? [...row.cells].slice(1, 4).map((c) => c.innerText.replace(/\s+/g, ' ')).join(' — ') : '';
}

// --- one alert ---------------------------------------------------------------------------------

function detailValue(kind, value) {
  if (value === null || value === undefined || value === '') return null;
  switch (kind) {
    case 'number': return typeof value === 'number' ? fmtNumber(value, 4) : String(value);
    case 'multiple': return `×${fmtNumber(value, 2)}`;
    case 'averaging': return averagingName(value);
    case 'percent': return fmtPercent(value);
    case 'time': return timeEl(value);
    case 'code': return h('code', {}, String(value));
    case 'source': return ['regulation', 'permit'].includes(value) ? t(`board.limit_source.${value}`) : String(value);
    case 'status': return S.messages[`status.${value}`] ? `${value} · ${t(`status.${value}`)}` : String(value);
    case 'unverified':
      return value ? h('span', { class: 'unverified' }, t('board.unverified_mark'), ' — ', t('board.detail.unverified_help'))
        : t('board.detail.verified');
    default: return String(value);
  }
}

// Evidence values measured in the alert's unit: shown with it.
const WITH_UNIT = new Set(['value', 'limit', 'limit_min', 'excess', 'maximum', 'minimum']);

function evidenceList(details, unit = details.unit) {
  const rows = [];
  const digits = limitDigits(details.limit, details.limit_min);
  const known = new Set(['formula_vi']);  // shown as the formula in Vietnamese, not a row of its own
  for (const [key, labelKey, kind] of DETAIL_FIELDS) {
    known.add(key);
    const raw = key === 'formula' && S.lang === 'vi' && details.formula_vi ? details.formula_vi : details[key];
    let value = detailValue(kind, raw);
    if (value !== null && WITH_UNIT.has(key) && unit && typeof details[key] === 'number') {
      value = fmtValue(details[key], unit, digits);
    }
    if (value === null) continue;
    rows.push(h('dt', {}, t(labelKey)), h('dd', { dataset: { field: key } }, value));
  }
  for (const [key, value] of Object.entries(details)) {
    if (known.has(key) || value === null || value === undefined) continue;
    rows.push(h('dt', { class: 'raw' }, key),
      h('dd', { dataset: { field: key } }, typeof value === 'object' ? JSON.stringify(value) : String(value)));
  }
  return rows.length ? h('dl', { class: 'evidence' }, rows) : h('p', { class: 'muted' }, '—');
}

function alertView(root, id) {
  const alive = current();
  async function load() {
    let alert;
    try {
      alert = await api(`/alerts/${encodeURIComponent(id)}`);
    } catch (exc) {
      if (alive()) fill(root, backLink('#/alerts', 'board.nav.alerts'), errorBox(exc));
      return;
    }
    if (!alive()) return;
    const digits = limitDigits(alert.details?.limit, alert.details?.limit_min);
    const noteForm = canAct() ? h('form', { class: 'note-form', onsubmit: async (e) => {
      e.preventDefault();
      const input = $('#note-text');
      const text = input.value.trim();
      const status = $('#note-status');
      if (!text) return;
      try {
        await api(`/alerts/${alert.id}/note`, { method: 'POST', body: { note: text } });
        input.value = '';
        load();
      } catch (exc) {
        fill(status, errorBox(exc));
      }
    } },
    h('label', { for: 'note-text' }, t('board.alert.add_note')),
    h('textarea', { id: 'note-text', rows: 2, maxlength: 2000 }),
    h('div', { id: 'note-status' }),
    h('button', { type: 'submit' }, t('board.alert.save_note'))) : null;
    fill(root,
      backLink('#/alerts', 'board.nav.alerts'),
      h('div', { class: `view-head alert-head sev-row sev-${alert.severity}`, dataset: { alertId: alert.id, state: alert.state } },
        h('h1', {}, `${kindName(alert.kind)} — ${alert.station_name} — ${target(alert.param)}`),
        h('div', { class: 'head-badges' }, severityBadge(alert.severity), ' ', stateBadge(alert.state),
          h('span', { class: 'muted' }, ` #${alert.id}`))),
      h('div', { class: 'actions big' }, actionButtons(alert, false)),
      h('div', { class: 'grid2' },
        h('section', { class: 'card' },
          h('h2', {}, t('board.alert.evidence')),
          evidenceList(alert.details || {}, alert.details?.unit || alert.unit)),
        h('section', { class: 'card' },
          h('h2', {}, t('board.alert.facts')),
          h('dl', { class: 'evidence' },
            h('dt', {}, t('board.col.station')),
            h('dd', {}, h('a', { href: stationHref(alert), id: 'alert-station-link' },
              `${alert.station_id} · ${alert.station_name}`)),
            h('dt', {}, t('board.col.opened')), h('dd', {}, timeEl(alert.opened_at)),
            h('dt', {}, t('board.alert.first_data')), h('dd', {}, timeEl(alert.first_data_at)),
            h('dt', {}, t('board.col.last_data')), h('dd', { id: 'alert-newest' }, timeEl(alert.newest_reading_at || alert.last_data_at)),
            h('dt', {}, t('alert.detail.count')), h('dd', {}, fmtNumber(alert.count, 0)),
            h('dt', {}, t('board.alert.last_value')), h('dd', { id: 'alert-last-value' }, fmtValue(alert.last_value, alert.details?.unit || alert.unit || '', digits)),
            h('dt', {}, t('alert.detail.maximum')), h('dd', {}, fmtValue(alert.max_value, alert.details?.unit || alert.unit || '', digits)),
            alert.acknowledged_by ? [h('dt', {}, t('board.alert.acknowledged_by')),
              h('dd', {}, `${alert.acknowledged_by} · `, timeEl(alert.acknowledged_at))] : null,
            alert.assigned_to && alert.state !== 'resolved' ? [h('dt', {}, t('board.alert.assigned_to')),
              h('dd', { id: 'assigned-to' }, alert.assigned_to, ' · ',
                h('span', { class: 'muted' }, t('board.alert.assigned_by', { user: alert.assigned_by }), ' · ',
                  timeEl(alert.assigned_at)))] : null,
            alert.resolved_at ? [h('dt', {}, t('board.alert.resolved_by')),
              h('dd', { id: 'closed-by' }, `${closedBy(alert)} · `, timeEl(alert.resolved_at))] : null,
            alert.note ? [h('dt', {}, t('alert.email.note')), h('dd', {}, alert.note)] : null))),
      h('section', { class: 'card' },
        h('h2', {}, t('board.alert.trail')),
        h('table', { class: 'trail' },
          h('thead', {}, h('tr', {}, ['board.col.time', 'alert.email.event', 'alert.email.actor', 'alert.email.note']
            .map((k) => h('th', { scope: 'col' }, t(k))))),
          h('tbody', {}, foldTrail(alert.events || []).map((e) => h('tr', {
            class: HUMAN_EVENTS.has(e.event) && e.actor ? 'human' : 'machine',
            dataset: { event: e.event, folded: e.folded > 1 ? e.folded : undefined },
          },
          h('td', {}, timeEl(e.at), e.folded > 1 ? [' – ', timeEl(e.last_at, 'time')] : null),
          h('td', {}, eventName(e.event),
            e.folded > 1 ? h('span', { class: 'fold-count' }, ` ${t('board.alert.folded', { n: e.folded })}`) : null),
          h('td', {}, e.actor || t('board.alert.engine')), h('td', {}, trailNote(e))))))),
      noteForm,
    );
    labelCells($('table.trail', root));
  }
  const later = debounce(load, 250);
  S.view = {
    name: 'alert',
    refresh: load,
    onEvent: (ev) => { if (String(ev.alert_id) === String(id)) later(); },
    dispose: () => later.cancel(),
  };
  root.append(h('p', { class: 'muted' }, t('board.loading')));
  load();
}

// People's actions stand out in the trail; the engine's repeats and revisions fold.
const HUMAN_EVENTS = new Set(['acknowledged', 'resolved', 'noted', 'assigned']);
const FOLDED_EVENTS = new Set(['revised', 'updated']);

/** The engine's repeats and revisions between two other events become one line per type, with
 * a count and a time span (an hour's repeat between late readings does not split the revisions). */
function foldTrail(events) {
  const out = [];
  let run = new Map();  // event type → its line, since the last event that is not folded
  for (const e of events) {
    if (!FOLDED_EVENTS.has(e.event) || e.actor) {
      run = new Map();
      out.push({ ...e, folded: 1, last_at: e.at });
      continue;
    }
    const line = run.get(e.event);
    if (line) {
      line.folded += 1;
      line.last_at = e.at;
      continue;
    }
    const fresh = { ...e, folded: 1, last_at: e.at };
    run.set(e.event, fresh);
    out.push(fresh);
  }
  return out;
}

/** An event's note; an assignment names whom it went to first. */
function trailNote(e) {
  if (e.event !== 'assigned' || !e.details?.assignee) return e.note || '';
  return [h('strong', { class: 'assignee' }, t('board.alert.trail_assigned', { user: e.details.assignee })),
    e.note ? ` ${e.note}` : ''];
}

/** Who or what closed an alert: a person (with their note) or the engine when it cleared. */
function closedBy(alert) {
  if (alert.state !== 'resolved') return null;
  if (alert.resolution === 'auto' || !alert.resolved_by) return t('board.alert.closed_auto');
  return t('board.alert.closed_by', { user: alert.resolved_by });
}

function backLink(href, key) {
  return h('p', { class: 'back' }, h('a', { href }, '← ', t(key)));
}

// --- stations board ----------------------------------------------------------------------------

/** A live value's colour, against the same one limit as its percentage (value.reference):
 * the shortest averaging in force, never an annual mean. A value with a status other than 00
 * is calibration or a fault, not data to colour. */
function valueLevel(value) {
  if (value.value === null || value.value === undefined) return 'none';
  if (value.status && value.status !== '00') return `status-${value.status}`;
  const l = value.reference;
  if (!l) return 'none';
  const over = (l.maximum !== null && l.maximum !== undefined && value.value > l.maximum)
    || (l.minimum !== null && l.minimum !== undefined && value.value < l.minimum);
  if (over) return 'over';
  if (value.ratio !== null && value.ratio !== undefined && value.ratio >= 0.8) return 'near';
  return 'ok';
}

function averagingName(averaging) {
  return S.messages[`averaging.${averaging}`] ? t(`averaging.${averaging}`) : (averaging || '');
}

/** 'against the 1-hour limit ≤ 75 mg/L' — which limit a colour and a percentage are measured on. */
function referenceText(v) {
  if (v.reference) return t('board.station.against', { averaging: averagingName(v.reference.averaging), limit: boundText(v.reference, valueDigits(v)) });
  if (v.limits?.length) return t('board.station.annual_only');
  return t('board.station.no_limit');
}

/** A station value's decimals: those of the limits it is read against (null: none applies). */
function valueDigits(v) {
  return limitDigits(...(v.limits || []).flatMap((l) => [l.maximum, l.minimum]));
}

function valueChips(detail) {
  if (!detail) return h('span', { class: 'muted' }, '…');
  return h('ul', { class: 'chips' }, detail.values.map((v) => {
    const level = valueLevel(v);
    return h('li', { class: `chip level-${level}`, title: referenceText(v), dataset: { param: v.param, level } },
      h('span', { class: 'chip-param' }, v.param), ' ',
      v.value === null ? '—' : `${fmtValue(v.value, v.unit, valueDigits(v))}`,
      level.startsWith('status-') ? h('span', { class: 'chip-status' }, ` ${statusChip(v.status).textContent}`)
        : v.ratio !== null && v.ratio !== undefined ? h('span', { class: 'chip-ratio' },
          ` ${fmtPercent(v.ratio)} ${t('board.station.of_averaging', { averaging: averagingName(v.reference?.averaging) })}`) : null);
  }));
}

function alertCounts(openAlerts) {
  const entries = SEVERITIES.filter((s) => openAlerts?.[s]);
  if (!entries.length) return h('span', { class: 'muted' }, '0');
  return entries.map((s) => h('span', { class: `badge sev sev-${s}`, title: severityName(s) },
    `${openAlerts[s]} ${severityName(s)}`));
}

/** The schematic map: stations projected from lat/lon into the SVG; no tiles, no network. */
function stationMap(stations) {
  const W = 1200;
  const H = 470;
  const pad = 70;
  const placed = stations.filter((s) => Number.isFinite(s.lat) && Number.isFinite(s.lon));
  const svg = h('svg', { viewBox: `0 0 ${W} ${H}`, class: 'map', role: 'group', 'aria-label': t('board.map.label') });
  svg.append(h('rect', { x: 0, y: 0, width: W, height: H, class: 'map-bg' }));
  if (!placed.length) {
    svg.append(h('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'map-empty' }, t('board.map.no_coordinates')));
    return svg;
  }
  let [minLat, maxLat] = [Math.min(...placed.map((s) => s.lat)), Math.max(...placed.map((s) => s.lat))];
  let [minLon, maxLon] = [Math.min(...placed.map((s) => s.lon)), Math.max(...placed.map((s) => s.lon))];
  const cos = Math.cos(((minLat + maxLat) / 2) * Math.PI / 180);
  // At least ~5 km across, so one station or a tight cluster is not blown up.
  const minSpan = 0.05;
  if (maxLat - minLat < minSpan) { const c = (minLat + maxLat) / 2; minLat = c - minSpan / 2; maxLat = c + minSpan / 2; }
  if ((maxLon - minLon) * cos < minSpan) { const c = (minLon + maxLon) / 2; minLon = c - minSpan / cos / 2; maxLon = c + minSpan / cos / 2; }
  const spanX = (maxLon - minLon) * cos;
  const spanY = maxLat - minLat;
  const scale = Math.min((W - 2 * pad) / spanX, (H - 2 * pad) / spanY);
  const offX = (W - spanX * scale) / 2;
  const offY = (H - spanY * scale) / 2;
  const px = (lon) => offX + (lon - minLon) * cos * scale;
  const py = (lat) => H - offY - (lat - minLat) * scale;

  // Graticule at a round step, labelled in degrees.
  const steps = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5];
  const lonLo = minLon - pad / cos / scale;
  const lonHi = maxLon + pad / cos / scale;
  const latLo = minLat - pad / scale;
  const latHi = maxLat + pad / scale;
  const step = steps.find((s) => (latHi - latLo) / s <= 6) || 10;
  const grid = h('g', { class: 'graticule', 'aria-hidden': 'true' });
  const degrees = new Intl.NumberFormat(locale(), { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  for (let lat = Math.ceil(latLo / step) * step; lat <= latHi; lat += step) {
    const y = py(lat);
    grid.append(h('line', { x1: 0, x2: W, y1: y, y2: y }),
      h('text', { x: 6, y: y - 4 }, t('board.map.lat', { value: degrees.format(lat) })));
  }
  for (let lon = Math.ceil(lonLo / step) * step; lon <= lonHi; lon += step) {
    const x = px(lon);
    grid.append(h('line', { x1: x, x2: x, y1: 0, y2: H }),
      h('text', { x: x + 4, y: H - 6 }, t('board.map.lon', { value: degrees.format(lon) })));
  }
  svg.append(grid);
  // North arrow and a scale bar (distance at the map's latitude).
  const km = 111.32 * spanY / (H - 2 * offY) * 100; // km per 100 px
  svg.append(h('g', { class: 'north', 'aria-hidden': 'true', transform: `translate(${W - 40},40)` },
    h('polygon', { points: '0,-22 8,6 0,0 -8,6' }), h('text', { x: 0, y: 22, 'text-anchor': 'middle' }, t('board.map.north'))));
  svg.append(h('g', { class: 'scale', 'aria-hidden': 'true', transform: `translate(${W - 150},${H - 24})` },
    h('line', { x1: 0, x2: 100, y1: 0, y2: 0 }), h('line', { x1: 0, x2: 0, y1: -5, y2: 5 }),
    h('line', { x1: 100, x2: 100, y1: -5, y2: 5 }),
    h('text', { x: 50, y: -8, 'text-anchor': 'middle' }, `${fmtNumber(km, km < 10 ? 1 : 0)} km`)));

  const boxes = [];
  const overlaps = (b) => boxes.some((o) => b.x < o.x + o.w && o.x < b.x + b.w && b.y < o.y + o.h && o.y < b.y + b.h);
  const positions = placed.map((s) => ({ s, x: px(s.lon), y: py(s.lat) }));
  for (const { x, y } of positions) boxes.push({ x: x - 18, y: y - 18, w: 36, h: 36 });
  for (const { s, x, y } of positions) {
    const status = STATION_STATUSES.includes(s.status) ? s.status : 'offline';
    const group = h('a', { href: `#/stations/${encodeURIComponent(s.id)}`, class: `station status-${status}`, svg: true,
      dataset: { station: s.id, status, trouble: s.worst_alert || 'none' },
      'aria-label': t('board.map.station_label', { id: s.id, name: s.name,
        status: s.worst_alert ? `${t(`board.status.${status}`)}, ${t(`board.trouble.${s.worst_alert}`)}` : t(`board.status.${status}`) }) });
    group.append(h('title', {}, `${s.id} · ${s.name}\n${t(`board.status.${status}`)} · ${fmtAgo(s.last_reading_at)}`));
    if (s.kind === 'air' && s.aqi) {
      group.append(h('circle', { cx: x, cy: y, r: 17, class: 'aqi-ring', stroke: AQI_COLOURS[s.aqi.category] || '#999' }));
    }
    // The worst open alert colours the marker; without one, the transmission status does.
    const fill = s.worst_alert ? TROUBLE_COLOURS[s.worst_alert] : STATUS_COLOURS[status];
    if (s.kind === 'wastewater') {
      group.append(h('rect', { x: x - 9, y: y - 9, width: 18, height: 18, transform: `rotate(45 ${x} ${y})`, fill, class: 'marker' }));
    } else if (s.kind === 'emission') {
      group.append(h('polygon', { points: `${x},${y - 12} ${x + 11},${y + 8} ${x - 11},${y + 8}`, fill, class: 'marker' }));
    } else {
      group.append(h('circle', { cx: x, cy: y, r: 10, fill, class: 'marker' }));
    }
    const open = Object.values(s.open_alerts || {}).reduce((a, b) => a + b, 0);
    if (open) {
      const sev = SEVERITIES.find((k) => s.open_alerts[k]);
      group.append(h('circle', { cx: x + 13, cy: y - 13, r: 9, class: `alert-dot sev-${sev}`,
        fill: s.worst_alert ? TROUBLE_COLOURS[s.worst_alert] : undefined }),
        h('text', { x: x + 13, y: y - 9.5, 'text-anchor': 'middle', class: 'alert-count' }, String(open)));
    }
    // Label: right, left, below or above, whichever does not collide.
    const label = `${s.id} · ${s.name}`;
    const w = Math.min(label.length, 34) * 7 + 8;
    const candidates = [
      { x: x + 22, y: y - 8, anchor: 'start' }, { x: x - 22 - w, y: y - 8, anchor: 'start' },
      { x: x - w / 2, y: y + 20, anchor: 'start' }, { x: x - w / 2, y: y - 40, anchor: 'start' },
    ];
    const spot = candidates.find((c) => !overlaps({ x: c.x, y: c.y, w, h: 20 })
      && c.x >= 0 && c.x + w <= W && c.y >= 0 && c.y + 20 <= H) || candidates[0];
    boxes.push({ x: spot.x, y: spot.y, w, h: 20 });
    group.append(h('rect', { x: spot.x, y: spot.y, width: w, height: 20, rx: 3, class: 'label-bg' }),
      h('text', { x: spot.x + 4, y: spot.y + 14, class: 'label' }, label.length > 34 ? `${label.slice(0, 33)}…` : label));
    svg.append(group);
  }
  return svg;
}

function troubleBadge(tier, text = t(`board.trouble.${tier}`)) {
  return h('span', { class: `badge trouble-badge trouble-${tier}`, dataset: { trouble: tier } }, text);
}

function mapLegend() {
  return h('ul', { class: 'legend', 'aria-label': t('board.map.legend') },
    TROUBLE_TIERS.map((k) => h('li', { dataset: { trouble: k } }, h('span', { class: 'dot', style: { background: TROUBLE_COLOURS[k] } }), t(`board.trouble.${k}`))),
    STATION_STATUSES.filter((s) => s !== 'data_loss').map((s) => h('li', {}, h('span', { class: 'dot', style: { background: STATUS_COLOURS[s] } }), t(`board.status.${s}`))),
    h('li', {}, h('span', { class: 'shape circle' }), t('kind.air')),
    h('li', {}, h('span', { class: 'shape diamond' }), t('kind.wastewater')),
    h('li', {}, h('span', { class: 'shape triangle' }), t('kind.emission')),
    h('li', {}, h('span', { class: 'ring' }), t('board.map.aqi_ring')),
    h('li', {}, h('span', { class: 'dot alert' }), t('board.map.alert_dot')));
}

function stationsView(root) {
  const alive = current();
  const mapBox = h('div', { class: 'map-box', id: 'station-map' });
  const body = h('tbody', { id: 'stations-body' });
  const summary = h('p', { class: 'summary', id: 'stations-summary' });
  const details = new Map();
  root.append(
    h('div', { class: 'view-head' }, h('h1', {}, t('board.stations.title')), summary),
    h('section', { class: 'card map-card' }, h('h2', { class: 'sr-only' }, t('board.map.label')), mapBox, mapLegend(),
      h('p', { class: 'muted small' }, t('board.map.note'))),
    h('div', { class: 'table-wrap' }, h('table', { class: 'stations', id: 'stations-table' },
      h('caption', { class: 'sr-only' }, t('board.stations.caption')),
      h('thead', {}, h('tr', {}, ['board.col.station', 'board.col.kind', 'board.col.status',
        'board.col.last_reading', 'board.col.values', 'board.col.aqi', 'board.col.open_alerts']
        .map((k) => h('th', { scope: 'col' }, t(k))))),
      body)),
    h('p', { class: 'muted small' }, t('board.station.values_note')));

  function rows(stations) {
    fill(body, ...stations.map((s) => h('tr', { class: s.worst_alert ? `trouble trouble-${s.worst_alert}` : '',
      dataset: { station: s.id, status: s.status, trouble: s.worst_alert || 'none' } },
      h('td', {}, h('a', { href: `#/stations/${encodeURIComponent(s.id)}` }, s.name),
        h('div', { class: 'muted small' }, `${s.id} · ${s.facility || ''} · ${s.province || ''}`)),
      h('td', {}, S.messages[`kind.${s.kind}`] ? t(`kind.${s.kind}`) : s.kind),
      h('td', {}, statusBadge(s.status)),
      h('td', {}, s.last_reading_at ? [timeEl(s.last_reading_at, 'short'),
        h('div', { class: 'muted small' }, fmtAgo(s.last_reading_at))] : t('board.never')),
      h('td', { class: 'values-cell' }, valueChips(details.get(s.id))),
      h('td', {}, s.kind === 'air' ? aqiBadge(s.aqi) : h('span', { class: 'muted' }, '—')),
      h('td', {}, alertCounts(s.open_alerts),
        s.worst_alert ? h('div', { class: 'small' }, troubleBadge(s.worst_alert)) : null))));
    labelCells($('#stations-table', root) || body.closest('table'));
  }

  async function load() {
    let data;
    try {
      data = await api('/stations');
    } catch (exc) {
      if (alive()) fill(mapBox, errorBox(exc));
      return;
    }
    if (!alive()) return;
    S.stations = data.items;
    const counts = Object.fromEntries(STATION_STATUSES.map((s) => [s, data.items.filter((x) => x.status === s).length]));
    const tiers = TROUBLE_TIERS.map((k) => [k, data.items.filter((x) => x.worst_alert === k).length]).filter(([, n]) => n);
    fill(summary, t('board.stations.summary', { total: data.items.length, ...counts }),
      tiers.length ? [' · ', t('board.trouble.summary'), ' ',
        tiers.map(([k, n], i) => [i ? ' ' : null, troubleBadge(k, t('board.trouble.count', { n, tier: t(`board.trouble.${k}`) }))])] : null);
    fill(mapBox, stationMap(data.items));
    rows(data.items);
    // Latest values against limits, a few stations at a time.
    const queue = [...data.items];
    await Promise.all([0, 1, 2, 3].map(async () => {
      while (queue.length && alive()) {
        const s = queue.shift();
        try {
          details.set(s.id, await api(`/stations/${encodeURIComponent(s.id)}`));
        } catch { /* left as … */ }
      }
    }));
    if (alive()) rows(data.items);
  }
  const later = debounce(load, 1500);
  const tick = setInterval(() => { if (alive()) load(); }, 30000);
  S.view = { name: 'stations', refresh: load, onEvent: later, dispose: () => { later.cancel(); clearInterval(tick); } };
  load();
}

// --- one station -------------------------------------------------------------------------------

function ratioBar(v) {
  const level = valueLevel(v);
  if (level.startsWith('status-')) return statusChip(v.status);
  if (v.ratio === null || v.ratio === undefined) {
    return h('span', { class: `level-text level-${level}` }, level === 'none' ? referenceText(v) : t(`board.level.${level}`));
  }
  const width = Math.min(v.ratio, 1.5) / 1.5 * 100;
  return h('div', { class: `ratio level-${level}`, role: 'meter', 'aria-valuemin': 0, 'aria-valuemax': 150,
    'aria-valuenow': Math.round(v.ratio * 100), 'aria-label': t('board.station.ratio_label', { param: v.param }) },
  h('div', { class: 'ratio-track' },
    h('div', { class: 'ratio-fill', style: { width: `${width}%` } }),
    h('div', { class: 'ratio-limit', style: { left: `${100 / 1.5}%` } })),
  h('span', { class: 'ratio-text' }, fmtPercent(v.ratio)),
  h('span', { class: 'muted small ratio-ref' }, referenceText(v)));
}

// Which regulation applies when and why, the AQI flag, and the project's design choices
// (configurable values that are not law), from GET /stations/{id}.
function regimeCard(station) {
  const lines = (station.regime || []).map((p) => p[`reason_${S.lang}`] || p.reason_vi);
  if (station.permit) lines.push(t('regime.permit', { citation: station.permit }));
  if (station.kind === 'air') {
    const flag = station.aqi_publishable === true ? 'yes' : station.aqi_publishable === false ? 'no' : 'unknown';
    lines.push(t(`aqi.publishable.${flag}`));
  }
  const choices = (station.design_choices || []).map((c) => c[`text_${S.lang}`] || c.text_vi);
  if (!lines.length && !choices.length) return null;
  return h('section', { class: 'card', id: 'regime' },
    h('h2', {}, t('regime.heading')),
    h('ul', { class: 'small' }, lines.map((line) => h('li', {}, line))),
    choices.length ? h('details', { id: 'design-choices' },
      h('summary', {}, t('choice.heading')),
      h('ul', { class: 'small' }, choices.map((c) => h('li', {}, c)))) : null);
}

/** The station log: maintenance windows and maintenance, repair, replacement, calibration
 * entries (30 days back and ahead); operators plan a window here. During a window fault,
 * calibration and data-loss alerts are suppressed; readings are kept and flagged. */
function stationLogCard(stationId, alive) {
  const list = h('div', { class: 'table-wrap' }, h('p', { class: 'muted' }, t('board.loading')));
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  async function refresh() {
    try {
      const data = await api(`/stations/${encodeURIComponent(stationId)}/log`);
      if (!alive()) return;
      fill(list, data.items.length ? h('table', { id: 'station-log-table' },
        h('thead', {}, h('tr', {}, ['board.log.kind', 'board.log.params', 'board.log.from', 'board.log.to',
          'board.log.reason', 'board.log.by'].map((k) => h('th', { scope: 'col' }, t(k))))),
        h('tbody', {}, data.items.map((e) => h('tr', { dataset: { kind: e.kind } },
          h('td', {}, t(`report.log.${e.kind}`)),
          h('td', {}, e.params.length ? e.params.join(', ') : t('report.whole_station')),
          h('td', {}, timeEl(e.from, 'short')), h('td', {}, timeEl(e.to, 'short')),
          h('td', {}, e.reason), h('td', {}, e.by)))))
        : h('p', { class: 'muted' }, t('board.log.none')));
    } catch (exc) {
      if (alive()) fill(list, errorBox(exc));
    }
  }
  const field = (id, key, input) => h('div', { class: 'field' }, h('label', { for: id }, t(key)), input);
  const form = canAct() ? h('form', { id: 'station-log-form', class: 'filters',
    onsubmit: async (event) => {
      event.preventDefault();
      const value = (name) => form.elements[name].value;
      const local = (text) => (text ? new Date(text).toISOString() : '');
      try {
        await api(`/stations/${encodeURIComponent(stationId)}/log`, { method: 'POST', body: {
          kind: value('kind'), from: local(value('from')), to: local(value('to')), reason: value('reason'),
          params: value('params').split(',').map((p) => p.trim()).filter(Boolean) } });
        error.hidden = true;
        form.reset();
        refresh();
      } catch (exc) {
        error.textContent = exc.message;
        error.hidden = false;
      }
    } },
  field('log-kind', 'board.log.kind', h('select', { id: 'log-kind', name: 'kind' },
    ['maintenance', 'repair', 'replacement', 'calibration'].map((k) => h('option', { value: k }, t(`report.log.${k}`))))),
  field('log-from', 'board.log.from', h('input', { id: 'log-from', name: 'from', type: 'datetime-local', required: true })),
  field('log-to', 'board.log.to', h('input', { id: 'log-to', name: 'to', type: 'datetime-local', required: true })),
  field('log-params', 'board.log.params', h('input', { id: 'log-params', name: 'params', placeholder: t('report.whole_station') })),
  field('log-reason', 'board.log.reason', h('input', { id: 'log-reason', name: 'reason', required: true, maxlength: 2000 })),
  h('button', { type: 'submit', class: 'primary' }, t('board.log.plan'))) : null;
  refresh();
  return h('section', { class: 'card', id: 'station-log' },
    h('h2', {}, t('board.log.heading')),
    h('p', { class: 'muted small' }, t('board.log.note')),
    list, form, error);
}

function limitText(limits, digits = null) {
  if (!limits?.length) return h('span', { class: 'muted' }, t('board.station.no_limit'));
  return limits.map((l) => h('div', { class: 'limit' },
    `${digits === null ? (S.lang === 'vi' && l.text_vi) || l.text || '' : boundText(l, digits)} (${t('board.alerts.mean_of', { averaging: averagingName(l.averaging) })})`,
    h('div', { class: 'muted small' }, [l.regulation, l.column ? `${t('alert.detail.column')} ${l.column}` : null]
      .filter(Boolean).join(' · ')),
    l.formula ? h('div', { class: 'small' }, h('code', {}, (S.lang === 'vi' && l.formula_vi) || l.formula)) : null,
    l.unverified ? h('span', { class: 'unverified', title: t('board.detail.unverified_help') }, t('board.unverified_mark')) : null));
}

function stationView(root, id, wanted = null) {
  const alive = current();
  let param = wanted; // #/stations/WW1/COD opens on COD (the parameter of an alert)
  let station = null;
  const charts = h('div', { class: 'charts', id: 'charts' });

  async function drawCharts() {
    const chosen = station.values.find((v) => v.param === param);
    const unit = chosen?.unit || '';
    const now = new Date();
    const spans = [['24h', 24], ['7d', 24 * 7]];
    fill(charts, ...spans.map(([span]) => h('figure', { class: 'chart card', id: `chart-${span}` },
      h('figcaption', {}, t(`board.chart.title_${span}`, { param, unit })),
      h('p', { class: 'muted' }, t('board.loading')))));
    await Promise.all(spans.map(async ([span, hours]) => {
      const from = new Date(now.getTime() - hours * 3600 * 1000);
      const query = new URLSearchParams({ param, from: from.toISOString(), to: now.toISOString(), interval: 'hour' });
      const figure = $(`#chart-${span}`, charts);
      try {
        const data = await api(`/stations/${encodeURIComponent(id)}/readings?${query}`);
        if (!alive() || !figure) return;
        fill(figure, figure.firstChild, lineChart({
          points: data.points, limits: data.limits, unit: data.unit || unit, from, to: now, span, param,
          flagged: data.flagged || [],
        }), (data.flagged || []).length ? flaggedLegend(data.flagged) : null);
      } catch (exc) {
        if (alive() && figure) fill(figure, figure.firstChild, errorBox(exc));
      }
    }));
  }

  async function load() {
    try {
      station = await api(`/stations/${encodeURIComponent(id)}`);
    } catch (exc) {
      if (alive()) fill(root, backLink('#/stations', 'board.nav.stations'), errorBox(exc));
      return;
    }
    if (!alive()) return;
    const listed = S.stations.find((s) => s.id === id);
    if (!param || !station.values.some((v) => v.param === param)) {
      param = (station.values.find((v) => v.limits?.length) || station.values[0])?.param || null;
    }
    const paramSelect = h('select', { id: 'chart-param', onchange: (e) => { param = e.target.value; drawCharts(); } },
      station.values.map((v) => h('option', { value: v.param, selected: v.param === param }, `${v.param} (${v.unit})`)));
    fill(root,
      backLink('#/stations', 'board.nav.stations'),
      h('div', { class: 'view-head' },
        h('h1', {}, `${station.name}`),
        h('div', { class: 'head-badges' }, statusBadge(station.status), ' ',
          h('span', { class: 'muted' }, `${station.id} · ${S.messages[`kind.${station.kind}`] ? t(`kind.${station.kind}`) : station.kind}`))),
      h('section', { class: 'card' },
        h('dl', { class: 'evidence facts' },
          h('dt', {}, t('board.station.facility')), h('dd', {}, station.facility || '—'),
          h('dt', {}, t('board.station.province')), h('dd', {}, station.province || '—'),
          // With the decimal comma, latitude and longitude are apart by a semicolon in Vietnamese.
          h('dt', {}, t('board.station.location')), h('dd', {},
            station.lat !== null && station.lat !== undefined ?
              `${fmtNumber(station.lat, 5)}${S.lang === 'vi' ? '; ' : ', '}${fmtNumber(station.lon, 5)}` : '—'),
          h('dt', {}, t('alert.detail.regulation')), h('dd', {},
            station.regulation ? `${station.regulation}${station.column ? ` · ${t('alert.detail.column')} ${station.column}` : ''}` : '—'),
          h('dt', {}, t('board.col.last_reading')), h('dd', {},
            station.last_reading_at ? [timeEl(station.last_reading_at), ` (${fmtAgo(station.last_reading_at)})`] : t('board.never')),
          h('dt', {}, t('board.station.cadence')), h('dd', {}, t('board.station.cadence_value', { minutes: fmtNumber(station.cadence_s / 60, 1) })),
          listed?.kind === 'air' ? [h('dt', {}, t('board.col.aqi')), h('dd', {}, aqiBadge(listed.aqi))] : null,
          listed ? [h('dt', {}, t('board.col.open_alerts')), h('dd', {},
            h('a', { href: '#/alerts', onclick: () => { S.filters.station = id; } }, alertCounts(listed.open_alerts)))] : null)),
      regimeCard(station),
      station.limit_problems?.length ? h('div', { class: 'warning', role: 'note' },
        h('strong', {}, t('board.station.limit_problems')),
        h('ul', {}, station.limit_problems.map((p) => h('li', {}, typeof p === 'string' ? p : JSON.stringify(p))))) : null,
      h('section', { class: 'card' },
        h('h2', {}, t('board.station.values')),
        h('div', { class: 'table-wrap' }, h('table', { class: 'values', id: 'values-table' },
          h('thead', {}, h('tr', {}, ['board.col.param', 'alert.detail.value', 'board.col.measured_at',
            'board.col.status', 'alert.detail.limit', 'board.col.ratio'].map((k) => h('th', { scope: 'col' }, t(k))))),
          h('tbody', {}, station.values.map((v) => h('tr', { dataset: { param: v.param, level: valueLevel(v) } },
            h('th', { scope: 'row' }, v.param),
            h('td', { class: 'num' }, v.value === null ? '—' : fmtValue(v.value, v.unit, valueDigits(v))),
            h('td', {}, timeEl(v.measured_at, 'short')),
            h('td', {}, v.status ? (S.messages[`status.${v.status}`] ? t(`status.${v.status}`) : v.status) : '—'),
            h('td', {}, limitText(v.limits, valueDigits(v))),
            h('td', {}, ratioBar(v))))))),
        h('p', { class: 'muted small' }, t('board.station.values_note'))),
      h('section', { class: 'card' },
        h('div', { class: 'chart-head' }, h('h2', {}, t('board.chart.heading')),
          h('div', { class: 'field inline' }, h('label', { for: 'chart-param' }, t('board.col.param')), paramSelect)),
        charts),
      stationLogCard(id, alive));
    labelCells($('#values-table', root));
    if (param) drawCharts();
  }

  const tick = setInterval(() => { if (alive() && station) load(); }, 60000);
  S.view = { name: 'station', refresh: load, dispose: () => clearInterval(tick) };
  root.append(h('p', { class: 'muted' }, t('board.loading')));
  load();
}

function flaggedLegend(runs) {
  const codes = [...new Set(runs.map((r) => r.status))].filter((c) => c !== 'holdoff').sort();
  const held = runs.some((r) => r.status === 'holdoff');
  return h('div', { class: 'flagged-legends' },
    codes.length ? h('p', { class: 'small flagged-legend' }, t('board.chart.flagged'), ' ', codes.map((c) => [statusChip(c), ' '])) : null,
    held ? h('p', { class: 'small flagged-legend holdoff-legend' }, statusChip('holdoff'), ' ', t('board.chart.holdoff')) : null);
}

/** A nice round step for about `count` ticks over `span`. */
function niceStep(span, count) {
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
}

/** A line chart of hourly means, their min–max band, and the limits as dashed lines. */
function lineChart({ points, limits, unit, from, to, span, param, flagged = [] }) {
  const W = 800;
  const H = 260;
  const m = { l: 56, r: 16, t: 14, b: 30 };
  const series = points.map((p) => ({ t: parseTime(p.t), v: p.value, lo: p.min ?? p.value, hi: p.max ?? p.value }))
    .filter((p) => p.t && p.v !== null && p.v !== undefined);
  const svg = h('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart-svg', role: 'img',
    'aria-label': t('board.chart.aria', { param, span: t(`board.chart.span_${span}`), n: series.length }) });
  const x0 = from.getTime();
  const x1 = to.getTime();
  const lines = (limits || []).flatMap((l) => [
    l.maximum !== null && l.maximum !== undefined ? { value: l.maximum, averaging: l.averaging, kind: 'max' } : null,
    l.minimum !== null && l.minimum !== undefined ? { value: l.minimum, averaging: l.averaging, kind: 'min' } : null,
  ]).filter(Boolean);
  const values = [...series.flatMap((p) => [p.lo, p.hi]), ...lines.map((l) => l.value)];
  let yMin = Math.min(0, ...values);
  let yMax = values.length ? Math.max(...values) : 1;
  if (yMax <= yMin) yMax = yMin + 1;
  const step = niceStep((yMax - yMin) * 1.1, 5);
  yMin = Math.floor(yMin / step) * step;
  yMax = Math.ceil((yMax * 1.08) / step) * step;
  const X = (ms) => m.l + ((ms - x0) / (x1 - x0)) * (W - m.l - m.r);
  const Y = (v) => H - m.b - ((v - yMin) / (yMax - yMin)) * (H - m.t - m.b);

  const axes = h('g', { class: 'axes' });
  for (let v = yMin; v <= yMax + step / 2; v += step) {
    axes.append(h('line', { x1: m.l, x2: W - m.r, y1: Y(v), y2: Y(v), class: 'gridline' }),
      h('text', { x: m.l - 6, y: Y(v) + 4, 'text-anchor': 'end' }, fmtNumber(v, 2)));
  }
  const tickMs = (span === '24h' ? 3 : 24) * 3600 * 1000;
  for (let ms = Math.ceil((x0 + TZ_OFFSET_MS) / tickMs) * tickMs - TZ_OFFSET_MS; ms <= x1; ms += tickMs) {
    axes.append(h('line', { x1: X(ms), x2: X(ms), y1: m.t, y2: H - m.b, class: 'gridline' }),
      h('text', { x: X(ms), y: H - m.b + 18, 'text-anchor': 'middle' }, fmtTime(new Date(ms), span === '24h' ? 'time' : 'day')));
  }
  axes.append(h('text', { x: 4, y: m.t + 2, class: 'unit' }, unit));
  svg.append(axes);
  // Calibration and fault periods: shaded, never drawn as data.
  const shaded = h('g', { class: 'flagged' });
  for (const run of flagged) {
    const a = Math.max(x0, parseTime(run.start).getTime());
    const b = Math.min(x1, parseTime(run.end).getTime());
    if (b <= a) continue;
    shaded.append(h('rect', { x: X(a), y: m.t, width: Math.max(2, X(b) - X(a)), height: H - m.t - m.b,
      class: `status-${run.status}`, dataset: { status: run.status } },
    h('title', {}, `${statusChip(run.status).textContent}: ${fmtTime(run.start)} – ${fmtTime(run.end, 'time')} (${run.count})`)));
  }
  svg.append(shaded);

  // Segments break where an hour (or more) is missing.
  const segments = [];
  let segment = [];
  for (const p of series) {
    if (segment.length && p.t - segment[segment.length - 1].t > 1.5 * 3600 * 1000) {
      segments.push(segment);
      segment = [];
    }
    segment.push(p);
  }
  if (segment.length) segments.push(segment);
  for (const seg of segments) {
    const band = [...seg.map((p) => `${X(p.t)},${Y(p.hi)}`), ...seg.slice().reverse().map((p) => `${X(p.t)},${Y(p.lo)}`)];
    svg.append(h('polygon', { points: band.join(' '), class: 'band' }));
    svg.append(h('polyline', { points: seg.map((p) => `${X(p.t)},${Y(p.v)}`).join(' '), class: 'series' }));
  }
  const dots = h('g', { class: 'dots' });
  for (const p of series) {
    const over = lines.some((l) => (l.kind === 'max' ? p.v > l.value : p.v < l.value));
    dots.append(h('circle', { cx: X(p.t), cy: Y(p.v), r: series.length > 60 ? 1.8 : 3, class: over ? 'over' : '' },
      h('title', {}, `${fmtTime(p.t)} · ${fmtNumber(p.v, 3)} ${unit}`)));
  }
  svg.append(dots);
  // Limit labels never overlap: each sits at least 13 px from the one above it.
  const labelY = new Map();
  [...lines].map((l, i) => ({ i, y: Y(l.value) - 5 })).sort((a, b) => a.y - b.y).reduce((prev, item) => {
    const y = Math.max(item.y, prev + 13, m.t + 10);
    labelY.set(item.i, y);
    return y;
  }, -Infinity);
  lines.forEach((l, i) => {
    const y = Y(l.value);
    svg.append(h('g', { class: `limit-line limit-${l.averaging === '1h' ? 'hour' : 'other'}`, dataset: { value: l.value } },
      h('line', { x1: m.l, x2: W - m.r, y1: y, y2: y, 'stroke-dasharray': i % 2 ? '3 4' : '8 5' }),
      h('text', { x: W - m.r - 4, y: labelY.get(i), 'text-anchor': 'end' },
        t(l.kind === 'max' ? 'board.chart.limit_max' : 'board.chart.limit_min',
          { value: fmtNumber(l.value, 3), unit, averaging: averagingName(l.averaging) }))));
  });
  if (!series.length) {
    svg.append(h('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'no-data' }, t('board.chart.no_data')));
  }
  return svg;
}

// --- provincial indicators ---------------------------------------------------------------------

function localDate(date) {
  return new Date(date.getTime() + TZ_OFFSET_MS).toISOString().slice(0, 10);
}

function indicatorsView(root) {
  const alive = current();
  const today = new Date();
  const yearStart = `${localDate(today).slice(0, 4)}-01-01`;
  const out = h('div', { id: 'indicators-out' });
  const form = h('form', { class: 'filters', onsubmit: (e) => { e.preventDefault(); load(); } },
    h('div', { class: 'field' }, h('label', { for: 'ind-from' }, t('board.indicators.from')),
      h('input', { id: 'ind-from', type: 'date', value: yearStart, required: true })),
    h('div', { class: 'field' }, h('label', { for: 'ind-to' }, t('board.indicators.to')),
      h('input', { id: 'ind-to', type: 'date', value: localDate(today), required: true })),
    h('div', { class: 'field' }, h('button', { type: 'submit', class: 'primary' }, t('board.indicators.show'))));
  root.append(h('div', { class: 'view-head' }, h('h1', {}, t('board.indicators.title'))),
    h('p', { class: 'muted' }, t('board.indicators.intro')), form, out);

  async function load() {
    const from = $('#ind-from').value;
    const to = $('#ind-to').value;
    if (!from || !to) return;
    // "to" is inclusive for people: the end of that local day.
    const end = new Date(new Date(`${to}T00:00:00+07:00`).getTime() + 86400000);
    const query = new URLSearchParams({ from: `${from}T00:00:00+07:00`, to: end.toISOString() });
    fill(out, h('p', { class: 'muted' }, t('board.loading')));
    let data;
    try {
      data = await api(`/indicators?${query}`);
    } catch (exc) {
      if (!alive()) return;
      fill(out, exc instanceof ApiFailure && exc.status === 404 && !exc.code
        ? h('p', { class: 'notice', role: 'status', id: 'indicators-missing' }, t('board.indicators.unavailable'))
        : errorBox(exc));
      return;
    }
    if (!alive()) return;
    const i23 = data.indicator_23 || {};
    const i22 = data.indicator_22 || [];
    // The period as chosen (both days inclusive); the API's end is the next midnight.
    const dmy = (iso) => iso.split('-').reverse().join('/');
    const period = `${dmy(from)} – ${dmy(to)}`;
    fill(out,
      h('p', { class: 'muted' }, t('board.indicators.period', { period })),
      h('section', { class: 'card', id: 'indicator-23' },
        h('h2', {}, t('board.indicators.i23_title')),
        h('p', { class: 'muted small' }, t('board.indicators.i23_help')),
        h('p', { class: 'big-number' }, fmtPercent(i23.value),
          h('span', { class: 'muted' }, ' ', t('board.indicators.i23_counts',
            { transmitted: fmtNumber(i23.transmitted, 0), required: fmtNumber(i23.required, 0) }))),
        i23.by_province?.length ? h('div', { class: 'table-wrap' }, h('table', { id: 'indicator-23-provinces' },
          h('caption', {}, t('board.indicators.by_province')),
          h('thead', {}, h('tr', {}, ['board.station.province', 'board.indicators.share', 'board.indicators.transmitted']
            .map((k) => h('th', { scope: 'col' }, t(k))))),
          h('tbody', {}, i23.by_province.map((p) => h('tr', {},
            h('td', {}, p.province || '—'), h('td', { class: 'num' }, fmtPercent(p.value)),
            h('td', { class: 'num' }, t('board.indicators.i23_counts',
              { transmitted: fmtNumber(p.transmitted, 0), required: fmtNumber(p.required, 0) }))))))) : null,
        h('div', { class: 'table-wrap' }, h('table', {},
          h('caption', {}, t('board.indicators.facilities')),
          h('thead', {}, h('tr', {}, ['board.indicators.facility', 'board.station.province', 'board.indicators.stations',
            'board.indicators.transmitted', 'alert.detail.completeness'].map((k) => h('th', { scope: 'col' }, t(k))))),
          h('tbody', {}, (i23.facilities || []).map((f) => h('tr', {},
            h('td', {}, f.facility), h('td', {}, f.province || '—'),
            h('td', { class: 'num' }, Array.isArray(f.stations) ? f.stations.join(', ') : fmtNumber(f.stations, 0)),
            h('td', {}, f.transmitted === true ? t('board.yes') : f.transmitted === false ? t('board.no')
              : fmtNumber(f.transmitted, 0)),
            h('td', { class: 'num' }, fmtPercent(f.completeness)))))))),
      h('section', { class: 'card', id: 'indicator-22' },
        h('h2', {}, t('board.indicators.i22_title')),
        h('p', { class: 'muted small' }, t('board.indicators.i22_help')),
        h('div', { class: 'table-wrap' }, h('table', {},
          h('thead', {}, h('tr', {}, ['board.station.province', 'board.indicators.urban_population',
            'board.indicators.air_stations', 'board.indicators.per_100k'].map((k) => h('th', { scope: 'col' }, t(k))))),
          h('tbody', {}, i22.map((p) => h('tr', { dataset: { province: p.province || '' } },
            h('td', {}, p.province || '—',
              p.source ? h('div', { class: 'muted small' }, t('board.indicators.source',
                { source: S.lang === 'vi' && p.source_vi ? p.source_vi : p.source })) : null),
            h('td', { class: 'num' }, fmtNumber(p.urban_population, 0),
              p.illustrative ? h('div', { class: 'unverified small', title: t('board.indicators.illustrative_help') },
                t('board.indicators.illustrative')) : null),
            h('td', { class: 'num' }, fmtNumber(p.air_stations, 0)),
            h('td', { class: 'num' }, p.per_100k !== null && p.per_100k !== undefined ? fmtNumber(p.per_100k, 3)
              : p.value !== null && p.value !== undefined
                ? t('board.indicators.per_value', { value: fmtNumber(p.value, 3), per: fmtNumber(p.per, 0) }) : '—'))))))));
  }
  S.view = { name: 'indicators' };
  load();
}

// --- reports: an inspector's exports ---------------------------------------------------------

const REPORT_FORMATS = { exceedances: ['pdf', 'xlsx', 'csv'], completeness: ['csv'], indicators: ['csv'] };

/** The file name the server chose (Content-Disposition filename*, else filename). */
function downloadName(response, fallback) {
  const header = response.headers.get('Content-Disposition') || '';
  const utf8 = /filename\*=UTF-8''([^;]+)/i.exec(header);
  if (utf8) return decodeURIComponent(utf8[1]);
  const plain = /filename="([^"]+)"/i.exec(header);
  return plain ? plain[1] : fallback;
}

function fmtBytes(n) {
  return n >= 1024 * 1024 ? `${fmtNumber(n / 1024 / 1024, 1)} MB` : `${fmtNumber(Math.max(1, n / 1024), 0)} kB`;
}

function reportsView(root) {
  const alive = current();
  const today = localDate(new Date());
  const monthStart = `${today.slice(0, 8)}01`;
  const status = h('div', { id: 'report-status', role: 'status', 'aria-live': 'polite' });
  const facilities = [...new Set(S.stations.map((s) => s.facility).filter(Boolean))].sort();
  const targetSelect = h('select', { id: 'report-target', required: true },
    h('optgroup', { label: t('board.reports.station_group') },
      S.stations.map((s) => h('option', { value: `station:${s.id}` }, `${s.id} · ${s.name}`))),
    facilities.length ? h('optgroup', { label: t('board.reports.facility_group') },
      facilities.map((f) => h('option', { value: `facility:${f}` }, f))) : null);
  const formatSelect = h('select', { id: 'report-format' });
  const kindSelect = h('select', { id: 'report-kind', onchange: () => syncKind() },
    Object.keys(REPORT_FORMATS).map((k) => h('option', { value: k }, t(`board.reports.kind_${k}`))));
  const field = (id, key, control) => h('div', { class: 'field', id: `${id}-field` }, h('label', { for: id }, t(key)), control);
  const submit = h('button', { type: 'submit', class: 'primary', id: 'report-submit', disabled: !canExport() },
    t('board.reports.download'));
  const form = h('form', { class: 'filters report-form', id: 'report-form', onsubmit: (e) => { e.preventDefault(); download(); } },
    field('report-kind', 'board.reports.kind', kindSelect),
    field('report-target', 'board.reports.target', targetSelect),
    field('report-from', 'board.reports.from', h('input', { id: 'report-from', type: 'date', value: monthStart, required: true })),
    field('report-to', 'board.reports.to', h('input', { id: 'report-to', type: 'date', value: today, required: true })),
    field('report-format', 'board.reports.format', formatSelect),
    field('report-lang', 'board.reports.lang', h('select', { id: 'report-lang' },
      h('option', { value: 'vi', selected: S.lang === 'vi' }, t('board.lang.vi')),
      h('option', { value: 'en', selected: S.lang === 'en' }, t('board.lang.en')))),
    h('div', { class: 'field' }, submit));

  function syncKind() {
    const kind = kindSelect.value;
    fill(formatSelect, REPORT_FORMATS[kind].map((f) => h('option', { value: f }, f.toUpperCase())));
    $('#report-target-field', root).hidden = kind === 'indicators';
  }

  async function download() {
    const kind = kindSelect.value;
    const from = $('#report-from', root).value;
    const to = $('#report-to', root).value;
    if (!from || !to || to < from) {
      fill(status, h('p', { class: 'error', role: 'alert' }, t('board.reports.period_invalid')));
      return;
    }
    // Both days are Vietnamese calendar days, the end one included.
    const end = new Date(new Date(`${to}T00:00:00+07:00`).getTime() + 86400000);
    const query = new URLSearchParams({ from: `${from}T00:00:00+07:00`, to: `${localDate(end)}T00:00:00+07:00`,
      format: formatSelect.value, lang: $('#report-lang', root).value });
    if (kind !== 'indicators') {
      const [scope, ...rest] = targetSelect.value.split(':');
      query.set(scope, rest.join(':'));
    }
    const path = kind === 'indicators' ? '/indicators' : `/reports/${kind}`;
    submit.disabled = true;
    fill(status, h('p', { class: 'muted' }, t('board.reports.working')));
    try {
      const response = await fetch(`${API}${path}?${query}`, { headers: { Authorization: `Bearer ${S.token}` }, cache: 'no-store' });
      if (!response.ok) {
        let body = null;
        try { body = await response.json(); } catch { body = null; }
        if (response.status === 401) signOut(t('board.login.expired'));
        throw new ApiFailure(response.status, body);
      }
      const blob = await response.blob();
      if (!alive()) return;
      const name = downloadName(response, `${kind}.${formatSelect.value}`);
      const url = URL.createObjectURL(blob);
      const link = h('a', { href: url, download: name, id: 'report-file' }, t('board.reports.again'));
      fill(status, h('p', { class: 'notice' }, t('board.reports.done', { file: name, size: fmtBytes(blob.size) }), ' ', link));
      link.click();
    } catch (exc) {
      if (alive()) fill(status, errorBox(exc));
    } finally {
      submit.disabled = !canExport();
    }
  }

  // append(), not root.append(): the DOM's would write an absent notice as the text "null".
  append(root, [h('div', { class: 'view-head' }, h('h1', {}, t('board.reports.title'))),
    h('p', { class: 'muted' }, t('board.reports.intro')),
    canExport() ? null : h('p', { class: 'notice', id: 'report-no-export' }, t('board.reports.no_export')),
    form, h('p', { class: 'muted small' }, t('board.reports.times_note')), status]);
  syncKind();
  if (!S.stations.length) {
    api('/stations').then((data) => {
      S.stations = data.items;
      if (alive() && data.items.length) route();
    }).catch(() => {});
  }
  S.view = { name: 'reports' };
}

// --- start -------------------------------------------------------------------------------------

function wire() {
  $('#login-form').addEventListener('submit', onLogin);
  $('#logout').addEventListener('click', () => signOut());
  for (const button of $$('[data-lang]')) button.addEventListener('click', () => switchLanguage(button.dataset.lang));
  $('#sound-toggle').addEventListener('change', (e) => setSound(e.target.checked));
  $('#critical-dismiss').addEventListener('click', dismissBanner);
  $('#critical-link').addEventListener('click', () => setTimeout(dismissBanner, 0));
  $('#act-form').addEventListener('submit', submitAct);
  $('#act-cancel').addEventListener('click', () => { $('#act-dialog').close(); dialogAction = null; });
  $('#view').addEventListener('click', (e) => {
    const button = e.target.closest('button[data-action]');
    if (!button) return;
    openActDialog(button.dataset.alertId, button.dataset.action, rowSummary(button.dataset.alertId));
  });
  window.addEventListener('hashchange', route);
}

async function main() {
  wire();
  try {
    await loadMessages(S.lang);
  } catch {
    document.body.dataset.view = 'error';
    $('#main').replaceChildren(h('p', { class: 'error', role: 'alert' },
      'Không tải được bảng dịch / could not load the translation table.'));
    return;
  }
  if (S.token) {
    try {
      S.user = await api('/me');
      sessionStorage.setItem('quantrac.user', JSON.stringify(S.user));
      startSession();
    } catch {
      if (S.token) signOut();
    }
  } else {
    showLogin();
  }
}

main();
