// The customer's journey through the dashboard, in Chromium against a real server and
// Postgres: sign up, verify the email, create an app, copy its key, connect a second page with
// our SDK, watch the live count, publish from the console and see the event arrive, rotate
// the key and see the old one refused, and another account refused the app. Every page gets
// an axe-core check (no serious or critical violation) and a screenshot in tests/output/.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { accessibilityViolations, clearScreenshots, launchBrowser, newPage, screenshot, sdkBundle, startServer, uid, waitFor, webhookReceiver } from './harness.mjs';

const PASSWORD = 'correct horse battery staple';
let server;
let browser;
let bundle;
const owner = {};

before(async () => {
  clearScreenshots();
  [server, browser, bundle] = await Promise.all([startServer(), launchBrowser(), sdkBundle()]);
  owner.email = `${uid('owner-')}@example.com`;
  Object.assign(owner, await newPage(browser, server));
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

/** axe-core on the page as shown, then a screenshot named after it. */
async function checkPage(page, name) {
  assert.deepEqual(await accessibilityViolations(page), [], `accessibility of ${name}`);
  await screenshot(page, name);
}

async function signUp(page, email) {
  await page.goto('/signup');
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.waitForURL('**/applications');
  await page.getByRole('heading', { name: 'Apps', level: 1 }).waitFor();
}

/** A page with our SDK connected to the edge with `key`, recording states, errors and events. */
async function sdkPage(key) {
  const { page } = await newPage(browser, server);
  await page.setContent(`<!doctype html><html lang="en"><title>SDK client</title><script>${bundle.replace(/<\/script/g, '<\\/script')}</script></html>`);
  await page.evaluate(
    ({ key, port }) => {
      window.received = [];
      window.errors = [];
      window.client = new Switchboard(key, { host: '127.0.0.1', port, useTLS: false, transports: ['ws'] });
      window.client.connection.bind('error', (error) => window.errors.push(error));
      window.client.subscribe('my-channel').bind('my-event', (data) => window.received.push(data));
    },
    { key, port: server.port },
  );
  return page;
}

const state = (page) => page.evaluate(() => window.client.connection.state);

test('the logged-out pages: log in, sign up, password reset', async () => {
  const { page } = owner;
  await page.goto('/');
  await page.waitForURL('**/login?next=*');
  await page.getByRole('heading', { name: 'Log in' }).waitFor();
  // By keyboard: focus starts on the page's content (as after every navigation), so the first
  // Tab reaches the form's first field, drawn with a visible focus ring.
  await page.keyboard.press('Tab');
  const focused = await page.evaluate(() => ({ label: document.activeElement.labels?.[0]?.textContent, outline: getComputedStyle(document.activeElement).outlineStyle }));
  assert.deepEqual(focused, { label: 'Email', outline: 'solid' });
  await checkPage(page, '01-login');
  await page.goto('/signup');
  await page.getByRole('heading', { name: 'Create your account' }).waitFor();
  await checkPage(page, '02-signup');
  await page.goto('/reset-password');
  await page.getByRole('heading', { name: 'Reset your password' }).waitFor();
  await page.getByRole('button', { name: 'Send a reset link' }).waitFor();
  await checkPage(page, '03-reset-password');
});

test('sign up logs the owner straight in; the email can be verified', async () => {
  const { page } = owner;
  await signUp(page, owner.email);
  await page.getByText('No apps yet').waitFor();
  await checkPage(page, '04-apps-empty');
  await page.goto('/verify-email');
  await page.getByRole('heading', { name: 'Verify your email' }).waitFor();
  await page.getByText(/is not verified yet/).waitFor();
  // The log mailer writes the mail, with its one-time link, to the server's output.
  const token = await waitFor('the verification mail in the server log', () => server.log().match(/verify-email\?token=([A-Za-z0-9_-]+)/)?.[1]);
  await page.goto(`/verify-email?token=${token}`);
  await page.getByText('Your email is verified.').waitFor();
  await page.getByText(/is not verified yet/).waitFor({ state: 'detached' });
  await checkPage(page, '05-verify-email');
});

test('create an app and copy its key', async () => {
  const { page } = owner;
  await page.goto('/applications');
  await page.getByLabel('New app name').fill('Chat');
  await page.getByRole('button', { name: 'Create app' }).click();
  const shown = page.getByTestId('created-key');
  await shown.waitFor();
  owner.key = (await shown.textContent()).trim();
  assert.match(owner.key, /^\S{8,}$/);
  await page.getByRole('button', { name: 'Copy key' }).click();
  await page.getByText('Copied').first().waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), owner.key);
  await page.getByRole('heading', { name: 'Chat', level: 2 }).waitFor();
  await checkPage(page, '06-apps');
  await page.getByRole('link', { name: 'Open Chat' }).click();
  await page.getByRole('heading', { name: 'Chat', level: 1 }).waitFor();
  owner.appId = page.url().split('/').pop();
  await page.getByRole('button', { name: 'Reveal secret' }).click();
  await page.locator('.keys .secret').waitFor();
  const secret = (await page.locator('.keys .secret').textContent()).trim();
  // Every snippet carries this app's key; the server libraries' also its id and secret.
  for (const [library, server] of [['Switchboard JS', false], ['pusher-js', false], ['Node (pusher)', true], ['Python (pusher)', true]]) {
    await page.getByRole('button', { name: library, exact: true }).click();
    const snippet = await page.getByLabel(`${library} snippet`).textContent();
    assert.ok(snippet.includes(owner.key), `the ${library} snippet has the key`);
    if (server) assert.ok(snippet.includes(owner.appId) && snippet.includes(secret), `the ${library} snippet has the app id and secret`);
    assert.ok(snippet.includes('127.0.0.1'), `the ${library} snippet points at this server`);
  }
  await checkPage(page, '07-app-detail');
});

