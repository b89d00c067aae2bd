// Drives the router's /dashboard page in headless Chromium (playwright-core) while handsets
// (`ws` + notepack 0.0.2, as the fleet) come and go; run by tests/browser.rs.
//
// Environment: BASE_URL (http://127.0.0.1:PORT), DASHBOARD_TOKEN (a dashboard token listing
// the groups north and south), TOKEN_A / TOKEN_B / TOKEN_D (handsets driver-a in north,
// driver-b in south, driver-d in north), SHOTS (a directory for screenshots), USER_DATA_DIR (a
// fresh Chromium profile), TIMEOUT_MS.
//
// Prints one JSON line per step. At step "restart" it waits for a line "restarted" on stdin (the
// test kills the router and starts a new one on the same port meanwhile). Exits 0 after "done",
// 2 on an error, 3 when everything takes longer than TIMEOUT_MS.
'use strict';

const path = require('path');
const readline = require('readline');
const WebSocket = require('ws');
const notepack = require('notepack');
const { launch } = require('./launch');

let step = 'start';
const emit = (line) => process.stdout.write(`${JSON.stringify(line)}\n`);
let browser = null;
function fail(message) {
  emit({ step: 'failed', during: step, message });
  if (browser) browser.close().catch(() => {}).finally(() => process.exit(2));
  else process.exit(2);
}
process.on('uncaughtException', (e) => fail(e.stack || String(e)));
process.on('unhandledRejection', (e) => fail((e && e.stack) || String(e)));
const env = (name) => process.env[name] || fail(`${name} is not set`);

const timeout = Number(process.env.TIMEOUT_MS || 45000);
setTimeout(() => {
  emit({ step: 'timeout', during: step, afterMs: timeout });
  process.exit(3);
}, timeout).unref();

const WAIT = 10000;
const base = env('BASE_URL');
const wsUrl = `${base.replace(/^http/, 'ws')}/ws`;
const shots = env('SHOTS');

/** Lines from the test, one promise per line asked for. */
const lines = [];
const waiting = [];
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (waiting.length) waiting.shift()(line);
  else lines.push(line);
});
const nextLine = () => new Promise((resolve, reject) => {
  if (lines.length) return resolve(lines.shift());
  const timer = setTimeout(() => reject(new Error('no line from the test in time')), WAIT * 2);
  waiting.push((line) => { clearTimeout(timer); resolve(line); });
  return undefined;
});

/** A handset: headers as the Android SDK sends them. */
function handset(token, deviceId) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl, { headers: { token, device_id: deviceId } });
    const timer = setTimeout(() => reject(new Error(`handset ${deviceId} did not open`)), WAIT);
    ws.on('open', () => { clearTimeout(timer); resolve(ws); });
    ws.on('error', (e) => { clearTimeout(timer); reject(e); });
  });
}
const send = (ws, frame) => new Promise((resolve, reject) => {
  ws.send(notepack.encode(frame), (e) => (e ? reject(e) : resolve()));
});
function close(ws) {
  return new Promise((resolve) => {
    ws.on('close', resolve);
    ws.close();
  });
}

