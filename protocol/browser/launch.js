// Debian's headless Chromium for the browser tests, as playwright-core drives it: a fresh
// profile (playwright takes it as the persistent context's directory, not as an argument) and
// the flags a closed network needs.
'use strict';

const { chromium } = require('playwright-core');

/** A browser context on a fresh profile in `userDataDir`. */
exports.launch = (userDataDir, timeout) => chromium.launchPersistentContext(userDataDir, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  timeout,
  viewport: { width: 1280, height: 720 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
