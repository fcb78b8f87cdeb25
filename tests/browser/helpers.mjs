// Harness for the SDK's browser tests: a `switchboard serve` child on one port, a page server
// (the test page, the SDK bundle, a channel-auth endpoint) on another, so every request from
// the page to the edge is cross-origin, and Chromium driven by playwright-core.
//
// Synchronisation rule (as in tests/compat): nothing sleeps to wait; every wait is on an
// event or a promise, bounded by a timeout that says what was awaited.

import { spawn } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';

import Pusher from 'pusher';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
export const WAIT_MS = Number(process.env.BROWSER_WAIT_MS || 10000);
export const TEST_TIMEOUT_MS = Number(process.env.BROWSER_TEST_TIMEOUT_MS || 60000);
const BUNDLE = path.join(ROOT, 'sdk-js/dist/switchboard.min.js');
const WEBRTC_BUNDLE = path.join(ROOT, 'sdk-js/dist/switchboard-webrtc.min.js');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

export function uid(prefix = '') {
  return `${prefix}${Date.now().toString(36)}${randomBytes(4).toString('hex')}`;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * `switchboard serve` with one fresh app, ready once GET /healthz answers 200 (bounded).
 * `port` and `app` start it again where a stopped one was (a restart).
 */
export async function startServer({ port: fixedPort, app: fixedApp } = {}) {
  const bin = process.env.SWITCHBOARD_BIN ? path.resolve(process.env.SWITCHBOARD_BIN) : path.join(ROOT, 'target/debug/switchboard');
  if (!existsSync(bin)) throw new Error(`switchboard binary not found at ${bin}: run \`cargo build -p switchboard\``);
  const app = fixedApp || { id: String(randomInt(100000, 999999999)), key: randomBytes(10).toString('hex'), secret: randomBytes(10).toString('hex') };
  const port = fixedPort || (await freePort());
  const args = ['serve', '--host', '127.0.0.1', '--port', String(port), '--app', `${app.id}:${app.key}:${app.secret}`];
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn', SWITCHBOARD_DRAIN_DELAY: '0' } });
  let output = '';
  const keep = (chunk) => (output = (output + chunk).slice(-64 * 1024));
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exited = null;
  const exit = new Promise((resolve) => child.on('exit', (code, signal) => resolve((exited = { code, signal }))));
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 15000;
  let ready = false;
  while (!ready && !exited && Date.now() < deadline) {
    try {
      const res = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      ready = res.status === 200;
    } catch {
      // Not listening yet.
    }
    if (!ready) await delay(25);
  }
  if (!ready) {
    child.kill('SIGKILL');
    await exit;
    throw new Error(`switchboard did not become ready on ${port}\n--- output ---\n${output}`);
  }
  const api = new Pusher({ appId: app.id, key: app.key, secret: app.secret, host: '127.0.0.1', port, useTLS: false });
  return {
    port,
    app,
    api,
    output: () => output,
    async stop() {
      if (exited) return;
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exit;
      clearTimeout(killer);
    },
  };
}

/**
 * The page's origin: `/` (the test page), `/switchboard.min.js` (the SDK bundle) and
 * `POST /auth?user=ID` (pusher-js's auth request shape, signed with the app's secret).
 */
export async function startPageServer(server) {
  if (!existsSync(BUNDLE)) throw new Error(`${BUNDLE} is missing: run \`npm ci && npm run build\` in sdk-js`);
  const page = readFileSync(path.join(HERE, 'page.html'));
  const httpServer = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://page');
    if (req.method === 'GET' && url.pathname === '/') {
      res.writeHead(200, { 'Content-Type': 'text/html' }).end(page);
    } else if (req.method === 'GET' && url.pathname === '/webrtc') {
      res.writeHead(200, { 'Content-Type': 'text/html' }).end(readFileSync(path.join(HERE, 'webrtc-page.html')));
    } else if (req.method === 'GET' && url.pathname === '/switchboard.min.js') {
      res.writeHead(200, { 'Content-Type': 'text/javascript' }).end(readFileSync(BUNDLE));
    } else if (req.method === 'GET' && url.pathname === '/switchboard-webrtc.min.js') {
      res.writeHead(200, { 'Content-Type': 'text/javascript' }).end(readFileSync(WEBRTC_BUNDLE));
    } else if (req.method === 'POST' && url.pathname === '/auth') {
      let body = '';
      req.on('data', (chunk) => (body += chunk));
      req.on('end', () => {
        const form = new URLSearchParams(body);
        const channel = form.get('channel_name');
        const user = url.searchParams.get('user');
        const presence = channel.startsWith('presence-') ? { user_id: user, user_info: { name: user } } : undefined;
        const auth = server.api.authorizeChannel(form.get('socket_id'), channel, presence);
        res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(auth));
      });
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${httpServer.address().port}/`,
    stop: () => new Promise((resolve) => httpServer.close(resolve)),
  };
}

/** Chromium; `args` are added to the usual ones (the WebRTC tests add the fake camera's). */
export async function launchBrowser({ args = [] } = {}) {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', ...args],
  });
}

/**
 * A fresh page (own context: own localStorage) on the page server. `without` names globals
 * removed before any script runs, as if the browser lacked them (e.g. ['WebSocket']); `init`
 * is a further init script.
 */
export async function openPage(browser, pageServer, { without = [], init, path: pagePath = '' } = {}) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(String(err)));
  if (without.length) {
    await page.addInitScript((names) => {
      for (const name of names) delete window[name];
    }, without);
  }
  if (init) await page.addInitScript(init);
  await page.goto(pageServer.url + pagePath);
  page.errors = errors;
  page.closeAll = () => context.close();
  return page;
}

/** Connects the page's SDK to the edge and resolves with the transport it settled on. */
export async function connectPage(page, server, { user = 'anon', options = {} } = {}) {
  return page.evaluate(
    ({ key, port, user, options, ms }) => window.harness.connect(key, { host: '127.0.0.1', port, useTLS: false, authEndpoint: `/auth?user=${user}`, ...options }, ms),
    { key: server.app.key, port: server.port, user, options, ms: WAIT_MS },
  );
}