/** Asks the group API (as the dashboard) until `user` is listed in `group`. */
async function listed(group, user) {
  const deadline = Date.now() + WAIT;
  for (;;) {
    const reply = await fetch(`${base}/api/presence?group=${encodeURIComponent(group)}`, {
      headers: { Authorization: `Bearer ${env('DASHBOARD_TOKEN')}` },
    });
    const body = await reply.json();
    if ((body.users || []).some((u) => u.userId === user)) return;
    if (Date.now() > deadline) throw new Error(`${user} never listed in ${group}: ${JSON.stringify(body)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The rows the page shows (only those in the scroll window exist). */
const rowsOf = (page) => page.evaluate(() => [...document.querySelectorAll('#list .row:not([hidden])')]
  .map((r) => ({
    user: r.dataset.user,
    status: r.dataset.status,
    cells: [...r.children].map((c) => c.textContent),
  })));
const counts = (page) => page.evaluate(() => ({
  state: document.getElementById('state').dataset.state,
  snapshots: Number(document.getElementById('state').dataset.snapshots),
  online: document.getElementById('online-count').textContent,
  onAir: document.getElementById('onair-count').textContent,
  shown: document.getElementById('shown-count').textContent,
  closeReason: document.getElementById('close-reason').textContent,
}));
/** Waits until the visible rows are exactly `users` (in any order). */
const showsExactly = (page, users) => page.waitForFunction((want) => {
  const got = [...document.querySelectorAll('#list .row:not([hidden])')].map((r) => r.dataset.user).sort();
  return JSON.stringify(got) === JSON.stringify([...want].sort());
}, users, { timeout: WAIT });
/** Waits until `user`'s row has `want.status` (when given) and cells (by index) equal to
 * `want.equals`, containing `want.includes`, starting with `want.startsWith`. (Data, not code:
 * the page's CSP forbids eval, which a string predicate would need.) */
const rowWhere = (page, user, want) => page.waitForFunction(([u, w]) => {
  const row = [...document.querySelectorAll('#list .row:not([hidden])')].find((r) => r.dataset.user === u);
  if (!row) return false;
  const cells = [...row.children].map((c) => c.textContent);
  const all = (kind, test) => Object.entries(w[kind] || {}).every(([i, v]) => test(cells[Number(i)], v));
  return (w.status === undefined || row.dataset.status === w.status)
    && all('equals', (c, v) => c === v)
    && all('includes', (c, v) => c.includes(v))
    && all('startsWith', (c, v) => c.startsWith(v));
}, [user, want], { timeout: WAIT });

async function shot(page, name) {
  const file = path.join(shots, `${name}.png`);
  await page.screenshot({ path: file, timeout: WAIT });
  return file;
}

async function main() {
  step = 'handset before the page';
  const a = await handset(env('TOKEN_A'), 'phone-a');
  await listed('north', 'driver-a');

  step = 'launch';
  browser = await launch(env('USER_DATA_DIR'), WAIT * 2);
  const page = await browser.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // Chromium asks for /favicon.ico by itself (a 404): not the page's doing.
    if (m.type() === 'error' && !m.location().url.endsWith('/favicon.ico')) problems.push(`console: ${m.text()} (${m.location().url})`);
  });
  const scripts = {};
  page.on('response', (r) => {
    if (r.url().endsWith('.js')) scripts[new URL(r.url()).pathname] = r.headers();
  });

  step = 'load';
  const response = await page.goto(`${base}/dashboard?token=${env('DASHBOARD_TOKEN')}`, { timeout: WAIT });
  await page.waitForSelector('#state[data-state="live"]', { timeout: WAIT });
  emit({
    step: 'loaded',
    status: response.status(),
    headers: response.headers(),
    scripts,
    url: page.url(),
    stored: await page.evaluate(() => sessionStorage.getItem('presence-dashboard-token')),
    groups: await page.$$eval('#group option', (os) => os.map((o) => [o.value, o.textContent])),
  });

  step = 'snapshot';
  await showsExactly(page, ['driver-a']);
  emit({ step: 'snapshot', rows: await rowsOf(page), counts: await counts(page), shot: await shot(page, '1-snapshot') });

  step = 'online';
  // A device id and status text made to look like markup: they must show as text.
  const b = await handset(env('TOKEN_B'), '<img src=x onerror="window.pwned=1">phone-b');
  await send(b, [0, 34, 'driver-b', 0, { availability: 'busy', statusText: '<b>on a call</b>' }]);
  await rowWhere(page, 'driver-b', { status: 'online', equals: { 2: 'busy', 3: '<b>on a call</b>' } });
  emit({
    step: 'online',
    rows: await rowsOf(page),
    counts: await counts(page),
    markup: await page.evaluate(() => ({
      pwned: window.pwned === 1,
      elements: document.querySelectorAll('#list img, #list b').length,
    })),
    shot: await shot(page, '2-online'),
  });

  step = 'on-air';
  await send(a, [0, 1, 'driver-a', 'north', 1702281234567]);
  await rowWhere(page, 'driver-a', { includes: { 6: 'group north' } });
  emit({ step: 'on-air', rows: await rowsOf(page), counts: await counts(page), shot: await shot(page, '3-on-air') });
  await send(a, [0, 2, 'driver-a', 'north']);
  await rowWhere(page, 'driver-a', { equals: { 6: '' } });
  emit({ step: 'off-air', counts: await counts(page) });

  step = 'group filter';
  await page.selectOption('#group', 'north');
  await showsExactly(page, ['driver-a']);
  const north = await rowsOf(page);
  const northShot = await shot(page, '4-group-north');
  await page.selectOption('#group', 'south');
  await showsExactly(page, ['driver-b']);
  emit({ step: 'group-filter', north, south: await rowsOf(page), shots: [northShot, await shot(page, '5-group-south')] });
  await page.selectOption('#group', '');
  await showsExactly(page, ['driver-a', 'driver-b']);

  step = 'search';
  await page.fill('#search', 'PHONE-A');
  await showsExactly(page, ['driver-a']);
  const byDevice = await rowsOf(page);
  await page.fill('#search', 'driver-b');
  await showsExactly(page, ['driver-b']);
  emit({ step: 'search', byDevice, byUser: await rowsOf(page) });
  await page.fill('#search', '');

  step = 'sort';
  await page.click('button[data-sort="user"]'); // again: descending
  await page.waitForFunction(() => [...document.querySelectorAll('#list .row:not([hidden])')]
    .sort((x, y) => parseFloat(x.style.top) - parseFloat(y.style.top))[0]?.dataset.user === 'driver-b', null, { timeout: WAIT });
  emit({ step: 'sort', order: await page.evaluate(() => [...document.querySelectorAll('#list .row:not([hidden])')]
    .sort((x, y) => parseFloat(x.style.top) - parseFloat(y.style.top)).map((r) => r.dataset.user)) });
  await page.click('button[data-sort="user"]');

  step = 'offline';
  await close(b);
  await rowWhere(page, 'driver-b', { status: 'offline', startsWith: { 5: 'last seen' } });
  emit({ step: 'offline', rows: await rowsOf(page), counts: await counts(page), shot: await shot(page, '6-offline') });

  step = 'restart';
  // Every state the page shows from now on.
  await page.evaluate(() => {
    window.seenStates = [];
    const state = document.getElementById('state');
    new MutationObserver(() => window.seenStates.push(state.dataset.state))
      .observe(state, { attributes: true, attributeFilter: ['data-state'] });
  });
  emit({ step: 'restart' });
  const answer = await nextLine();
  if (answer !== 'restarted') throw new Error(`the test said ${answer}`);
  const d = await handset(env('TOKEN_D'), 'phone-d');
  // The new router knows only driver-d: the fresh snapshot replaced the view.
  await page.waitForFunction(() => Number(document.getElementById('state').dataset.snapshots) >= 2
    && document.getElementById('state').dataset.state === 'live', null, { timeout: WAIT });
  await showsExactly(page, ['driver-d']);
  emit({
    step: 'resynced',
    rows: await rowsOf(page),
    counts: await counts(page),
    states: await page.evaluate(() => window.seenStates),
    shot: await shot(page, '7-resynced'),
  });

  await close(d);
  a.terminate();
  emit({ step: 'done', problems });
  await browser.close();
  process.exit(0);
}

main();
