// What both browser scripts need around Playwright: a log with the script's tag, checks that stop at
// the first failure and are kept for the results file, screenshots kept as artifacts, waits that
// leave a screenshot of the page they timed out on, and the confirmation dialog every user action
// goes through.

import path from 'node:path';

export function harness(tag, artifacts) {
  const results = { screenshots: [], checks: [] };
  const log = (...a) => console.log(`[${tag}]`, ...a);

  function check(name, ok, detail = '') {
    results.checks.push({ name, ok, detail });
    if (!ok) throw new Error(`check failed: ${name}${detail ? `: ${detail}` : ''}`);
    log(`ok: ${name}${detail ? ` (${detail})` : ''}`);
  }

  async function shot(page, name) {
    const file = path.join(artifacts, `${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    results.screenshots.push(file);
    log(`screenshot ${file}`);
  }

  async function waitFor(page, what, fn, arg, timeout = 30000) {
    try {
      const handle = await page.waitForFunction(fn, arg, { timeout, polling: 200 });
      return await handle.jsonValue();
    } catch (e) {
      await shot(page, `failed-${what.replace(/\W+/g, '-')}`).catch(() => {});
      throw new Error(`timed out waiting for ${what}`);
    }
  }

  // Confirms the open dialog with `reason`, after checking it is modal and labelled.
  async function confirmDialog(page, reason) {
    const dialog = page.locator('#confirm');
    await dialog.waitFor({ state: 'visible', timeout: 5000 });
    check('the confirmation dialog is modal and labelled', await page.evaluate(() => {
      const d = document.querySelector('#confirm');
      return d.open && d.matches(':modal') && !!document.getElementById(d.getAttribute('aria-labelledby')).textContent;
    }));
    await page.fill('#confirm-reason', reason);
    await page.click('#confirm-ok');
    await dialog.waitFor({ state: 'hidden', timeout: 5000 });
  }

  return { results, log, check, shot, waitFor, confirmDialog };
}
