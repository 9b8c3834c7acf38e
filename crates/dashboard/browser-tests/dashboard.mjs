// Drives the hedge dashboard in headless Chromium: signs in, checks that positions, the hedge plan
// and hedges appear and update live, pauses hedging and closes a hedge through the UI (confirming
// each dialog), configures columns, exports CSV, uses the keyboard, and saves screenshots.
//
// Usage: node dashboard.mjs <dashboard url> <token>
// Environment: HEDGE_ARTIFACTS (screenshot directory, default target/artifacts), CHROMIUM (browser
// binary, default /usr/bin/chromium). Exits non-zero with a reason on the first failed check.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { harness } from './harness.mjs';

const [url, token] = process.argv.slice(2);
if (!url || !token) {
  console.error('usage: node dashboard.mjs <dashboard url> <token>');
  process.exit(2);
}
const artifacts = path.resolve(process.env.HEDGE_ARTIFACTS || 'target/artifacts');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
fs.mkdirSync(artifacts, { recursive: true });

const { results, log, check, shot, waitFor, confirmDialog } = harness('dashboard', artifacts);

// Text of the rows a virtualised table currently renders.
const tableText = (page, id) => page.$$eval(`[data-table="${id}"] .vt-row`, (rows) => rows.map((r) => r.textContent).join('\n'));
const rowCount = (page, id) => page.$$eval(`[data-table="${id}"] .vt-row`, (rows) => rows.length);

// Cells of every table whose text does not fit: only free text of a capped column may be shortened,
// and then its tooltip holds the whole text. Numbers, times, names and headers never.
// scrollWidth is rounded to whole pixels, so a header less than a pixel too wide (which the browser
// still ends with an ellipsis) is found by the width of its text itself; body cells clip instead.
const cutCells = (page) => page.evaluate(() => {
  const bad = [];
  const range = document.createRange();
  for (const cell of document.querySelectorAll('.vt-head > div, .vt-row > div')) {
    range.selectNodeContents(cell);
    const text = range.getBoundingClientRect().width;
    const box = cell.getBoundingClientRect().width - 16;
    const head = cell.parentElement.classList.contains('vt-head');
    if (cell.scrollWidth <= cell.clientWidth && (!head || text <= box)) continue;
    if (cell.hasAttribute('data-capped') && cell.title === cell.textContent) continue;
    bad.push(`${cell.closest('[data-table]').dataset.table}: "${cell.textContent}" ${text.toFixed(2)}>${box.toFixed(2)}`);
  }
  return bad;
});

