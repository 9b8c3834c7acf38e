// Measures the dashboard with many positions in headless Chromium and prints the figures.
// Usage: node bench.mjs <dashboard url> <token> <expected open positions>
// Started by `cargo run -p hedge-center --example bench_positions`, which fills a center first.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const [url, token, expectedText] = process.argv.slice(2);
const expected = Number(expectedText);
if (!url || !token || !expected) {
  console.error('usage: node bench.mjs <dashboard url> <token> <expected open positions>');
  process.exit(2);
}
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hedge-dashboard-bench-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1440, height: 1000 },
});
const page = context.pages()[0] || (await context.newPage());
const figures = {};
try {
  await page.goto(url);
  await page.fill('#token', token);
  const t0 = Date.now();
  await page.click('#login-form button[type=submit]');
  await page.waitForFunction((n) => {
    const g = document.querySelector('#positions-grid');
    return g && Number(g.getAttribute('aria-rowcount')) - 1 >= n;
  }, expected, { timeout: 300000, polling: 50 });
  figures.sign_in_to_full_table_ms = Date.now() - t0;
  figures.rows_in_view = await page.$eval('#positions-grid', (g) => Number(g.getAttribute('aria-rowcount')) - 1);
  figures.row_elements_in_dom = await page.$$eval('[data-table="positions"] .vt-row', (r) => r.length);
  figures.dom_elements_total = await page.evaluate(() => document.getElementsByTagName('*').length);

  // Scrolling: each step repaints the visible slice.
  figures.scroll = await page.evaluate(() => {
    const t = positionsTable;
    const times = [];
    for (let i = 0; i < 200; i++) {
      t.scroll.scrollTop = (i * 997 * 30) % (t.view.length * 30);
      const a = performance.now();
      t.paint();
      times.push(performance.now() - a);
    }
    times.sort((a, b) => a - b);
    return { paints: times.length, median_ms: +times[100].toFixed(3), p99_ms: +times[197].toFixed(3), max_ms: +times[199].toFixed(3) };
  });

  // Filtering all rows by text, then clearing the filter.
  figures.filter = await page.evaluate(() => {
    const t = positionsTable;
    const runs = [];
    for (const f of ['eurusd', '2002', 'sell', '']) {
      t.filter = f;
      const a = performance.now();
      t.refresh();
      runs.push({ filter: f || '(none)', rows: t.view.length, ms: +(performance.now() - a).toFixed(2) });
    }
    return runs;
  });

  // A full re-render of every panel, as after a burst of events.
  figures.full_render_ms = await page.evaluate(() => {
    const a = performance.now();
    dirty.add('all');
    render();
    return +(performance.now() - a).toFixed(2);
  });
  figures.js_heap_mb = await page.evaluate(() => (performance.memory ? +(performance.memory.usedJSHeapSize / 1048576).toFixed(1) : null));
  console.log(JSON.stringify(figures, null, 2));
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
