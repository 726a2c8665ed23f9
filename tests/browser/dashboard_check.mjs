// Drives Debian's headless Chromium (through playwright-core, no browser
// download) against a live frugal-coordinator dashboard and a comparison
// page: no console errors and no request leaving the coordinator, the charts
// gain points as rounds commit, the clients table has one row per client in
// a live state, a client killed with SIGKILL turns "gone", and the comparison
// page draws every run. Started by dashboard_browser_test.cpp (ctest, label
// e2e), which owns the coordinator and client processes.
//   node dashboard_check.mjs --url URL --clients N --kill-pid PID --kill-name NAME
//        --compare FILE --labels A,B [--screenshots DIR] [--timeout-s 90]
import { chromium } from 'playwright-core';
import { pathToFileURL } from 'node:url';

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const timeoutMs = 1000 * Number(args['timeout-s'] || 90);
const liveStates = new Set(['connected', 'training', 'uploading', 'idle', 'ineligible']);
const failures = [];
const log = (...m) => console.log('[dashboard_check]', ...m);

function fail(what) {
  failures.push(what);
  log('FAIL:', what);
}

// Polls `probe` (in the page) until `ok(value)`; returns the last value.
async function waitFor(page, what, probe, ok, arg) {
  const end = Date.now() + timeoutMs;
  let value;
  while (Date.now() < end) {
    value = await page.evaluate(probe, arg);
    if (ok(value)) return value;
    await page.waitForTimeout(250);
  }
  // Later checks depend on this one: stop here rather than wait out each of them.
  throw new Error(`${what}: last seen ${JSON.stringify(value)}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  // The network is closed: without these Chromium waits on refused connections.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const watch = (p, origin) => {
    p.on('console', (m) => { if (m.type() === 'error') fail(`console error on ${p.url()}: ${m.text()}`); });
    p.on('pageerror', (e) => fail(`page error on ${p.url()}: ${e.message}`));
    p.on('request', (r) => {
      const u = r.url();
      if (!u.startsWith(origin) && !u.startsWith('data:')) fail(`request outside ${origin}: ${u}`);
    });
  };
  const origin = new URL(args.url).origin;
  watch(page, origin);

  // --- the live dashboard ---
  await page.goto(args.url, { waitUntil: 'load' });
  for (const id of ['chart-accuracy', 'chart-bytes', 'chart-energy', 'clients']) {
    if (!(await page.$('#' + id))) fail(`no element #${id}`);
  }
  const n = Number(args.clients);
  const rows = await waitFor(page, `clients table with ${n} rows in live states`,
    () => [...document.querySelectorAll('table#clients tbody tr')].map((r) => [r.dataset.client, r.dataset.state]),
    (v) => v.length === n && v.every(([, s]) => liveStates.has(s)));
  log('clients:', JSON.stringify(rows));

  const points = () => Number(document.getElementById('chart-accuracy').dataset.points || 0);
  const first = await waitFor(page, 'a first committed round on the chart', points, (v) => v >= 1);
  const later = await waitFor(page, `more points than ${first} as rounds commit`, points, (v) => v > first);
  log(`chart-accuracy points: ${first} -> ${later}`);
  for (const id of ['chart-accuracy', 'chart-bytes', 'chart-energy']) {
    const canvas = await page.$(`#${id} canvas`);
    if (!canvas) fail(`#${id} has no drawn chart`);
  }
  const status = await page.$eval('#status', (e) => e.textContent);
  if (!/round/.test(status) || !/model version/.test(status)) fail(`status line lacks round/model version: ${status}`);
  if (/DP/.test(status)) fail('the page shows epsilon though this run has no DP');

  if (args.screenshots) {
    await page.screenshot({ path: `${args.screenshots}/dashboard.png`, fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(1500);
    await page.screenshot({ path: `${args.screenshots}/dashboard-phone.png`, fullPage: true });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (overflow > 0) fail(`at 390 px the page is ${overflow} px wider than the screen`);
    await page.setViewportSize({ width: 1280, height: 900 });
  }

  // --- a client killed with SIGKILL turns gone ---
  process.kill(Number(args['kill-pid']), 'SIGKILL');
  log(`killed ${args['kill-name']} (pid ${args['kill-pid']})`);
  await waitFor(page, `${args['kill-name']} shown as gone`,
    (name) => { const r = document.querySelector(`tr[data-client="${name}"]`); return r && r.dataset.state; },
    (v) => v === 'gone', args['kill-name']);
  const others = await page.evaluate((name) =>
    [...document.querySelectorAll('table#clients tbody tr')].filter((r) => r.dataset.client !== name).map((r) => r.dataset.state),
    args['kill-name']);
  if (others.includes('gone')) fail(`clients that were not killed show gone: ${others}`);

  // --- the comparison page ---
  const cmp = await context.newPage();
  watch(cmp, 'file://');
  await cmp.goto(pathToFileURL(args.compare).href, { waitUntil: 'load' });
  const labels = args.labels.split(',');
  const legend = await cmp.$eval('#chart-accuracy', (e) => e.textContent);
  const header = await cmp.$eval('table#compare thead', (e) => e.textContent);
  for (const l of labels) {
    if (!legend.includes(l)) fail(`comparison chart legend lacks run ${l}`);
    if (!header.includes(l)) fail(`comparison table lacks run ${l}`);
  }
  const drawn = await cmp.evaluate(() => JSON.parse(document.getElementById('frugal-data').textContent).runs.length);
  if (drawn !== labels.length) fail(`comparison draws ${drawn} runs, expected ${labels.length}`);
  if (!(await cmp.$('#chart-bytes canvas'))) fail('comparison: no bytes chart drawn');
  if (args.screenshots) await cmp.screenshot({ path: `${args.screenshots}/compare.png`, fullPage: true });
} catch (e) {
  fail(e.message);
} finally {
  await browser.close();
}
if (failures.length) {
  log(`${failures.length} failure(s)`);
  process.exit(1);
}
log('all checks passed');
