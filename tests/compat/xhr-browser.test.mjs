// pusher-js's own HTTP fallbacks in real Chromium: the unmodified browser build of pusher-js
// (node_modules/pusher-js/dist/web/pusher.js), on a page served from another origin than the edge
// (so every xhr_streaming / xhr_polling / xhr_send request is cross-origin and CORS must be right),
// with `WebSocket` removed from the page and only one xhr transport enabled.
//
// Needs Chromium at /usr/bin/chromium (or $CHROMIUM): `apt-get install -y chromium`.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import { after, before, test } from 'node:test';

import { chromium } from 'playwright-core';

import { T, WAIT_MS, uid, useServer, waitForEvent } from './helpers.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const PUSHER_JS = createRequire(import.meta.url).resolve('pusher-js/dist/web/pusher.js');

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>pusher-js xhr fallbacks</title></head>
<body><script src="/pusher.js"></script></body></html>`;

const ctx = useServer();
let pageServer;
let browser;

before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (or set CHROMIUM)`);
  // The page's origin: the page, pusher-js, and `POST /auth?app=ID` (pusher-js's form-encoded
  // channel authorization request) signed with that app's secret.
  pageServer = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://page');
    if (req.method === 'GET' && url.pathname === '/') {
      res.writeHead(200, { 'Content-Type': 'text/html' }).end(PAGE);
    } else if (req.method === 'GET' && url.pathname === '/pusher.js') {
      res.writeHead(200, { 'Content-Type': 'text/javascript' }).end(readFileSync(PUSHER_JS));
    } else if (url.pathname === '/favicon.ico') {
      res.writeHead(204).end();
    } else if (req.method === 'POST' && url.pathname === '/auth') {
      let body = '';
      req.on('data', (chunk) => (body += chunk));
      req.on('end', () => {
        const form = new URLSearchParams(body);
        const app = ctx.server.apps.find((a) => a.id === url.searchParams.get('app'));
        const auth = ctx.api(app).authorizeChannel(form.get('socket_id'), form.get('channel_name'));
        res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(auth));
      });
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve) => pageServer.listen(0, '127.0.0.1', resolve));
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
});

after(async () => {
  await browser?.close();
  if (pageServer) await new Promise((resolve) => pageServer.close(resolve));
});

/** A fresh page without WebSocket, pusher-js loaded, connected over `transport` only. */
async function connectedPage(t, app, transport) {
  const context = await browser.newContext();
  t.after(() => context.close());
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(String(err)));
  page.on('console', (message) => message.type() === 'error' && problems.push(message.text()));
  page.on('requestfailed', (request) => problems.push(`${request.url()}: ${request.failure()?.errorText}`));
  page.on('response', (response) => response.status() >= 400 && problems.push(`${response.url()}: ${response.status()}`));
  await page.addInitScript(() => {
    delete window.WebSocket;
  });
  await page.goto(`http://127.0.0.1:${pageServer.address().port}/`);
  const edge = { host: ctx.server.host, port: ctx.server.port };
  const connected = await page.evaluate(
    ({ key, appId, edge, transport, ms }) =>
      new Promise((resolve, reject) => {
        const pusher = new Pusher(key, {
          cluster: 'x',
          httpHost: edge.host,
          httpPort: edge.port,
          wsHost: edge.host,
          wsPort: edge.port,
          forceTLS: false,
          enabledTransports: [transport],
          enableStats: false,
          channelAuthorization: { endpoint: `/auth?app=${appId}`, transport: 'ajax' },
        });
        window.pusher = pusher;
        window.received = [];
        const timer = setTimeout(() => reject(new Error(`not connected after ${ms} ms: ${pusher.connection.state}`)), ms);
        pusher.connection.bind('connected', () => {
          clearTimeout(timer);
          resolve({ transport: pusher.connection.connection.transport.name, socketId: pusher.connection.socket_id });
        });
      }),
    { key: app.key, appId: app.id, edge, transport, ms: WAIT_MS },
  );
  return { page, problems, ...connected };
}

/** Subscribes the page to `name` and records its `event`s in `window.received`. */
function subscribe(page, name, event) {
  return page.evaluate(
    ({ name, event, ms }) =>
      new Promise((resolve, reject) => {
        const channel = window.pusher.subscribe(name);
        channel.bind(event, (data) => window.received.push(data));
        const timer = setTimeout(() => reject(new Error(`no subscription_succeeded for ${name}`)), ms);
        channel.bind('pusher:subscription_succeeded', () => {
          clearTimeout(timer);
          resolve();
        });
        channel.bind('pusher:subscription_error', (data) => {
          clearTimeout(timer);
          reject(new Error(`subscription_error ${JSON.stringify(data)}`));
        });
      }),
    { name, event, ms: WAIT_MS },
  );
}

for (const transport of ['xhr_streaming', 'xhr_polling']) {
  test(`Chromium, no WebSocket: pusher-js over ${transport} from another origin subscribes to a private channel and receives`, T, async (t) => {
    const app = ctx.server.takeApp();
    const { page, problems, transport: used, socketId } = await connectedPage(t, app, transport);
    assert.equal(used, transport);
    assert.match(socketId, /^\d+\.\d+$/);

    const name = uid('private-browser-');
    await subscribe(page, name, 'numbered');
    const api = ctx.api(app);
    for (let n = 1; n <= 5; n++) await api.trigger(name, 'numbered', { n });
    await page.waitForFunction(() => window.received.length >= 5, null, { timeout: WAIT_MS });
    assert.deepEqual(
      (await page.evaluate(() => window.received)).map((data) => data.n),
      [1, 2, 3, 4, 5],
    );

    // A client event from the page reaches a WebSocket client on the same channel.
    const ws = ctx.client(t, app);
    const wsChannel = await ws.subscribe(name);
    const atWs = waitForEvent(wsChannel, 'client-typing', { describe: () => ws.describe() });
    await page.evaluate((name) => window.pusher.channel(name).trigger('client-typing', { from: 'browser' }), name);
    assert.deepEqual((await atWs).data, { from: 'browser' });
    assert.deepEqual(problems, [], 'no page errors (a CORS refusal would show here)');
  });
}
