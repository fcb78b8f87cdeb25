// The dashboard's test harness: `switchboard serve` (target/debug, which reads dashboard/dist
// from disk) on a free port with a fresh Postgres database of its own, Chromium through
// playwright-core, axe-core injected into pages, and screenshots under tests/output/.
//
// Synchronisation rule (as in tests/compat and tests/browser): nothing sleeps to wait; every
// wait is on an element, an event or a polled condition, bounded generously (WAIT_MS) so it
// only fails on a real bug, even on a loaded 2-core machine.

import { spawn } from 'node:child_process';
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';

import pg from 'pg';
import { chromium } from 'playwright-core';
import { build } from 'vite';

const require = createRequire(import.meta.url);
const HERE = path.dirname(fileURLToPath(import.meta.url));
export const DASHBOARD = path.resolve(HERE, '..');
const ROOT = path.resolve(DASHBOARD, '..');
export const WAIT_MS = Number(process.env.DASHBOARD_WAIT_MS || 20000);
export const OUTPUT = path.join(HERE, 'output');
const ADMIN_URL = process.env.SWITCHBOARD_TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

export function uid(prefix = '') {
  return `${prefix}${Date.now().toString(36)}${randomBytes(4).toString('hex')}`;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function adminSql(sql) {
  const client = new pg.Client({ connectionString: ADMIN_URL });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** Polls `check` until it returns a truthy value; fails after WAIT_MS, naming `what`. */
export async function waitFor(what, check, timeout = WAIT_MS) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    await delay(50);
  }
  throw new Error(`timed out after ${timeout} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

/** The switchboard binary the tests run (`SWITCHBOARD_BIN`, else target/debug). */
export function switchboardBinary() {
  return process.env.SWITCHBOARD_BIN ? path.resolve(process.env.SWITCHBOARD_BIN) : path.join(ROOT, 'target/debug/switchboard');
}

/** A binary of this workspace's target/debug (next to `switchboardBinary()`). */
export function workspaceBinary(name) {
  return path.join(path.dirname(switchboardBinary()), name);
}

/**
 * `switchboard serve` on a fresh database, ready once /healthz answers; `log()` is everything
 * it printed (the mailer writes its mails there), `stop()` ends it and drops the database.
 * `port` (default: a free one) and `env` (added to the server's) are for tests that must
 * know the address before it starts, or turn features on (Stripe's keys).
 */
export async function startServer({ port: chosenPort, env: extraEnv = {} } = {}) {
  const binary = switchboardBinary();
  if (!existsSync(binary)) throw new Error(`${binary} is missing: run \`cargo build -p switchboard\``);
  if (!existsSync(path.join(DASHBOARD, 'dist/index.html'))) throw new Error('dashboard/dist is missing: run `npm run build` in dashboard/');
  const database = `dashboard_${randomBytes(6).toString('hex')}`;
  await adminSql(`CREATE DATABASE "${database}"`);
  const port = chosenPort ?? (await freePort());
  const env = {
    ...process.env,
    DATABASE_URL: ADMIN_URL.replace(/\/[^/]*$/, `/${database}`),
    SWITCHBOARD_SECRETS_KEY: randomBytes(32).toString('base64'),
    SWITCHBOARD_DRAIN_DELAY: '0',
    // The journey's webhook receiver listens on 127.0.0.1.
    SWITCHBOARD_WEBHOOKS_ALLOW_PRIVATE: 'true',
    RUST_LOG: process.env.RUST_LOG || 'info',
    ...extraEnv,
  };
  const child = spawn(binary, ['serve', '--host', '127.0.0.1', '--port', String(port)], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const keep = (chunk) => (log = (log + chunk).slice(-512 * 1024));
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exited = null;
  const exit = new Promise((resolve) => child.on('exit', (code, signal) => resolve((exited = { code, signal }))));
  const base = `http://127.0.0.1:${port}`;
  try {
    await waitFor('the server to answer /healthz', async () => {
      if (exited) throw new Error(`it exited ${JSON.stringify(exited)}\n${log}`);
      const response = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(1000) });
      await response.arrayBuffer();
      return response.status === 200;
    });
  } catch (error) {
    child.kill('SIGKILL');
    await exit;
    await adminSql(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
    throw error;
  }
  return {
    base,
    port,
    /** The server's environment (its database, its keys), for `switchboard admin` runs. */
    env,
    log: () => log,
    /** A statement on the server's own database (for rows the edge writes, such as usage). */
    async sql(text, params = []) {
      const client = new pg.Client({ connectionString: env.DATABASE_URL });
      await client.connect();
      try {
        return (await client.query(text, params)).rows;
      } finally {
        await client.end();
      }
    },
    async stop() {
      if (!exited) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exit;
        clearTimeout(killer);
      }
      await adminSql(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
    },
  };
}

export function launchBrowser() {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
}

/**
 * A page in a context of its own (own cookies: its own account), with clipboard access and a
 * record of script errors and console errors.
 */
export async function newPage(browser, server, { width = 1200, height = 900 } = {}) {
  const context = await browser.newContext({ viewport: { width, height }, baseURL: server.base });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.base });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error}`));
  page.on('console', (message) => {
    // A refused fetch (a 401 before login, a 404 for another tenant's app) is logged by
    // Chromium itself; it is the expected answer, not a fault of the page.
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) problems.push(`console error: ${message.text()}`);
  });
  page.setDefaultTimeout(WAIT_MS);
  return { page, context, problems };
}

const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

/** axe-core's serious and critical violations on the page as it is now. */
export async function accessibilityViolations(page) {
  await page.addScriptTag({ content: AXE });
  const violations = await page.evaluate(async () => (await window.axe.run(document, { resultTypes: ['violations'] })).violations);
  return violations
    .filter((violation) => violation.impact === 'serious' || violation.impact === 'critical')
    .map((violation) => `${violation.id} (${violation.impact}): ${violation.help} at ${violation.nodes.map((node) => node.target.join(' ')).join(', ')}`);
}

/** Empties tests/output, so it holds this run's screenshots only. */
export function clearScreenshots() {
  rmSync(OUTPUT, { recursive: true, force: true });
}

export async function screenshot(page, name) {
  mkdirSync(OUTPUT, { recursive: true });
  await page.screenshot({ path: path.join(OUTPUT, `${name}.png`), fullPage: true });
}

/** Our SDK's browser bundle (global `Switchboard`), built from sdk-js's source by Vite. */
export async function sdkBundle() {
  const output = await build({
    configFile: false,
    logLevel: 'warn',
    build: {
      write: false,
      minify: true,
      lib: { entry: path.join(ROOT, 'sdk-js/src/browser.ts'), formats: ['iife'], name: 'Switchboard', fileName: () => 'switchboard.js' },
    },
  });
  const chunks = (Array.isArray(output) ? output : [output]).flatMap((result) => result.output);
  return `${chunks.find((chunk) => chunk.type === 'chunk').code}\nif (window.Switchboard && window.Switchboard.default) window.Switchboard = window.Switchboard.default;`;
}

/** A local webhook endpoint: every request's body is kept in `requests`; it answers 200. */
export async function webhookReceiver() {
  const requests = [];
  const server = http.createServer((request, response) => {
    let body = '';
    request.setEncoding('utf8');
    request.on('data', (chunk) => (body += chunk));
    request.on('end', () => {
      requests.push({ path: request.url, headers: request.headers, body });
      response.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok');
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/hooks`,
    requests,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}
