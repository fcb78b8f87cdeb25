// The whole platform for tests that need the control plane (webhooks, app settings): a fresh
// Postgres database per test file, `switchboard serve` on it, an account made with
// `switchboard admin`, and a /v1 API token for it.
//
// Postgres: SWITCHBOARD_TEST_DATABASE_URL (as `cargo xtask test` sets it), else the local
// default; the database is created here and dropped after the file.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { after, before } from 'node:test';

import pg from 'pg';

import { Client, WAIT_MS, serverApi, serverBinary, startServer } from './helpers.mjs';

export const ADMIN_URL = process.env.SWITCHBOARD_TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
const PASSWORD = 'correct horse battery staple';

/** Runs `sql` on the admin database (creating and dropping test databases). */
export async function admin(sql) {
  const client = new pg.Client({ connectionString: ADMIN_URL });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** Runs `switchboard admin …`; resolves with stdout, rejects with stderr on failure. */
export function switchboardAdmin(args, env, stdin = '') {
  return new Promise((resolve, reject) => {
    const child = spawn(serverBinary(), ['admin', ...args], {
      env: { ...process.env, RUST_LOG: 'warn', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.stderr.on('data', (chunk) => (err += chunk));
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0 ? resolve(out) : reject(new Error(`switchboard admin ${args.join(' ')} exited ${code}: ${err}`)),
    );
    child.stdin.end(stdin);
  });
}

/**
 * Creates the account `email` with `switchboard admin` and resolves with a /v1 API token for it,
 * made through a browser session (cookie + CSRF token) on the server at `baseUrl`.
 */
export async function accountToken(baseUrl, email, env) {
  await switchboardAdmin(['create-account', '--email', email, '--password-stdin'], env, `${PASSWORD}\n`);
  const login = await fetch(`${baseUrl}/v1/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password: PASSWORD }),
  });
  const { csrf_token: csrf } = await login.json();
  const cookie = login.headers
    .getSetCookie()
    .map((c) => c.split(';')[0])
    .find((c) => c.startsWith('sb_session='));
  const made = await fetch(`${baseUrl}/v1/tokens`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', cookie, 'x-csrf-token': csrf },
    body: JSON.stringify({ name: 'compat' }),
  });
  if (made.status !== 201) throw new Error(`POST /v1/tokens: ${made.status} ${await made.text()}`);
  return (await made.json()).token;
}

/**
 * Call at the top level of a test file. `ctx.server` is the running server, `ctx.newApp()`
 * makes an app ({id, key, secret}) of the file's account, `ctx.v1(method, path, body)` calls the
 * management API with the account's API token.
 */
export function usePlatform() {
  const name = `compat_${randomBytes(6).toString('hex')}`;
  const databaseUrl = ADMIN_URL.replace(/\/[^/]*$/, `/${name}`);
  const env = {
    DATABASE_URL: databaseUrl,
    SWITCHBOARD_SECRETS_KEY: randomBytes(32).toString('base64'),
    // The tests' webhook receivers listen on 127.0.0.1.
    SWITCHBOARD_WEBHOOKS_ALLOW_PRIVATE: 'true',
  };
  const email = `${name}@example.com`;
  const ctx = {
    server: null,
    token: null,
    async newApp() {
      const out = await switchboardAdmin(['create-app', '--email', email, '--name', 'compat'], env);
      const created = JSON.parse(out.trim().split('\n').pop());
      return { id: created.app_id, key: created.key, secret: created.secret };
    },
    async v1(method, path, body) {
      const res = await fetch(`${ctx.server.baseUrl}/v1${path}`, {
        method,
        headers: { authorization: `Bearer ${ctx.token}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(WAIT_MS),
      });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : null };
    },
    client(t, app, opts = {}) {
      const c = new Client(ctx.server, app, opts);
      t.after(() => c.disconnect());
      return c;
    },
    api(app, overrides) {
      return serverApi(ctx.server, app, overrides);
    },
    /** Stops the server (SIGTERM, as an operator would) and starts a new one on the same database. */
    async restart() {
      await ctx.server.stop();
      ctx.server = await startServer({ apps: 0, env });
    },
  };
  before(async () => {
    await admin(`CREATE DATABASE "${name}"`);
    ctx.server = await startServer({ apps: 0, env });
    ctx.token = await accountToken(ctx.server.baseUrl, email, env);
  });
  after(async () => {
    if (ctx.server) await ctx.server.stop();
    await admin(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  });
  return ctx;
}

/**
 * A local webhook endpoint. Every request is kept as {path, headers, rawBody}; `next(predicate)`
 * resolves with the first one (received or future) matching it.
 */
export class WebhookReceiver {
  constructor() {
    this.requests = [];
    this.waiters = [];
    this.server = http.createServer((req, res) => {
      let rawBody = '';
      req.setEncoding('utf8');
      req.on('data', (chunk) => (rawBody += chunk));
      req.on('end', () => {
        const request = { path: req.url, headers: req.headers, rawBody };
        this.requests.push(request);
        this.waiters = this.waiters.filter((waiter) => !waiter(request));
        res.writeHead(200).end('ok');
      });
    });
  }

  async start(port = 0) {
    await new Promise((resolve) => this.server.listen(port, '127.0.0.1', resolve));
    this.base = `http://127.0.0.1:${this.server.address().port}`;
    return this;
  }

  stop() {
    return new Promise((resolve) => this.server.close(resolve));
  }

  describe() {
    return `webhooks received: ${JSON.stringify(this.requests.map((r) => `${r.path} ${r.rawBody}`))}`;
  }

  next(predicate, { ms = WAIT_MS } = {}) {
    const found = this.requests.find(predicate);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`timed out after ${ms} ms waiting for a webhook; ${this.describe()}`));
      }, ms);
      const waiter = (request) => {
        if (!predicate(request)) return false;
        clearTimeout(timer);
        resolve(request);
        return true;
      };
      this.waiters.push(waiter);
    });
  }
}
