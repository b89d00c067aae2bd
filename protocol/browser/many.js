// The /dashboard page with many users online (the test connects them first): it must list them
// all while drawing only the rows in view. Run by tests/browser.rs.
//
// Environment: BASE_URL, DASHBOARD_TOKEN, ONLINE (how many users are online), FIRST and LAST
// (the first and last user ids in sort order), USER_DATA_DIR, SHOTS, TIMEOUT_MS. Prints one
// JSON line per step; exits 0 after "done", 2 on an error, 3 past TIMEOUT_MS.
'use strict';

const path = require('path');
const { launch } = require('./launch');

let step = 'start';
const emit = (line) => process.stdout.write(`${JSON.stringify(line)}\n`);
const fail = (message) => { emit({ step: 'failed', during: step, message }); process.exit(2); };
process.on('uncaughtException', (e) => fail(e.stack || String(e)));
process.on('unhandledRejection', (e) => fail((e && e.stack) || String(e)));
const env = (name) => process.env[name] || fail(`${name} is not set`);
const timeout = Number(process.env.TIMEOUT_MS || 60000);
setTimeout(() => { emit({ step: 'timeout', during: step, afterMs: timeout }); process.exit(3); }, timeout).unref();
const WAIT = 30000;

/** The users of the rows the page has drawn. */
const drawn = (page) => page.$$eval('#list .row:not([hidden])', (rows) => rows.map((r) => r.dataset.user));

async function main() {
  step = 'launch';
  const browser = await launch(env('USER_DATA_DIR'), WAIT);
  const page = await browser.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));

  step = 'snapshot';
  await page.goto(`${env('BASE_URL')}/dashboard?token=${env('DASHBOARD_TOKEN')}`, { timeout: WAIT });
  await page.waitForFunction((n) => document.getElementById('online-count').textContent === n,
    env('ONLINE'), { timeout: WAIT });
  emit({ step: 'listed', online: await page.textContent('#online-count'), drawn: await drawn(page) });

  step = 'scroll to the end';
  await page.$eval('#list', (list) => { list.scrollTop = list.scrollHeight; });
  await page.waitForFunction((last) => [...document.querySelectorAll('#list .row:not([hidden])')]
    .some((r) => r.dataset.user === last), env('LAST'), { timeout: WAIT });
  emit({ step: 'scrolled', drawn: await drawn(page), shot: await page.screenshot({ path: path.join(env('SHOTS'), 'many-end.png') }).then(() => 'many-end.png') });

  step = 'search';
  await page.fill('#search', env('FIRST'));
  await page.waitForFunction((first) => {
    const rows = [...document.querySelectorAll('#list .row:not([hidden])')];
    return rows.length === 1 && rows[0].dataset.user === first;
  }, env('FIRST'), { timeout: WAIT });
  emit({ step: 'searched', drawn: await drawn(page), shown: await page.textContent('#shown-count') });

  emit({ step: 'done', problems });
  await browser.close();
  process.exit(0);
}

main();