async function main() {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hedge-dashboard-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    viewport: { width: 1440, height: 1000 },
    acceptDownloads: true,
  });
  const page = context.pages()[0] || (await context.newPage());
  const problems = [];
  // Chrome logs every failed request as a console error; those expected here (the refused token, a
  // missing endpoint, the stream cut by the restart) are network events, not script errors.
  page.on('console', (m) => {
    if (m.type() === 'error' && !/^Failed to load resource/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => {
    const u = r.url();
    if (!u.startsWith(new URL(url).origin)) problems.push(`request outside the center: ${u}`);
  });
  // Every operator action the page sends, with its idempotency key.
  const actionRequests = [];
  page.on('request', (r) => {
    if (r.method() === 'POST' && new URL(r.url()).pathname === '/v1/actions') {
      actionRequests.push({ key: r.headers()['idempotency-key'] || '', body: r.postData() });
    }
  });
  // Operator actions answered (one lost answer below never arrives).
  const actionAnswers = [];
  page.on('requestfinished', (r) => {
    if (r.method() === 'POST' && new URL(r.url()).pathname === '/v1/actions') actionAnswers.push(r.url());
  });

  try {
    // 1. Sign in.
    await page.goto(url, { waitUntil: 'load' });
    await page.waitForSelector('#token', { state: 'visible' });
    check('login form has a labelled token field',
      (await page.textContent('label[for="token"]')).trim().length > 0);
    await page.fill('#token', 'not-the-token');
    await page.click('#login-form button[type=submit]');
    await waitFor(page, 'the refusal of a bad token', () => document.querySelector('#login-error').textContent.length > 0);
    check('a bad token is refused with a message', true, await page.textContent('#login-error'));
    await shot(page, '01-login');
    await page.fill('#token', token);
    await page.click('#login-form button[type=submit]');
    await waitFor(page, 'the live event stream', () => document.querySelector('#conn-state').dataset.state === 'live');
    check('signed in and following the event stream', true);
    // The refused token above logged a 401 in the console; only what follows counts.
    problems.length = 0;

    // 2. Data appears.
    await waitFor(page, 'accounts', () => document.querySelectorAll('#accounts .card').length >= 2);
    await waitFor(page, 'positions', () => document.querySelectorAll('[data-table="positions"] .vt-row').length > 0);
    await waitFor(page, 'the hedge plan', () => document.querySelectorAll('[data-table="plan"] .vt-row').length > 0);
    await waitFor(page, 'hedges', () => document.querySelectorAll('[data-table="hedges"] .vt-row').length > 0);
    check('accounts, positions, plan and hedges are shown', true,
      `${await page.$$eval('#accounts .card', (c) => c.length)} accounts, ${await rowCount(page, 'positions')} position rows, ` +
      `${await rowCount(page, 'plan')} plan rows, ${await rowCount(page, 'hedges')} hedge rows`);
    check('the summary row is shown', /Positions:\s*\d+/.test(await page.textContent('#positions-summary')));
    // Money and reconciliation from the agents' status.
    const summary = await waitFor(page, 'the account summary', () => {
      const b = document.querySelector('#positions-summary [data-sum="balance"]');
      return b && /20001\.00 USD/.test(b.textContent) ? document.querySelector('#positions-summary').textContent : false;
    });
    check('the summary row sums the clients\' balance, floating P/L and margin exactly',
      /Accounts’ floating P\/L: 23\.50 USD/.test(summary) && /Margin: 420\.00 USD/.test(summary) &&
        /Positions P\/L \(incl\. swap & commission\): -?\d/.test(summary), summary);
    const lots = await page.evaluate(() => {
      const el = document.querySelector('#positions-summary [data-sum="lots"]');
      const expected = new Map();
      for (const p of S.positions.values()) {
        if (p.status === 'closed') continue;
        const v = Number(p.volume) * (p.side === 'sell' ? -1 : 1);
        expected.set(p.symbol, (expected.get(p.symbol) || 0) + v);
      }
      const shown = [...el.querySelectorAll('[data-symbol]')].map((x) => [x.dataset.symbol, Number(x.textContent.split(' ')[1])]);
      const ok = !/Buy:|Sell:|Net:/.test(document.querySelector('#positions-summary').textContent) &&
        shown.length === expected.size && shown.every(([sym, v]) => Math.abs(v - expected.get(sym)) < 1e-9);
      return { ok, text: el.textContent };
    });
    check('lots are summed per symbol, never across symbols', lots.ok, lots.text);
    const badge = await waitFor(page, 'the reconciliation badge', () => {
      const b = document.querySelector('#accounts .card[data-login="2001"] .badge.bad[data-reconciliation="mismatch"]');
      return b ? `${b.textContent} / ${b.title}` : false;
    });
    check('a red reconciliation badge with the detail as its tooltip', /ledger 0\.3, terminal 0\.2/.test(badge), badge);
    const refused = await waitFor(page, 'the pre-trade refusal', () => {
      const b = document.querySelector('#accounts .card[data-login="1001"] .badge.bad[data-pretrade-refusals="1"]');
      const dd = document.querySelector('#accounts .card[data-login="1001"] dd[data-pretrade="refused"]');
      return b && dd ? `${b.textContent} / ${b.title} / ${dd.textContent}` : false;
    });
    check('a hedge kept back by the pre-trade checks is a red badge with its reason',
      /1 hedge refused/.test(refused) && /margin level 85% below minimum 100%/.test(refused) && /SELL 0\.5 GBPUSD not sent/.test(refused), refused);
    check('a reconciled account has no badge', await page.evaluate(() =>
      !document.querySelector('#accounts .card[data-login="2002"] .badge[data-reconciliation]') &&
      /ok/.test(document.querySelector('#accounts .card[data-login="2002"] dd[data-reconciliation]').textContent)));
    const priced = await waitFor(page, 'current prices from the marks', () => {
      const heads = [...document.querySelectorAll('[data-table="positions"] .vt-head [role=columnheader]')].map((c) => c.textContent.trim());
      const i = heads.indexOf('Price');
      const rows = [...document.querySelectorAll('[data-table="positions"] .vt-row')];
      const cell = rows.map((r) => r.children[i] && r.children[i].textContent).find((t) => t && /^\d/.test(t));
      return cell || false;
    });
    check('positions show the current price, commission, swap and profit of their mark', true, priced);
    await shot(page, '02-overview');

    // The plan shows each stage of the conversion and says why a residual is not hedged; each
    // hedge account shows its allocation.
    const planView = await waitFor(page, 'the plan\'s conversion columns and the silver residual', () => {
      const head = document.querySelector('[data-table="plan"] .vt-head')?.textContent || '';
      const rows = [...document.querySelectorAll('[data-table="plan"] .vt-row')].map((r) => r.textContent);
      const silver = rows.find((t) => /XAGUSD/.test(t));
      const alloc = document.querySelector('#accounts .card[data-login="1001"] dd[data-allocation]')?.textContent || '';
      return /Client lots/.test(head) && /Base qty/.test(head) && /Hedge lots/.test(head) && silver &&
        /client 2001: contract size missing/.test(silver) && /all clients: 100%/.test(alloc)
        ? `${silver} / ${alloc}` : false;
    });
    check('the plan shows client lots, base quantity and hedge lots, residual reasons and the allocation', true, planView);

    // 3. They update live, without reloading.
    const before = {
      positions: await tableText(page, 'positions'),
      hedges: await tableText(page, 'hedges'),
      plan: await tableText(page, 'plan'),
      lastEvent: await page.$eval('[data-table="events"] .vt-row', (r) => Number(r.dataset.key.slice(1))),
    };
    await page.evaluate(() => { window.__notReloaded = true; });
    await waitFor(page, 'new events', (id) => {
      const r = document.querySelector('[data-table="events"] .vt-row');
      return r && Number(r.dataset.key.slice(1)) > id;
    }, before.lastEvent);
    await waitFor(page, 'the positions to change', (t) => [...document.querySelectorAll('[data-table="positions"] .vt-row')].map((r) => r.textContent).join('\n') !== t, before.positions, 60000);
    await waitFor(page, 'the hedges to change', (t) => [...document.querySelectorAll('[data-table="hedges"] .vt-row')].map((r) => r.textContent).join('\n') !== t, before.hedges, 60000);
    await waitFor(page, 'the plan to change', (t) => [...document.querySelectorAll('[data-table="plan"] .vt-row')].map((r) => r.textContent).join('\n') !== t, before.plan, 60000);
    check('positions, hedges and plan update live without a reload', await page.evaluate(() => window.__notReloaded === true));
    await waitFor(page, 'an exposure chart', () => !!document.querySelector('#exposure-chart svg path.exposure'));
    check('the exposure chart is drawn', true, await page.$eval('#exposure-chart desc', (d) => d.textContent));
    const chart = await page.evaluate(() => ({
      unhedged: !!document.querySelector('#exposure-chart svg path.unhedged'),
      legend: document.querySelector('#exposure-chart [data-unhedged]')?.textContent || '',
      times: [...document.querySelectorAll('#exposure-chart svg .ticks text')].map((t) => t.textContent),
    }));
    check('the chart shows the unhedged difference and more than two times on its axis',
      chart.unhedged && /unhedged/.test(chart.legend) && chart.times.length >= 4 &&
        new Set(chart.times).size === chart.times.length &&
        chart.times.every((t) => /^\d\d:\d\d:\d\d( UTC)?$/.test(t)), `${chart.legend}; ${chart.times.join(', ')}`);
    await shot(page, '03-updated');

    // At 1400 px every number, time and name fits its column.
    await page.setViewportSize({ width: 1400, height: 1000 });
    await page.waitForTimeout(300);
    const cut = await cutCells(page);
    check('nothing is cut at 1400 px', cut.length === 0, cut.slice(0, 8).join('; '));
    await shot(page, '03b-1400px');
    await page.setViewportSize({ width: 1440, height: 1000 });

    // Each open hedge shows its P/L from the hedge account's marks (the test hedger marks every
    // hedge position profit 1.5, swap -0.1, commission -0.2), and the account's total sums them.
    const hedgePnl = await waitFor(page, 'hedge P/L from the hedger\'s marks', () => {
      const open = [...S.hedges.values()].filter((x) => x.status === 'open' || x.status === 'partially_closed');
      const marked = open.filter((x) => x.mark);
      if (!marked.length) return false;
      const headers = [...document.querySelectorAll('[data-table="hedges"] [role="columnheader"]')];
      const col = headers.findIndex((c) => c.textContent.trim().startsWith('P/L'));
      if (col < 0) return false;
      const cells = [...document.querySelectorAll('[data-table="hedges"] .vt-row')]
        .filter((r) => { const x = S.hedges.get(Number(r.dataset.key.slice(1))); return x && marked.includes(x); })
        .map((r) => r.children[col].textContent);
      const cents = marked.length * 120;
      const total = `${Math.floor(cents / 100)}.${String(cents % 100).padStart(2, '0')}`;
      const sum = document.querySelector('[data-sum="hedge-pnl-1001"]');
      if (!cells.length || !cells.every((t) => t === '1.20') || !sum || sum.textContent !== `Hedge P/L 1001: ${total}`) return false;
      return `${cells.length} rows show 1.20; ${sum.textContent} over ${marked.length} marked of ${open.length} open hedges`;
    }, undefined, 30000);
    check('open hedges show their P/L from the hedge account\'s marks, and the account total sums them exactly', true, hedgePnl);

    // 4. Pause hedging of a symbol from the plan, confirming the dialog.
    const pauseButton = page.locator('[data-table="plan"] .vt-row button', { hasText: 'Pause' }).first();
    const pauseLabel = await pauseButton.getAttribute('aria-label');
    const symbol = pauseLabel.replace('Pause hedging ', '');
    // Rows move under the live feed: click the button of exactly that symbol.
    await page.click(`[data-table="plan"] button[aria-label="${pauseLabel}"]`);
    await confirmDialog(page, 'browser test pause');
    await waitFor(page, 'the pause badge', (sym) => document.querySelector('#pauses').textContent.includes(sym), symbol);
    await waitFor(page, 'the paused event in the log', () => S.events.some((e) => e.kind === 'paused' && /browser test pause/.test(e.reason)));
    const pausedRow = await page.evaluate(() => { const e = S.events.find((x) => x.kind === 'paused'); return `${e.actor}: ${e.reason}`; });
    check(`hedging of ${symbol} paused through the UI and logged with who did it`, true, pausedRow);
    await shot(page, '04-paused');

    // Cancelling a dialog does nothing.
    await page.locator('[data-table="plan"] .vt-row button', { hasText: 'Resume' }).first().click();
    await page.locator('#confirm').waitFor({ state: 'visible' });
    await page.keyboard.press('Escape');
    await page.locator('#confirm').waitFor({ state: 'hidden' });
    check('a cancelled confirmation changes nothing', (await page.textContent('#pauses')).includes(symbol));
    await page.locator('[data-table="plan"] .vt-row button', { hasText: 'Resume' }).first().click();
    await confirmDialog(page, 'browser test resume');
    await waitFor(page, 'the pause to end', (sym) => !document.querySelector('#pauses').textContent.includes(sym), symbol);
    check(`hedging of ${symbol} resumed through the UI`, true);

    // 5. Close a hedge, confirming the dialog.
    const closeButton = page.locator('[data-table="hedges"] .vt-row button', { hasText: /^Close/ }).first();
    await closeButton.waitFor({ state: 'visible', timeout: 30000 });
    const closeLabel = await closeButton.getAttribute('aria-label');
    const hedgeId = closeLabel.replace('Close hedge ', '');
    // The center acts on the first close but its answer is lost: the page must resend it with the
    // same key, and the center must answer with the first command instead of closing twice.
    // The resend's answer (the command as first stored, pending) is then held until the stream has
    // said that the hedger finished the command: the page gets the older state last and must keep
    // the newer one.
    let answerLost = false;
    let staleAnswerHeld = false;
    await page.route('**/v1/actions', async (route) => {
      if (!answerLost) {
        answerLost = true;
        await route.fetch();
        return route.abort('connectionreset');
      }
      const response = await route.fetch();
      for (let i = 0; i < 300 && !staleAnswerHeld; i += 1) {
        staleAnswerHeld = await page.evaluate((id) => [...S.commands.values()]
          .some((c) => c.hedge_id === Number(id) && c.kind === 'close_hedge' && c.status !== 'pending'), hedgeId)
          .catch(() => false);
        if (!staleAnswerHeld) await new Promise((r) => setTimeout(r, 100));
      }
      return route.fulfill({ response });
    });
    const closeRequestsBefore = actionRequests.length;
    await page.click(`[data-table="hedges"] button[aria-label="${closeLabel}"]`);
    await page.locator('#confirm').waitFor({ state: 'visible', timeout: 5000 });
    const closeText = await page.textContent('#confirm-text');
    check('the close dialog says the symbol becomes close-only', /close-only/.test(closeText), closeText);
    await confirmDialog(page, 'browser test close');
    await waitFor(page, 'the close to take effect', (id) => {
      const row = [...document.querySelectorAll('[data-table="hedges"] .vt-row')].find((r) => r.dataset.key === `h${id}`);
      const toast = document.querySelector('#toast');
      return (row && /closed/.test(row.textContent)) || (!toast.hidden && /requested/.test(toast.textContent));
    }, hedgeId);
    const toastText = await page.textContent('#toast');
    // The toast may already tell the outcome when the hedger was quick; the command is the proof.
    const command = await waitFor(page, 'the close command', (id) => {
      const c = [...S.commands.values()].find((x) => x.hedge_id === Number(id) && x.kind === 'close_hedge');
      return c ? `command ${c.id} by ${c.actor}: ${c.status}` : false;
    }, hedgeId);
    check(`hedge ${hedgeId} close confirmed through the UI and accepted by the center`, /requested|done/.test(toastText), `${command}; ${toastText}`);
    // The hedger may finish the first close before the page resends it: wait for the resend.
    for (let i = 0; i < 100 && actionRequests.length - closeRequestsBefore < 2; i += 1) {
      await new Promise((r) => setTimeout(r, 100));
    }
    for (let i = 0; i < 100 && actionAnswers.length < actionRequests.length - 1; i += 1) {
      await new Promise((r) => setTimeout(r, 100));
    }
    await page.unroute('**/v1/actions');
    const closeSends = actionRequests.slice(closeRequestsBefore);
    const closeCommands = await page.evaluate(async (id) => (await api('GET', `/v1/commands?limit=1000`)).items
      .filter((c) => c.hedge_id === Number(id) && c.kind === 'close_hedge').length, hedgeId);
    check('a close whose answer was lost is resent with the same idempotency key and closes once',
      closeSends.length === 2 && closeSends[0].key === closeSends[1].key && closeSends[0].body === closeSends[1].body && closeCommands === 1,
      `${closeSends.length} sends, keys ${closeSends.map((x) => x.key).join(', ')}, ${closeCommands} close command(s)`);
    await waitFor(page, `hedge ${hedgeId} to be closed`, (id) => {
      const row = [...document.querySelectorAll('[data-table="hedges"] .vt-row')].find((r) => r.dataset.key === `h${id}`);
      return row && /closed/.test(row.textContent);
    }, hedgeId, 60000);
    check(`hedge ${hedgeId} shows as closed`, true);
    const doneRow = await waitFor(page, `the close command of hedge ${hedgeId} to show done`, (id) => {
      const row = [...document.querySelectorAll('[data-table="hedges"] .vt-row')].find((r) => r.dataset.key === `h${id}`);
      return row && /close done.* · command \d+/.test(row.textContent) ? row.textContent : false;
    }, hedgeId, 30000);
    check('a command answer older than the stream does not bring back its pending state',
      staleAnswerHeld && await page.evaluate((id) => [...S.commands.values()]
        .filter((c) => c.hedge_id === Number(id) && c.kind === 'close_hedge').every((c) => c.status === 'done'), hedgeId),
      `answer held until done: ${staleAnswerHeld}; ${doneRow}`);
    // The close left its symbol close-only on the hedge account: the plan offers to resume it, and
    // the pause is ended from its badge.
    const scope = await page.evaluate((id) => {
      const x = S.hedges.get(Number(id));
      return `account ${x.hedge_login}, ${x.symbol}`;
    }, hedgeId);
    const planResume = await waitFor(page, 'the plan to offer Resume for the closed hedge\'s symbol', (id) => {
      const x = S.hedges.get(Number(id));
      const b = document.querySelector(`[data-table="plan"] button[aria-label="Resume hedging ${x.symbol} on account ${x.hedge_login}"]`);
      return b && b.textContent === 'Resume' ? b.getAttribute('aria-label') : false;
    }, hedgeId);
    check('after a close the plan\'s button for that symbol says Resume', true, planResume);
    await page.click(`#pauses button[aria-label="Resume hedging for ${scope}"]`);
    await confirmDialog(page, 'browser test resume after close');
    await waitFor(page, 'the close-only pause to end', (text) =>
      ![...document.querySelectorAll('#pauses .badge')].some((b) => b.textContent.includes(text)), scope);
    check(`the close-only pause of ${scope} ended from its badge`, true);
    await shot(page, '05-hedge-close');

    // Retry the failed hedge; its command's progress shows on the row.
    // New hedges keep pushing rows down; the table's filter holds the failed one (its message is
    // the requote) still while it is clicked.
    await page.fill('#hedges-filter', 'requote');
    const failedId = await waitFor(page, 'a failed hedge', () => {
      const x = [...S.hedges.values()].find((h) => h.status === 'failed');
      if (!x) return false;
      const i = hedgesTable.view.findIndex((r) => r.id === x.id);
      if (i < 0) return false;
      hedgesTable.setActive(i);
      return x.id;
    });
    const retryButton = page.locator(`[data-table="hedges"] button[aria-label="Retry hedge ${failedId}"]`);
    await retryButton.waitFor({ state: 'visible', timeout: 10000 });
    await retryButton.click();
    await confirmDialog(page, 'browser test retry');
    const retried = await waitFor(page, `the retry of hedge ${failedId} to be done`, (id) => {
      const c = [...S.commands.values()].find((x) => x.hedge_id === id && x.kind === 'retry_hedge');
      if (!c || c.status !== 'done') return false;
      hedgesTable.setActive(hedgesTable.view.findIndex((r) => r.id === id));
      const row = document.querySelector(`[data-table="hedges"] .vt-row[data-key="h${id}"]`);
      return row && /retry done.* · command \d+/.test(row.textContent) ? row.textContent : false;
    }, failedId, 60000);
    check(`failed hedge ${failedId} retried through the UI; the row shows the command done`, true, retried);
    await page.fill('#hedges-filter', '');

    // Optional: the harness restarts the center; the page must reconnect and catch up.
    if (process.env.HEDGE_RESTART_HOOK) {
      await page.evaluate(() => {
        window.__sawDown = false;
        const el = document.querySelector('#conn-state');
        new MutationObserver(() => { if (el.dataset.state === 'down') window.__sawDown = true; })
          .observe(el, { attributes: true, childList: true, subtree: true });
      });
      const lastBefore = await page.evaluate(() => S.lastEventId);
      console.log('[dashboard] ready-for-restart');
      await new Promise((resolve) => {
        let buf = '';
        process.stdin.setEncoding('utf8');
        process.stdin.on('data', (d) => { buf += d; if (buf.includes('restarted')) resolve(); });
      });
      process.stdin.pause();
      await waitFor(page, 'the page to notice the restart', () => window.__sawDown === true, undefined, 30000);
      await waitFor(page, 'the stream to come back', () => document.querySelector('#conn-state').dataset.state === 'live', undefined, 60000);
      await waitFor(page, 'events after the restart', (id) => S.lastEventId > id + 2, lastBefore, 60000);
      // The page's event log must equal the center's, id for id, up to the last event it saw.
      const cmp = await page.evaluate(async () => {
        const mine = S.events.map((e) => e.id);
        const last = mine[mine.length - 1];
        const theirs = [];
        let after = mine[0] - 1;
        for (;;) {
          const res = await fetch(`/v1/events?after=${after}&limit=1000`, { headers: { Authorization: `Bearer ${S.token}` } });
          const page = await res.json();
          for (const e of page.items) if (e.id <= last) theirs.push(e.id);
          if (page.next_after === undefined || page.next_after === null || page.items.some((e) => e.id >= last)) break;
          after = page.next_after;
        }
        return { mine: mine.join(','), theirs: theirs.join(','), n: mine.length, last };
      });
      check('nothing missed or doubled across the restart', cmp.mine === cmp.theirs, `${cmp.n} events up to ${cmp.last}`);
      await shot(page, '09-after-restart');
      check('the page reconnected by itself after the center restarted', await page.evaluate(() => window.__notReloaded === true));
    }

    // 6. Deal rows expand under a position, by keyboard.
    await page.focus('#positions-grid');
    // The newest position: the feed closes the oldest ones.
    await page.keyboard.press('End');
    await page.keyboard.press('Enter');
    const dealText = await waitFor(page, 'deal rows', () => {
      const r = document.querySelector('[data-table="positions"] .vt-row.deal');
      return r && r.textContent;
    });
    check('Enter on a position shows its deal rows', true, dealText);
    check('the active row is announced to assistive technology',
      await page.$eval('#positions-grid', (g) => !!g.getAttribute('aria-activedescendant')));

    // 7. Columns: hide one and rename one; remembered after a reload.
    await page.click('[data-tools="positions"] button:has-text("Columns")');
    await page.locator('#columns').waitFor({ state: 'visible' });
    await page.uncheck('#col-tp');
    await page.fill('#columns-list input[aria-label="Name of column Symbol"]', 'Instrument');
    await page.press('#columns-list input[aria-label="Name of column Symbol"]', 'Tab');
    await shot(page, '06-columns-dialog');
    await page.click('#columns button[value=done]');
    const heads = await page.$$eval('[data-table="positions"] .vt-head [role=columnheader]', (c) => c.map((x) => x.textContent.trim()));
    check('a column renamed and another hidden', heads.some((x) => x.startsWith('Instrument')) && !heads.includes('T/P'), heads.join('|'));
    await page.reload({ waitUntil: 'load' });
    await waitFor(page, 'the stream after a reload', () => document.querySelector('#conn-state').dataset.state === 'live');
    await waitFor(page, 'positions after a reload', () => document.querySelectorAll('[data-table="positions"] .vt-row').length > 0);
    const headsAgain = await page.$$eval('[data-table="positions"] .vt-head [role=columnheader]', (c) => c.map((x) => x.textContent.trim()));
    check('column choices are remembered', headsAgain.join('|') === heads.join('|'), headsAgain.join('|'));

    // A hedge account's edit dialog offers its symbol names, not a ratio.
    await page.click('button[aria-label="Edit symbol map of account 1001"]');
    await page.locator('#edit-account').waitFor({ state: 'visible' });
    const hedgeEdit = await page.evaluate(() => ({
      ratioHidden: document.querySelector('#edit-ratio-field').hidden && !document.querySelector('#edit-ratio').checkVisibility(),
      title: document.querySelector('#edit-title').textContent,
    }));
    check('a hedge account\'s edit dialog has no hedge ratio', hedgeEdit.ratioHidden, hedgeEdit.title);
    await page.click('#edit-account button[value=cancel]');
    await page.locator('#edit-account').waitFor({ state: 'hidden' });

    // Override a client's hedge ratio and symbol map, confirming it: the card shows the agent's
    // value beside the override.
    await page.click('button[aria-label="Edit symbol map and hedge ratio of account 2002"]');
    await page.locator('#edit-account').waitFor({ state: 'visible' });
    await page.fill('#edit-ratio', '0.25');
    await page.fill('#edit-suffix', '.pro');
    await page.click('#edit-account button[value=save]');
    await confirmDialog(page, 'browser test ratio');
    const overridden = await waitFor(page, 'the overrides on the account card', () => {
      const ratio = document.querySelector('#accounts .card[data-login="2002"] [data-override="hedge_ratio"]');
      const map = document.querySelector('#accounts .card[data-login="2002"] [data-override="symbol_map"]');
      return ratio && map && /0\.25/.test(ratio.textContent) && /agent: 0\.5/.test(ratio.textContent) &&
        /\*\.pro/.test(map.textContent) ? `${ratio.textContent} | ${map.textContent}` : false;
    });
    check('the overrides show beside the agent\'s values', true, overridden);
    // The page's event log (rows scroll away quickly under the live feed, so its data is checked).
    await waitFor(page, 'the overrides in the event log', () => S.events
      .filter((e) => e.kind === 'override_set' && e.login === 2002 && e.actor === 'operator').length >= 2);
    check('hedge ratio and symbol map of account 2002 overridden through the UI and logged with who did it', true);
    await shot(page, '06b-overrides');
    await page.click('button[aria-label="Clear the hedge ratio override of account 2002"]');
    await confirmDialog(page, 'browser test clear');
    await waitFor(page, 'the ratio override to be cleared', () =>
      !document.querySelector('#accounts .card[data-login="2002"] [data-override="hedge_ratio"]') &&
      S.events.some((e) => e.kind === 'override_cleared' && e.login === 2002));
    check('an override cleared through the UI', true);

    // Allocations: client 2001's exposure split 60/40 between hedge accounts 1001 and 1002
    // through the form. Weights that do not sum to 1 are refused with the center's words; the
    // split moves 40% of the client's exposure into the plan of 1002, and clearing it moves it back.
    await waitFor(page, 'every client on hedge account 1001', () => S.plans.has(1002) && S.plans.get(1002).items.length === 0);
    await page.click('[data-edit-allocation]');
    await page.locator('#edit-allocation').waitFor({ state: 'visible' });
    const listed = await page.textContent('#alloc-list');
    check('the allocation editor lists the allocation in force', /all clients: account 1001 100%/.test(listed), listed);
    await page.selectOption('#alloc-client', '2001');
    await page.fill('#alloc-w-1001', '0.6');
    await page.fill('#alloc-w-1002', '0.3');
    await page.fill('#alloc-reason', 'browser test split');
    await page.click('#alloc-save');
    const refusedText = await waitFor(page, 'the center\'s refusal in the form', () => {
      const t = document.querySelector('#alloc-error').textContent;
      return t ? t : false;
    });
    check('weights that do not sum to 1 are refused with the center\'s error, the form stays open',
      /weights must sum to exactly 1, they sum to 0\.9/.test(refusedText) &&
      await page.locator('#edit-allocation').isVisible(), refusedText);
    await page.fill('#alloc-w-1002', '0.4');
    await page.click('#alloc-save');
    await waitFor(page, 'the 60/40 allocation in the list', () =>
      /client 2001: account 1001 60%, account 1002 40%/.test(document.querySelector('#alloc-list').textContent) &&
      !document.querySelector('#alloc-error').textContent);
    await shot(page, '06c-allocation');
    await page.click('#alloc-close');
    const split = await waitFor(page, 'hedge account 1002 in the plan', () => {
      const rows = [...document.querySelectorAll('[data-table="plan"] .vt-row')].filter((r) => r.dataset.key.startsWith('i1002:'));
      const items = (S.plans.get(1002) || {}).items || [];
      const card = document.querySelector('#accounts .card[data-login="1002"] dd[data-allocation]')?.textContent || '';
      const client2001 = [...S.positions.values()].some((p) => p.login === 2001 && p.status !== 'closed');
      return client2001 && items.length > 0 && rows.length > 0 && /client 2001: 40%/.test(card)
        ? `${items.length} orders on 1002 (${items.map((i) => `${i.symbol} ${i.side} ${i.volume}, client lots ${i.client_lots}`).join('; ')}); ${card}`
        : false;
    }, undefined, 30000);
    check('a 60/40 allocation set through the form puts 40% of the client on the second hedge account', true, split);
    // Each of 1002's orders counts 40% of client 2001's net lots in its symbol: the plan and the
    // client's open positions are read with no event between them (the plan's head unchanged).
    const shares = await page.evaluate(async () => {
      for (let tries = 0; tries < 50; tries += 1) {
        const before = await api('GET', '/v1/plan/1002');
        const open = (await api('GET', '/v1/positions?login=2001&status=open&limit=1000')).items;
        const after = await api('GET', '/v1/plan/1002');
        if (before.as_of_event_id !== after.as_of_event_id || !after.items.length) continue;
        const net = new Map();
        for (const p of open) {
          const signed = p.side === 'buy' ? dec(p.volume) : -dec(p.volume);
          net.set(p.symbol, (net.get(p.symbol) || 0n) + signed);
        }
        return after.items.map((i) => ({
          symbol: i.symbol, client_lots: i.client_lots, client2001: fmtDec(net.get(i.symbol) || 0n),
          ok: dec(i.client_lots) === decMul(net.get(i.symbol) || 0n, dec('0.4')),
        }));
      }
      return null;
    });
    check('the second hedge account\'s orders count 40% of the client\'s lots',
      Array.isArray(shares) && shares.length > 0 && shares.every((x) => x.ok), JSON.stringify(shares));
    await page.click('[data-edit-allocation]');
    await page.click('button[aria-label="Clear the allocation of client 2001"]');
    await confirmDialog(page, 'browser test clear allocation');
    await waitFor(page, 'the plan of 1002 empty again', () => S.plans.get(1002).items.length === 0 &&
      !/client 2001/.test(document.querySelector('#alloc-list').textContent), undefined, 30000);
    await page.click('#alloc-close');
    check('clearing the allocation through the form moves the client back to hedge account 1001', true);

    // 8. CSV export of what is on screen.
    const [download] = await Promise.all([
      page.waitForEvent('download', { timeout: 10000 }),
      page.click('[data-tools="positions"] button:has-text("Export CSV")'),
    ]);
    const csvFile = path.join(artifacts, 'positions.csv');
    await download.saveAs(csvFile);
    const csv = fs.readFileSync(csvFile, 'utf8').replace(/^\ufeff/, '').trim().split(/\r\n/);
    // The view moves live, so the count is the one the page exported at the click.
    const exported = await page.$eval('[data-table="positions"]', (t) => Number(t.dataset.exported));
    check('CSV has the visible columns and every row of the view',
      csv[0].includes('Instrument;') && !csv[0].includes('T/P;') && csv.length - 1 === exported && exported > 0 &&
      csv.slice(1).every((line) => line.split(';').length === csv[0].split(';').length),
      `${csv.length - 1} rows, header ${csv[0]}`);
    const cells = csv.slice(1).flatMap((line) => line.split(';'));
    check('CSV text cells that read as formulas start with \' and numbers stay numbers',
      cells.some((c) => /^'=signal #\d+$/.test(c)) &&
      !cells.some((c) => /^"?[=+\-@\t\r]/.test(c) && !/^-\d[\d.,]*$/.test(c)) &&
      !cells.some((c) => /^'[-+]?\d[\d.,]*$/.test(c)),
      cells.filter((c) => /^'?[=+\-@]/.test(c)).slice(0, 8).join(' | '));

    // 9. Filtering the event log by kind.
    await page.selectOption('#events-kind', 'paused');
    const kinds = await page.$$eval('[data-table="events"] .vt-row', (rows) => rows.map((r) => r.children[2].textContent));
    check('the event log filters by kind', kinds.length > 0 && kinds.every((k) => k === 'paused'), kinds.join(','));
    await page.selectOption('#events-kind', '');

    // 10. History tab.
    await page.click('#tab-history');
    await waitFor(page, 'the history tab', () => document.querySelector('#tab-history').getAttribute('aria-selected') === 'true');
    await waitFor(page, 'exit comments in the history', () =>
      [...document.querySelectorAll('[data-table="positions"] .vt-row')].some((r) => r.textContent.includes('closed #')));
    const exits = await page.$$eval('[data-table="positions"] .vt-row',
      (rows) => rows.filter((r) => r.textContent.includes('closed #')).length);
    check('closed positions show their exit comment', exits > 0, `${exits} rows`);
    // Exit price and realized money instead of the open positions' marks: the value of each cell
    // is the center's figure for that position (— where its close came without its deal), and
    // the totals are the exact sums per account currency.
    const realized = await waitFor(page, 'realized figures in the history', async () => {
      const heads = [...document.querySelectorAll('[data-table="positions"] .vt-head > div')].map((c) => c.textContent.replace(/ [▲▼]$/, ''));
      const col = (name) => heads.indexOf(name);
      const need = ['Exit Price', 'Comm.', 'Swap', 'Profit', 'P/L'];
      if (need.some((n) => col(n) < 0) || heads.includes('Price')) return false;
      const closed = (await api('GET', '/v1/positions?status=closed&limit=1000')).items;
      const byId = new Map(closed.map((p) => [`${p.login}:${p.position_id}`, p]));
      const money = (v) => (v === undefined || v === null ? '—' : fmtNum(v, 2));
      const rows = [...document.querySelectorAll('[data-table="positions"] .vt-row:not(.deal)')];
      let known = 0;
      let unknown = 0;
      const wrong = [];
      for (const r of rows) {
        const cells = [...r.children].map((c) => c.textContent);
        const p = byId.get(r.dataset.key);
        if (!p) { wrong.push(`row ${r.dataset.key} is not a closed position`); continue; }
        const digits = priceDigits(p.login, p.account_symbol, p.symbol);
        const pnl = realizedPnl(p);
        const want = {
          'Exit Price': p.exit_price === undefined ? '—' : fmtNum(p.exit_price, digits),
          'Comm.': money(p.realized_commission), Swap: money(p.realized_swap), Profit: money(p.realized_profit),
          'P/L': pnl === null ? '—' : fmtDec(pnl, 2),
        };
        for (const [name, text] of Object.entries(want)) if (cells[col(name)] !== text) wrong.push(`#${p.position_id} ${name} ${cells[col(name)]} != ${text}`);
        if (pnl === null) unknown += 1; else known += 1;
      }
      let total = 0n;
      let unknownAll = 0;
      for (const p of closed) { const v = realizedPnl(p); if (v === null) unknownAll += 1; else total += v; }
      const shown = document.querySelector('#positions-summary [data-sum="realized"]');
      const unknownShown = document.querySelector('#positions-summary [data-sum="realized-unknown"]');
      if (!shown || !known || !unknown) return false;
      return {
        ok: wrong.length === 0 && shown.textContent === `Realized P/L: ${fmtDec(total, 2)} USD` &&
          (unknownShown ? unknownShown.textContent : '') === `Unknown figures: ${unknownAll}`,
        detail: `${known} rows with figures, ${unknown} without; ${shown.textContent}; expected ${fmtDec(total, 2)} USD, ${unknownAll} unknown; ${wrong.slice(0, 4).join('; ')}`,
      };
    });
    check('history shows each closed position\'s exit price, commission, swap, profit and P/L, and their exact total', realized.ok, realized.detail);
    // At 1400 px and on a phone no figure of the history is cut either.
    await page.setViewportSize({ width: 1400, height: 1000 });
    await page.waitForTimeout(300);
    const cutHistory = await cutCells(page);
    check('nothing is cut in the history at 1400 px', cutHistory.length === 0, cutHistory.slice(0, 8).join('; '));
    await shot(page, '07-history');
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(300);
    const cutHistoryPhone = await cutCells(page);
    check('nothing is cut in the history on a phone', cutHistoryPhone.length === 0, cutHistoryPhone.slice(0, 8).join('; '));
    await shot(page, '07b-history-phone');
    await page.setViewportSize({ width: 1440, height: 1000 });
    await page.click('#tab-active');

    // 11. A phone-sized screen.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(300);
    const overflow = await page.evaluate(() => {
      const by = document.documentElement.scrollWidth - window.innerWidth;
      // The innermost elements that reach past the screen, to say what overflows.
      const wide = [...document.querySelectorAll('body *')]
        .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 1 && el.closest('.vt') === null)
        .filter((el) => ![...el.children].some((c) => c.getBoundingClientRect().right > window.innerWidth + 1))
        .slice(0, 5)
        .map((el) => `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''}.${el.className}: "${(el.textContent || '').slice(0, 40)}"`);
      return { by, wide };
    });
    check('no horizontal page overflow on a phone', overflow.by <= 1, `${overflow.by}px ${overflow.wide.join('; ')}`);
    const cutPhone = await cutCells(page);
    check('nothing is cut on a phone (tables scroll sideways instead)', cutPhone.length === 0, cutPhone.slice(0, 8).join('; '));
    await shot(page, '08-phone');
    await page.setViewportSize({ width: 1440, height: 1000 });

    const byKey = new Map();
    for (const r of actionRequests) byKey.set(r.key, [...(byKey.get(r.key) || []), r.body]);
    check('every operator action carries an idempotency key of its own (a resend only repeats its own)',
      actionRequests.length > 0 && actionRequests.every((r) => /^[0-9a-f]{32}$/.test(r.key))
        && [...byKey.values()].every((bodies) => bodies.every((b) => b === bodies[0]))
        && byKey.size === actionRequests.length - 1,
      `${actionRequests.length} action requests, ${byKey.size} keys`);
    check('no script errors and nothing fetched outside the center', problems.length === 0, problems.join('; '));
  } finally {
    fs.writeFileSync(path.join(artifacts, 'dashboard-results.json'), JSON.stringify(results, null, 2));
    await context.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

main().then(() => {
  log(`all ${results.checks.length} checks passed`);
}).catch((e) => {
  console.error(`[dashboard] FAILED: ${e.message}`);
  process.exit(1);
});
