// The upgrade, end to end in Chromium: `switchboard serve` with billing on, pointed at the
// fake Stripe running as a process (`fake-stripe`, which signs its webhooks as Stripe does
// and holds them until this test releases them), `switchboard admin sync-stripe`, then an
// owner on the free plan fills its 100 connections (the 101st refused with 4004), upgrades
// from the billing page through the fake's hosted checkout, comes back, and the plan is
// still free until the webhook arrives; once released, the plan is paid and the edge admits
// the 101st connection. The billing page passes axe-core before and after.
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';

import { accessibilityViolations, freePort, launchBrowser, newPage, screenshot, startServer, switchboardBinary, uid, waitFor, workspaceBinary, WAIT_MS } from './harness.mjs';

const PASSWORD = 'correct horse battery staple';
const SECRET_KEY = 'sk_test_dashboard_upgrade';
const WEBHOOK_SECRET = `whsec_${uid()}`;
/** The free plan's concurrent connections (DESIGN.md's ladder: the sandbox stops there). */
const FREE_CONNECTIONS = 100;

let fake;
let server;
let browser;

/** `fake-stripe` on a free port, delivering to `webhookUrl` but holding every event. */
async function startFakeStripe(webhookUrl) {
  const binary = workspaceBinary('fake-stripe');
  if (!existsSync(binary)) throw new Error(`${binary} is missing: run \`cargo build -p billing --bin fake-stripe\``);
  const child = spawn(binary, ['--port', '0', '--secret-key', SECRET_KEY, '--webhook-secret', WEBHOOK_SECRET, '--webhook-url', webhookUrl, '--hold-webhooks'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const lines = createInterface({ input: child.stdout });
  const base = await Promise.race([
    new Promise((resolve) => lines.once('line', resolve)),
    exited.then((code) => Promise.reject(new Error(`fake-stripe exited ${code} before listening`))),
  ]);
  assert.match(base, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  const control = async (path, method = 'GET') => (await fetch(`${base}_fake/webhooks${path}`, { method })).json();
  return {
    base,
    pending: () => control(''),
    release: () => control('/release', 'POST'),
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

before(async () => {
  const port = await freePort();
  fake = await startFakeStripe(`http://127.0.0.1:${port}/v1/stripe/webhook`);
  [server, browser] = await Promise.all([
    startServer({
      port,
      env: { STRIPE_SECRET_KEY: SECRET_KEY, STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET, STRIPE_API_BASE: fake.base, SWITCHBOARD_PUBLIC_URL: `http://127.0.0.1:${port}` },
    }),
    launchBrowser(),
  ]);
  const { stdout } = await promisify(execFile)(switchboardBinary(), ['admin', 'sync-stripe'], { env: server.env });
  assert.match(stdout, /startup/, 'sync-stripe made the paid plans');
});
after(async () => {
  await browser?.close();
  await server?.stop();
  await fake?.stop();
});

async function checkPage(page, name) {
  assert.deepEqual(await accessibilityViolations(page), [], `accessibility of ${name}`);
  await screenshot(page, name);
}

/** A blank page that opens raw Pusher-protocol WebSockets to the edge and keeps them open. */
async function socketPage(key) {
  const { page } = await newPage(browser, server);
  await page.setContent('<!doctype html><html lang="en"><title>sockets</title></html>');
  await page.evaluate(
    ({ url }) => {
      window.sockets = [];
      // Resolves with the edge's first word: established, or refused with its code.
      window.openSocket = () =>
        new Promise((resolve) => {
          const socket = new WebSocket(url);
          socket.onmessage = (message) => {
            const frame = JSON.parse(message.data);
            const data = typeof frame.data === 'string' ? JSON.parse(frame.data) : frame.data;
            if (frame.event === 'pusher:connection_established') {
              window.sockets.push(socket);
              resolve({ established: true });
            } else if (frame.event === 'pusher:error') resolve({ established: false, code: data.code });
          };
          socket.onclose = (event) => resolve({ established: false, code: event.code });
        });
    },
    { url: `ws://127.0.0.1:${server.port}/app/${key}?protocol=7&client=js&version=8.4.0` },
  );
  return page;
}

const openSockets = (page, count) => page.evaluate((count) => Promise.all(Array.from({ length: count }, () => window.openSocket())), count);

const appPlan = async (appId) => (await server.sql('SELECT plan_id FROM apps WHERE id = $1', [appId]))[0].plan_id;

test('an owner upgrades from the billing page; the plan is paid from the webhook and the edge admits more', async () => {
  const { page, problems } = await newPage(browser, server);
  const email = `${uid('payer-')}@example.com`;
  await page.goto('/signup');
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.waitForURL('**/applications');
  const token = await waitFor('the verification mail in the server log', () => server.log().match(/verify-email\?token=([A-Za-z0-9_-]+)/)?.[1]);
  await page.goto(`/verify-email?token=${token}`);
  await page.getByText('Your email is verified.').waitFor();
  await page.goto('/applications');
  await page.getByLabel('New app name').fill('Paid app');
  await page.getByRole('button', { name: 'Create app' }).click();
  const key = (await page.getByTestId('created-key').textContent()).trim();
  const [{ app_id: appId }] = (await (await page.request.get('/v1/apps')).json()).filter((app) => app.name === 'Paid app');

  // On the free plan: its 100 connections are admitted, the 101st refused with 4004.
  const sockets = await socketPage(key);
  const first = await openSockets(sockets, FREE_CONNECTIONS);
  assert.equal(first.filter((answer) => answer.established).length, FREE_CONNECTIONS);
  assert.deepEqual(await openSockets(sockets, 1), [{ established: false, code: 4004 }]);

  await page.goto('/billing');
  await page.getByRole('heading', { name: 'Upgrade' }).waitFor();
  assert.equal(await page.getByTestId('current-plan').textContent(), 'Sandbox');
  await page.getByText('No invoices yet.').waitFor();
  await checkPage(page, '20-billing-free');

  // Checkout on the fake's hosted page, then back to the dashboard.
  await page.getByRole('button', { name: 'Upgrade to Startup' }).click();
  await page.waitForURL(`${fake.base}checkout/**`);
  await page.getByRole('heading', { name: 'Fake Stripe Checkout' }).waitFor();
  await page.getByRole('button', { name: 'Pay' }).click();
  await page.waitForURL('**/billing?checkout=success');
  await page.getByText('waiting for Stripe to confirm the payment').waitFor();

  // Paid, redirected, and still free: the webhook has not arrived (the fake holds it).
  const held = await fake.pending();
  assert.deepEqual(held.pending, ['checkout.session.completed', 'customer.subscription.created', 'invoice.paid']);
  assert.equal(await appPlan(appId), 'sandbox', 'the redirect alone changes no plan');
  assert.equal(await page.getByTestId('current-plan').textContent(), 'Sandbox');
  assert.deepEqual(await openSockets(sockets, 1), [{ established: false, code: 4004 }]);

  assert.deepEqual(await fake.release(), { delivered: 3 });
  await page.getByText('Stripe confirmed the payment: your apps are on Startup.').waitFor();
  assert.equal(await page.getByTestId('current-plan').textContent(), 'Startup');
  assert.equal(await appPlan(appId), 'startup');
  assert.match(await page.getByTestId('projected-bill').textContent(), /^\$29\.00/);
  const invoice = page.getByRole('link', { name: /^View invoice of / });
  assert.ok((await invoice.getAttribute('href')).startsWith(fake.base), 'the invoice links to Stripe');
  await page.getByRole('button', { name: 'Manage payment method' }).waitFor();
  await page.getByRole('button', { name: 'Switch to Pro' }).waitFor();
  await checkPage(page, '21-billing-paid');

  // The edge learns the new plan (the catalog reloads on NOTIFY): the 101st is admitted now,
  // with the first 100 still open.
  await waitFor(
    'the edge to admit connection 101 on the paid plan',
    async () => {
      const [answer] = await openSockets(sockets, 1);
      if (!answer.established) assert.equal(answer.code, 4004, 'refused only for the limit until the plan arrives');
      return answer.established;
    },
    WAIT_MS,
  );
  assert.equal(await sockets.evaluate(() => window.sockets.filter((socket) => socket.readyState === WebSocket.OPEN).length), FREE_CONNECTIONS + 1);
  assert.deepEqual(problems, []);
});