/**
 * Usage as the edge's flush writes it (PgUsageSink's tables): the last minutes, and a day at
 * 85% of the sandbox plan's 200,000 messages, so the charts and the 80% warning have data.
 */
async function recordUsage(appId) {
  await server.sql(
    `INSERT INTO usage_minutes (app_id, minute, peak_connections, connections_opened, messages_published, messages_delivered, bytes_out)
     SELECT $1, date_trunc('minute', now()) - make_interval(mins => n), n, n, 10 * n, 20 * n, 100 * n FROM generate_series(1, 5) AS n
     ON CONFLICT DO NOTHING`,
    [appId],
  );
  await server.sql(
    `INSERT INTO usage_days (app_id, day, peak_connections, messages_published, messages_delivered)
     VALUES ($1, date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', 5, 100000, 70000)
     ON CONFLICT (app_id, day) DO UPDATE SET messages_published = usage_days.messages_published + 100000,
       messages_delivered = usage_days.messages_delivered + 70000`,
    [appId],
  );
}

test('a second page connects with our SDK; the live view counts it; usage charts and the 80% warning', async () => {
  await recordUsage(owner.appId);
  owner.client = await sdkPage(owner.key);
  await waitFor('the SDK page to connect', async () => (await state(owner.client)) === 'connected');
  const { page } = owner;
  await page.goto(`/applications/${owner.appId}/usage`);
  await page.getByRole('heading', { name: 'Today (UTC) against your plan' }).waitFor();
  await waitFor('the live count to reach 1', async () => (await page.getByTestId('live-connections').textContent()).trim() === '1');
  await page.getByText(/Messages are at 8\d% of the plan's daily limit/).waitFor();
  await page.locator('.chart canvas').first().waitFor();
  assert.equal(await page.locator('.chart').count(), 2, 'peak connections, messages published and delivered');
  await page.getByText('Messages published and delivered as a table').click();
  await page.getByRole('cell', { name: '100', exact: true }).first().waitFor(); // delivered, 5 minutes ago
  await checkPage(page, '08-usage');
  await page.getByLabel('Range').selectOption('30d');
  await page.locator('.chart canvas').first().waitFor();
  // Days of one's choice: yesterday and today per day holds today's row; per minute over 30
  // days is more points than the API gives, and the page says why.
  const day = (offset) => new Date(Date.now() + offset * 86400_000).toISOString().slice(0, 10);
  await page.getByLabel('Range').selectOption('custom');
  await page.getByLabel('First day').fill(day(-1));
  await page.getByLabel('Last day').fill(day(0));
  await page.getByLabel('Per', { exact: true }).selectOption('day');
  // The tables of the charts (opened above, and kept open as the range changes).
  await page.locator('.chart details').evaluateAll((all) => all.forEach((details) => (details.open = true)));
  const todayRow = page.locator('.chart').nth(1).locator('tbody tr', { hasText: `${day(0)} 00:00` });
  await todayRow.waitFor();
  const [, published, delivered] = await todayRow.locator('td').allTextContents();
  assert.ok(Number(published) >= 100000 && Number(delivered) >= 70000, `today's row: ${published} published, ${delivered} delivered`);
  await page.getByLabel('First day').fill(day(-30));
  await page.getByLabel('Per', { exact: true }).selectOption('minute');
  await page.getByRole('alert').filter({ hasText: /Could not load usage: .*at most/ }).waitFor();
});

test('webhooks: add one, see its delivery in the log, remove it', async () => {
  const receiver = await webhookReceiver();
  try {
    const { page } = owner;
    await page.goto(`/applications/${owner.appId}`);
    await page.getByText('No webhooks yet.').waitFor();
    await page.getByLabel('Webhook URL').fill(receiver.url);
    await page.getByLabel('channel_occupied', { exact: true }).check();
    await page.getByRole('button', { name: 'Add webhook' }).click();
    await page.locator('.webhooks li', { hasText: receiver.url }).waitFor();
    // The edge learns of the webhook through a Postgres notification: occupy a fresh channel
    // from the SDK page every second until the receiver hears of one.
    let occupied = 0;
    let lastAt = 0;
    const request = await waitFor('channel_occupied at the receiver', async () => {
      const heard = receiver.requests.find((entry) => entry.body.includes('channel_occupied'));
      if (heard) return heard;
      if (Date.now() - lastAt >= 1000) {
        lastAt = Date.now();
        occupied += 1;
        await owner.client.evaluate((name) => window.client.subscribe(name), `hooked-${occupied}`);
      }
      return undefined;
    });
    assert.match(request.body, /"channel":"hooked-\d+"/);
    assert.equal(request.headers['x-pusher-key'], owner.key, 'signed with the app’s key');
    await waitFor('the delivery in the log', async () => {
      await page.getByRole('button', { name: 'Refresh the delivery log' }).click();
      return (await page.getByRole('cell', { name: 'delivered', exact: true }).count()) > 0;
    });
    await page.getByRole('cell', { name: '200', exact: true }).first().waitFor();
    await checkPage(page, '09-webhooks');
    await page.getByRole('button', { name: `Remove webhook ${receiver.url}` }).click();
    await page.getByRole('button', { name: `Remove ${receiver.url}` }).click();
    await page.getByText('No webhooks yet.').waitFor();
  } finally {
    await receiver.close();
  }
});

test('publish from the console: the event reaches the SDK page (and the stream)', async () => {
  const { page } = owner;
  await page.goto(`/applications/${owner.appId}/console`);
  await page.getByRole('heading', { name: 'Publish a test event' }).waitFor();
  // The edge reports an app's events only while someone watches: wait until we do.
  await page.getByText('Feed listening').waitFor();
  // The live view in another tab, sampling already (a figure shown), counts the publish.
  const usageTab = await owner.context.newPage();
  await usageTab.goto(`/applications/${owner.appId}/usage`);
  await waitFor('the live view’s first figures', async () => (await usageTab.getByTestId('live-connections').textContent()).trim() !== '–');
  await page.getByLabel('Channel', { exact: true }).fill('my-channel');
  await page.getByLabel('Event name').fill('my-event');
  await page.getByLabel('Data').fill('{"text":"hello from the console"}');
  await page.getByRole('button', { name: 'Publish' }).click();
  await page.getByText('Published my-event on my-channel.').waitFor();
  const received = await waitFor('the event on the SDK page', () => owner.client.evaluate(() => window.received[0]));
  assert.deepEqual(received, { text: 'hello from the console' });
  // One published, one delivered, within the last minute: without a reload.
  await waitFor('the live view to count the publish', async () => Number((await usageTab.getByTestId('live-messages').textContent()).trim()) >= 2);
  await usageTab.close();
  await page.locator('.stream li[data-type="api_publish"]', { hasText: 'my-channel' }).first().waitFor();
  await page.getByLabel('Type').selectOption('api_publish');
  await page.getByLabel('Channel contains').fill('no-such-channel');
  await page.getByText('No events yet matching the filters.').waitFor();
  await page.getByLabel('Channel contains').fill('');
  await page.getByRole('button', { name: 'Pause' }).click();
  await page.getByRole('button', { name: 'Resume' }).waitFor();
  await page.getByRole('button', { name: 'Resume' }).click();
  await page.getByLabel('Type').selectOption('');
  // A publish the edge refuses (a channel name with a space): the form announces why, the
  // stream shows the refusal, and so does the refusal log.
  await page.getByLabel('Channel', { exact: true }).fill('bad channel');
  await page.getByRole('button', { name: 'Publish' }).click();
  await page.getByRole('alert').filter({ hasText: /The edge refused the event \(400\)/ }).waitFor();
  await page.locator('.stream li[data-type="refusal"]').first().waitFor();
  await page.getByRole('heading', { name: 'Recent refusals' }).waitFor();
  await waitFor('the refusal in the log', async () => {
    await page.getByRole('button', { name: 'Refresh refusals' }).click();
    return (await page.locator('.refusals tbody tr', { hasText: 'api' }).count()) > 0;
  });
  await page.locator('.refusals tbody tr', { hasText: '400' }).first().waitFor();
  await checkPage(page, '10-console');
});

test('rotating a key: the old key is refused, the new one connects', async () => {
  const { page } = owner;
  await page.goto(`/applications/${owner.appId}`);
  await page.getByRole('button', { name: `Rotate key ${owner.key}` }).click();
  await page.getByText(`Key ${owner.key} rotated`).waitFor();
  // The list reloads after the note: wait until it shows the old key revoked.
  await page.locator('.keys li.revoked', { hasText: owner.key }).waitFor();
  const fresh = page.locator('.keys li:not(.revoked) [data-testid="app-key"]');
  const newKey = (await fresh.textContent()).trim();
  assert.notEqual(newKey, owner.key);
  // The connection on the old key is closed, and a new one on it is refused (4000-4099).
  await waitFor('the old key’s connection to be closed', async () => (await state(owner.client)) !== 'connected');
  const stale = await sdkPage(owner.key);
  const refusal = await waitFor('the old key to be refused', () => stale.evaluate(() => window.errors.find((error) => error.data && error.data.code >= 4000 && error.data.code < 4100)));
  assert.ok(refusal, 'a refusal code');
  assert.equal(await state(stale), 'disconnected');
  const renewed = await sdkPage(newKey);
  await waitFor('the new key to connect', async () => (await state(renewed)) === 'connected');
  await checkPage(page, '11-keys-rotated');
});

test('the account page and the plans page', async () => {
  const { page } = owner;
  await page.goto('/account');
  await page.getByLabel('Token name').fill('ci');
  await page.getByRole('button', { name: 'Create token' }).click();
  await page.locator('.secret-box code.secret').waitFor();
  assert.match(await page.locator('.secret-box code.secret').textContent(), /^sbt_/);
  await page.getByRole('button', { name: 'Revoke ci' }).click();
  await page.getByText(/^revoked /).waitFor();
  // The audit log lists what this account did, newest first (read once, on page load).
  await page.reload();
  for (const action of ['api_token.revoked', 'key.rotated', 'key.secret_revealed', 'app.created', 'email.verified', 'account.created']) {
    await page.getByRole('cell', { name: action, exact: true }).first().waitFor();
  }
  await page.getByLabel('Current password').fill(PASSWORD);
  await page.getByLabel('New password').fill(`${PASSWORD} again`);
  await page.getByRole('button', { name: 'Change password' }).click();
  await page.getByText(/^Password changed\./).waitFor();
  await checkPage(page, '12-account');
  await page.goto('/plans');
  await page.getByRole('heading', { name: 'The ladder' }).waitFor();
  await page.getByRole('link', { name: 'Chat' }).waitFor();
  await checkPage(page, '13-plans');
  // Without Stripe keys (this server has none) the billing page says who sets plans.
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Billing' }).click();
  await page.getByText('Billing is not set up on this deployment: plans are set by the operator.').waitFor();
  await checkPage(page, '13-billing-off');
});

test('another account gets nothing of this one’s app', async () => {
  const other = await newPage(browser, server);
  await signUp(other.page, `${uid('other-')}@example.com`);
  for (const section of ['', '/usage', '/console']) {
    await other.page.goto(`/applications/${owner.appId}${section}`);
    await other.page.getByRole('heading', { name: 'App not found' }).waitFor();
    const text = await other.page.locator('body').innerText();
    assert.ok(!text.includes('Chat') && !text.includes(owner.key), `no data of the other tenant on ${section || 'the app page'}`);
  }
  const keys = await other.page.evaluate(async (id) => (await fetch(`/v1/apps/${id}/keys`)).status, owner.appId);
  assert.equal(keys, 404);
  await checkPage(other.page, '14-other-tenant-refused');
  assert.deepEqual(other.problems, []);
});

test('phone width: no sideways scrolling; rename, disable, keys, delete behind a confirmation; log out; reset the password', async () => {
  const phone = await newPage(browser, server, { width: 375, height: 740 });
  const email = `${uid('phone-')}@example.com`;
  await signUp(phone.page, email);
  await phone.page.getByLabel('New app name').fill('Pocket');
  await phone.page.getByRole('button', { name: 'Create app' }).click();
  await phone.page.getByRole('link', { name: 'Open Pocket' }).click();
  await phone.page.getByRole('heading', { name: 'Pocket', level: 1 }).waitFor();
  const overflow = await phone.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow} px wider than the phone`);
  await screenshot(phone.page, '15-phone-app-detail');
  await phone.page.getByLabel('Allowed origins for browser connections').fill('https://pocket.example.com');
  await phone.page.getByRole('button', { name: 'Save settings' }).click();
  await phone.page.getByText('Settings saved.').waitFor();
  await phone.page.reload();
  assert.equal(await phone.page.getByLabel('Allowed origins for browser connections').inputValue(), 'https://pocket.example.com');
  // The server normalises origins; an invalid one is refused and the page says why.
  await phone.page.getByLabel('Allowed origins for browser connections').fill('not an origin');
  await phone.page.getByRole('button', { name: 'Save settings' }).click();
  await phone.page.getByRole('alert').filter({ hasText: /origin/i }).waitFor();
  await phone.page.getByLabel('Allowed origins for browser connections').fill('https://pocket.example.com');
  await phone.page.getByLabel('Client events on private and presence channels').uncheck();
  await phone.page.getByLabel('Subscription counting (subscription_count events and webhooks)').check();
  await phone.page.getByRole('button', { name: 'Save settings' }).click();
  await phone.page.getByText('Settings saved.').waitFor();
  const app = await phone.page.evaluate(async (id) => (await fetch(`/v1/apps/${id}`)).json(), phone.page.url().split('/').pop());
  assert.deepEqual([app.client_events, app.subscription_counting, app.allowed_origins], [false, true, ['https://pocket.example.com']]);

  await phone.page.getByLabel('App name').fill('Pocket two');
  await phone.page.getByRole('button', { name: 'Rename' }).click();
  await phone.page.getByRole('heading', { name: 'Pocket two', level: 1 }).waitFor();
  await phone.page.getByRole('button', { name: 'Disable app' }).click();
  await phone.page.locator('h1 .badge', { hasText: 'disabled' }).waitFor();
  await phone.page.getByRole('button', { name: 'Enable app' }).click();
  await phone.page.locator('h1 .badge').waitFor({ state: 'detached' });

  // A second key, then revoked behind its confirmation.
  await phone.page.getByRole('button', { name: 'Add a key' }).click();
  await phone.page.getByText(/^New key \S+ created\.$/).waitFor();
  const second = (await phone.page.getByText(/^New key \S+ created\.$/).textContent()).split(' ')[2];
  await phone.page.getByRole('button', { name: `Revoke key ${second}` }).click();
  await phone.page.getByRole('button', { name: `Revoke ${second} now` }).click();
  await phone.page.locator('.keys li.revoked', { hasText: second }).waitFor();

  await phone.page.getByRole('button', { name: 'Delete app' }).click();
  await phone.page.getByRole('button', { name: 'Delete Pocket two permanently' }).click();
  await phone.page.getByText('No apps yet').waitFor();
  await phone.page.getByRole('button', { name: 'Log out' }).click();
  await phone.page.getByRole('heading', { name: 'Log in' }).waitFor();

  // Forgotten password: the reset mail's link (from the log mailer), a new password, log in.
  await phone.page.getByRole('link', { name: 'Forgot your password?' }).click();
  await phone.page.getByLabel('Email').fill(email);
  await phone.page.getByRole('button', { name: 'Send a reset link' }).click();
  await phone.page.getByText('If an account has this email, a reset link is on its way.').waitFor();
  const resetToken = await waitFor('the reset mail in the server log', () => {
    const line = server.log().split('\n').find((entry) => entry.includes(email) && entry.includes('reset-password?token='));
    return line?.match(/reset-password\?token=([A-Za-z0-9_-]+)/)?.[1];
  });
  await phone.page.goto(`/reset-password?token=${resetToken}`);
  await phone.page.getByLabel('New password').fill(`${PASSWORD} renewed`);
  await phone.page.getByRole('button', { name: 'Set the new password' }).click();
  await phone.page.getByText('Your password is changed. You can log in with it now.').waitFor();
  await phone.page.goto('/login');
  await phone.page.getByLabel('Email').fill(email);
  await phone.page.getByLabel('Password').fill(`${PASSWORD} renewed`);
  await phone.page.getByRole('button', { name: 'Log in' }).click();
  await phone.page.getByRole('heading', { name: 'Apps', level: 1 }).waitFor();
  assert.deepEqual(phone.problems, []);
});

test('no script or console errors on the owner’s pages', () => {
  assert.deepEqual(owner.problems, []);
});
