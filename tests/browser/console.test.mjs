// Drives the admin console in headless Chromium against a running Tally (TALLY_URL, with the
// secret key TALLY_KEY): signs in, finds an end user seeded here, grants credits, watches the
// balance change live while this script spends credits through the API, reverses a debit, voids
// a grant, sees a refused action's error, and takes screenshots (SCREENSHOT_DIR) at desktop and
// 375 px widths. Any browser console error fails the run. Started by run.sh.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const base = process.env.TALLY_URL ?? 'http://127.0.0.1:8080';
const key = process.env.TALLY_KEY;
const shots = process.env.SCREENSHOT_DIR ?? 'screenshots';
const browserPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
assert.ok(key, 'TALLY_KEY must name a secret key');
mkdirSync(shots, { recursive: true });

async function api(query, variables) {
  const response = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${key}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  assert.equal(body.errors, undefined, JSON.stringify(body.errors));
  return body.data;
}

const step = (text) => console.log(`- ${text}`);

// An application's own id, with characters a URL must escape: the console links to it.
const endUser = `auth0|console/${randomUUID().slice(0, 8)} #1`;
await api('mutation($u: ID!) { addCredits(input: {endUserId: $u, amount: 100, validityDays: 30, source: TRIAL}) { grant { id } } }', { u: endUser });
// Another end user, so the list has more than the one we look for.
await api('mutation($u: ID!) { addCredits(input: {endUserId: $u, amount: 7}) { grant { id } } }', { u: randomUUID() });

const browser = await chromium.launch({ executablePath: browserPath, args: ['--no-sandbox'] });
const consoleErrors = [];
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on('console', (message) => {
    if (message.type() === 'error') consoleErrors.push(message.text());
  });
  page.on('pageerror', (error) => consoleErrors.push(String(error)));
  page.setDefaultTimeout(10_000);

  step('/ redirects to /admin, which asks to sign in');
  await page.goto(`${base}/`);
  assert.match(page.url(), /\/admin$/);
  await page.getByLabel('Secret key').waitFor();

  step('a wrong key is refused with the API\'s error');
  await page.getByLabel('Secret key').fill('tally_sk_not_a_real_key_000000000');
  await page.keyboard.press('Enter');
  await page.locator('#notice', { hasText: 'UNAUTHENTICATED' }).waitFor();

  step('signs in (keyboard only) and finds the seeded end user');
  await page.getByLabel('Secret key').fill(key);
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'End users' }).waitFor();
  assert.equal(await page.evaluate(() => location.href.includes('tally_sk')), false, 'the key is never in a URL');
  await page.getByLabel('Find an end user').fill(endUser);
  await page.keyboard.press('Enter');
  await page.getByRole('link', { name: endUser }).click();
  await page.locator('#available', { hasText: /^100$/ }).waitFor();
  // The page names the end user exactly, though the id went through the URL escaped.
  await page.getByRole('heading', { name: endUser, exact: true }).waitFor();
  await page.locator('#live-status', { hasText: 'live' }).waitFor();

  step('grants 50 credits through the form, with a confirmation');
  await page.getByLabel('Credits', { exact: true }).first().fill('50');
  await page.getByRole('button', { name: 'Grant credits' }).click();
  await page.locator('#confirm-text', { hasText: 'Grant 50 credits' }).waitFor();
  await page.getByRole('button', { name: 'Confirm' }).click();
  await page.locator('#notice', { hasText: 'Granted 50 credits.' }).waitFor();
  await page.locator('#available', { hasText: /^150$/ }).waitFor();

  step('the balance changes live when credits are spent through the API');
  await api('mutation($u: ID!) { subtractCredits(input: {endUserId: $u, amount: 30, description: "from the test"}) { entry { id } } }', { u: endUser });
  await page.locator('#available', { hasText: /^120$/ }).waitFor();

  step('reverses the debit');
  await page.locator('[data-reverse]').first().click();
  await page.getByRole('button', { name: 'Confirm' }).click();
  await page.locator('#notice', { hasText: 'Reversed debit' }).waitFor();
  await page.locator('#available', { hasText: /^150$/ }).waitFor();

  step('voids the trial grant (first in burn-down order: it expires first)');
  await page.locator('[data-void]').first().click();
  await page.locator('#confirm-text', { hasText: '100 remaining credits' }).waitFor();
  await page.getByRole('button', { name: 'Confirm' }).click();
  await page.locator('#notice', { hasText: 'Voided grant' }).waitFor();
  await page.locator('#available', { hasText: /^50$/ }).waitFor();

  step('a refused debit shows the API\'s code and message');
  await page.locator('#debit-amount').fill('1000');
  await page.getByRole('button', { name: 'Debit credits' }).click();
  await page.getByRole('button', { name: 'Confirm' }).click();
  await page.locator('#notice', { hasText: 'INSUFFICIENT_CREDITS' }).waitFor();
  assert.match(await page.locator('#notice').textContent(), /50 available, 1000 requested/);
  await page.locator('#available', { hasText: /^50$/ }).waitFor();

  step('screenshots at desktop and 375 px');
  await page.screenshot({ path: join(shots, 'console-desktop.png'), fullPage: true });
  await page.setViewportSize({ width: 375, height: 800 });
  // The balance card re-renders on every refresh, so scroll the window rather than an element.
  await page.evaluate(() => window.scrollTo(0, 0));
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow}px wider than a 375 px screen`);
  await page.screenshot({ path: join(shots, 'console-phone.png'), fullPage: true });

  step('the other pages open');
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.getByRole('link', { name: 'Bundles' }).click();
  await page.getByRole('heading', { name: 'Bundles' }).waitFor();
  await page.getByRole('link', { name: 'Stripe events' }).click();
  await page.getByRole('heading', { name: 'Stripe events' }).waitFor();
  await page.getByRole('link', { name: 'End users' }).click();
  await page.getByRole('heading', { name: 'End users' }).waitFor();
  await page.screenshot({ path: join(shots, 'console-end-users.png'), fullPage: true });
} catch (error) {
  if (consoleErrors.length) console.error(`browser console errors:\n${consoleErrors.join('\n')}`);
  throw error;
} finally {
  await browser.close();
}

assert.deepEqual(consoleErrors, [], `browser console errors:\n${consoleErrors.join('\n')}`);
console.log(`console browser test passed; screenshots in ${shots}`);
