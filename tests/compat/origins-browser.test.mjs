// An app's allowed origins, set through the control plane (PATCH /v1/apps/{id}), enforced on
// real Chromium: the unmodified browser build of pusher-js connects from the allowed origin,
// and is refused with 4009 ("Origin not allowed") from another one, after which pusher-js
// stays disconnected instead of retrying. One page server answers on two origins:
// http://127.0.0.1:PORT (allowed) and http://localhost:PORT (not).
//
// Needs Chromium at /usr/bin/chromium (or $CHROMIUM) and Postgres (see platform.mjs).
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import { after, before, test } from 'node:test';

import { chromium } from 'playwright-core';

import { T, WAIT_MS } from './helpers.mjs';
import { usePlatform } from './platform.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const PUSHER_JS = createRequire(import.meta.url).resolve('pusher-js/dist/web/pusher.js');
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>allowed origins</title></head>
<body><script src="/pusher.js"></script></body></html>`;

const ctx = usePlatform();
let pageServer;
let browser;

before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (or set CHROMIUM)`);
  pageServer = http.createServer((req, res) => {
    const path = new URL(req.url, 'http://page').pathname;
    if (path === '/') res.writeHead(200, { 'Content-Type': 'text/html' }).end(PAGE);
    else if (path === '/pusher.js') res.writeHead(200, { 'Content-Type': 'text/javascript' }).end(readFileSync(PUSHER_JS));
    else res.writeHead(404).end();
  });
  await new Promise((resolve) => pageServer.listen(0, '127.0.0.1', resolve));
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // localhost must reach the page server on 127.0.0.1, whatever the machine's resolver says.
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--host-resolver-rules=MAP localhost 127.0.0.1'],
  });
});

after(async () => {
  await browser?.close();
  if (pageServer) await new Promise((resolve) => pageServer.close(resolve));
});

/** Opens the page at `origin` and connects pusher-js over WebSocket; resolves with the first
 * outcome: {state: 'connected'} or {state, error} when the connection was refused. */
async function connectFrom(t, origin, key) {
  const context = await browser.newContext();
  t.after(() => context.close());
  const page = await context.newPage();
  await page.goto(`${origin}/`);
  const edge = { host: ctx.server.host, port: ctx.server.port };
  return page.evaluate(
    ({ key, edge, ms }) =>
      new Promise((resolve, reject) => {
        const pusher = new Pusher(key, {
          cluster: 'x',
          wsHost: edge.host,
          wsPort: edge.port,
          forceTLS: false,
          enabledTransports: ['ws'],
          enableStats: false,
        });
        const timer = setTimeout(() => reject(new Error(`no outcome after ${ms} ms: ${pusher.connection.state}`)), ms);
        pusher.connection.bind('connected', () => {
          clearTimeout(timer);
          resolve({ state: 'connected' });
        });
        pusher.connection.bind('error', (error) => {
          // A refusal (4000-4099) leaves pusher-js disconnected, not reconnecting.
          const report = () => {
            clearTimeout(timer);
            resolve({ state: pusher.connection.state, error: JSON.parse(JSON.stringify(error)) });
          };
          if (pusher.connection.state === 'disconnected') report();
          else pusher.connection.bind('disconnected', report);
        });
      }),
    { key, edge, ms: WAIT_MS },
  );
}

test('Chromium: pusher-js connects from an allowed origin and is refused with 4009 from another', T, async (t) => {
  const app = await ctx.newApp();
  const port = pageServer.address().port;
  const allowed = `http://127.0.0.1:${port}`;
  const changed = await ctx.v1('PATCH', `/apps/${app.id}`, { allowed_origins: [allowed] });
  assert.equal(changed.status, 200, JSON.stringify(changed.body));
  assert.deepEqual(changed.body.allowed_origins, [allowed]);

  const ok = await connectFrom(t, allowed, app.key);
  assert.equal(ok.state, 'connected');

  const refused = await connectFrom(t, `http://localhost:${port}`, app.key);
  assert.equal(refused.state, 'disconnected', JSON.stringify(refused));
  const told = JSON.stringify(refused.error);
  assert.match(told, /4009/);
  assert.match(told, /Origin not allowed/);

  // An empty list allows every origin again.
  const cleared = await ctx.v1('PATCH', `/apps/${app.id}`, { allowed_origins: [] });
  assert.equal(cleared.status, 200, JSON.stringify(cleared.body));
  // The edge hears of the change by NOTIFY: retry the page until it connects (bounded).
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const outcome = await connectFrom(t, `http://localhost:${port}`, app.key);
    if (outcome.state === 'connected') break;
    assert.ok(Date.now() < deadline, `still refused: ${JSON.stringify(outcome)}`);
  }
});
