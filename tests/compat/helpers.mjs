// Shared harness for the Switchboard compatibility suite.
//
// Every test file starts its own `switchboard serve` child process on a free loopback port with a
// pool of freshly generated apps (id:key:secret); every test takes an unused app from the pool, so
// channel/user counts seen through the HTTP API are never polluted by another test.
//
// Clients are the *unmodified* npm packages: `pusher-js` (its Node build, `ws` transport only) and
// `pusher` (pusher-http-node). Raw protocol assertions use the `ws` package.
//
// Synchronisation rule: nothing here sleeps to wait for the server. Everything waits on an event
// or a promise, each wait bounded by a timeout that fails with a description of what was seen.

import { spawn } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';

import PusherClient from 'pusher-js';
import PusherServer from 'pusher';
import WebSocket from 'ws';

export { PusherClient, PusherServer, WebSocket };

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** Default bound for any single wait (connect, subscribe, one event). */
export const WAIT_MS = Number(process.env.COMPAT_WAIT_MS || 5000);
/** Per-test timeout passed to node:test so a failing test can never hang the run. */
export const TEST_TIMEOUT_MS = Number(process.env.COMPAT_TEST_TIMEOUT_MS || 20000);

/** The installed pusher-js version (what it puts in `version=` of the WebSocket URL). */
export const PUSHER_JS_VERSION = createRequire(import.meta.url)('pusher-js/package.json').version;

export function serverBinary() {
  const fromEnv = process.env.SWITCHBOARD_BIN;
  if (fromEnv) return path.resolve(fromEnv);
  return path.resolve(HERE, '../../target/debug/switchboard');
}

/** A free TCP port on 127.0.0.1 (listen on 0, read the port, close). */
export function freePort() {
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

/** Fresh, random app credentials (id is digits, key/secret are hex like Pusher's). */
export function freshApp() {
  return {
    id: String(randomInt(100000, 999999999)),
    key: randomBytes(10).toString('hex'),
    secret: randomBytes(10).toString('hex'),
  };
}

/** A unique channel-name suffix, so names never collide between tests. */
export function uid(prefix = '') {
  return `${prefix}${Date.now().toString(36)}${randomBytes(4).toString('hex')}`;
}

/**
 * Start `switchboard serve` on a free port with `apps` fresh apps. Resolves once GET /healthz
 * returns 200 (bounded polling); rejects with the server's output if it exits or never gets ready.
 * `env` adds environment variables (e.g. DATABASE_URL) to the server's.
 */
export async function startServer({ apps: appCount = 16, env = {} } = {}) {
  const bin = serverBinary();
  if (!existsSync(bin)) {
    throw new Error(
      `switchboard binary not found at ${bin}. Build it with \`cargo build -p switchboard\` ` +
        'in the repository root, or set SWITCHBOARD_BIN.',
    );
  }
  const apps = Array.from({ length: appCount }, freshApp);
  let lastError;
  // A port picked by freePort() can in theory be taken before the server binds it; retry a few times.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    try {
      return await launch(bin, port, apps, env);
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

async function launch(bin, port, apps, env = {}) {
  const args = ['serve', '--host', '127.0.0.1', '--port', String(port)];
  for (const a of apps) args.push('--app', `${a.id}:${a.key}:${a.secret}`);
  const child = spawn(bin, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    // No drain delay: a stop (SIGTERM) closes clients at once; `env` may set one.
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn', SWITCHBOARD_DRAIN_DELAY: '0', ...env },
  });
  let output = '';
  const keep = (chunk) => {
    output += chunk.toString();
    if (output.length > 64 * 1024) output = output.slice(-64 * 1024);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exited = null;
  const exitPromise = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
    child.on('error', (err) => {
      exited = { error: err };
      resolve(exited);
    });
  });

  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 15000;
  let lastProblem = 'no attempt made';
  let ready = false;
  // Bounded readiness polling of /healthz: up to 15 s, 25 ms between attempts.
  while (Date.now() < deadline) {
    if (exited) break;
    try {
      const res = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === 200) {
        ready = true;
        break;
      }
      lastProblem = `GET /healthz returned ${res.status}`;
    } catch (err) {
      lastProblem = `GET /healthz failed: ${err.cause?.code || err.message}`;
    }
    await delay(25);
  }
  if (!ready) {
    if (!exited) child.kill('SIGKILL');
    await exitPromise;
    throw new Error(
      `switchboard did not become ready on port ${port} (${lastProblem}; exit: ${JSON.stringify(exited)})\n` +
        `command: ${bin} ${args.join(' ')}\n--- server output ---\n${output}`,
    );
  }

  const pool = [...apps];
  const server = {
    port,
    host: '127.0.0.1',
    baseUrl: base,
    apps,
    /** Hand out an app no other test in this file has used. */
    takeApp() {
      const app = pool.shift();
      if (!app) throw new Error('app pool exhausted: raise startServer({ apps })');
      return app;
    },
    output: () => output,
    /** Kills the process with `signal` at once (SIGKILL: a crash, no drain); resolves with its exit. */
    async kill(signal = 'SIGKILL') {
      if (!exited) child.kill(signal);
      return exitPromise;
    },
    async stop() {
      if (exited) return exited;
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 3000);
      const result = await exitPromise;
      clearTimeout(killer);
      return result;
    },
  };
  return server;
}

// ---------------------------------------------------------------------------------------------
// Waiting helpers

/**
 * Resolve when `emitter` (a pusher-js Channel / ConnectionManager / Pusher, anything with
 * bind/unbind) emits `event` and `predicate(data, metadata)` holds. Rejects after `ms` with
 * `describe()` appended so the failure says what was actually received.
 */
export function waitForEvent(emitter, event, { ms = WAIT_MS, predicate = () => true, describe } = {}) {
  return new Promise((resolve, reject) => {
    const handler = (data, metadata) => {
      let ok;
      try {
        ok = predicate(data, metadata);
      } catch (err) {
        cleanup();
        reject(err);
        return;
      }
      if (ok) {
        cleanup();
        resolve({ data, metadata });
      }
    };
    const timer = setTimeout(() => {
      cleanup();
      const seen = describe ? `\n${describe()}` : '';
      reject(new Error(`timed out after ${ms} ms waiting for '${event}'${seen}`));
    }, ms);
    const cleanup = () => {
      clearTimeout(timer);
      emitter.unbind(event, handler);
    };
    emitter.bind(event, handler);
  });
}

/** Resolve with {event, data, metadata} for whichever of `events` `emitter` emits first. */
export function raceEvents(emitter, events, { ms = WAIT_MS, describe } = {}) {
  return new Promise((resolve, reject) => {
    const handlers = events.map((event) => [
      event,
      (data, metadata) => {
        cleanup();
        resolve({ event, data, metadata });
      },
    ]);
    const timer = setTimeout(() => {
      cleanup();
      const seen = describe ? `\n${describe()}` : '';
      reject(new Error(`timed out after ${ms} ms waiting for any of ${JSON.stringify(events)}${seen}`));
    }, ms);
    const cleanup = () => {
      clearTimeout(timer);
      for (const [event, handler] of handlers) emitter.unbind(event, handler);
    };
    for (const [event, handler] of handlers) emitter.bind(event, handler);
  });
}

/** Bound any promise by a timeout with a descriptive message. */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------------------------
// pusher-js client factory

/**
 * One pusher-js client plus the bookkeeping the tests need.
 * - `frames`: every decoded frame pusher-js received (event, channel, data, user_id), in order.
 * - `states`: every connection state it went through.
 * - `errors`: every `error` the connection manager emitted.
 */
export class Client {
  constructor(server, app, { userId, userInfo, signer, key } = {}) {
    this.server = server;
    this.app = app;
    this.userId = userId;
    this.userInfo = userInfo;
    // The auth "backend": a pusher-http-node instance. Pass `signer` to sign with other credentials.
    this.signer = signer || serverApi(server, app);
    this.frames = [];
    this.states = [];
    this.errors = [];
    this.pusher = new PusherClient(key ?? app.key, {
      cluster: 'x',
      wsHost: server.host,
      wsPort: server.port,
      wssPort: server.port,
      forceTLS: false,
      enabledTransports: ['ws'],
      enableStats: false,
      channelAuthorization: {
        customHandler: (params, callback) => {
          try {
            const presenceData = params.channelName.startsWith('presence-')
              ? { user_id: this.userId, user_info: this.userInfo }
              : undefined;
            callback(null, this.signer.authorizeChannel(params.socketId, params.channelName, presenceData));
          } catch (err) {
            callback(err, null);
          }
        },
      },
    });
    // The constructor already started connecting; record that state, then every change.
    this.states.push(this.pusher.connection.state);
    this.pusher.connection.bind('message', (ev) => this.frames.push(ev));
    this.pusher.connection.bind('state_change', ({ current }) => this.states.push(current));
    this.pusher.connection.bind('error', (err) => this.errors.push(err));
  }

  get socketId() {
    return this.pusher.connection.socket_id;
  }

  get state() {
    return this.pusher.connection.state;
  }

  describe() {
    return (
      `client(user=${this.userId ?? '-'}, socket=${this.socketId ?? '-'}) states=${JSON.stringify(this.states)}\n` +
      `  frames received: ${JSON.stringify(this.frames)}\n` +
      `  errors: ${JSON.stringify(this.errors)}`
    );
  }

  /** Resolves when the connection reaches `connected`. */
  async connected(ms = WAIT_MS) {
    if (this.state === 'connected') return this;
    await waitForEvent(this.pusher.connection, 'state_change', {
      ms,
      predicate: ({ current }) => current === 'connected',
      describe: () => this.describe(),
    });
    return this;
  }

  /** Subscribe and resolve with the channel once `pusher:subscription_succeeded` fires. */
  async subscribe(name, ms = WAIT_MS) {
    await this.connected(ms);
    const channel = this.pusher.subscribe(name);
    if (channel.subscribed) return channel;
    const { event, data } = await raceEvents(
      channel,
      ['pusher:subscription_succeeded', 'pusher:subscription_error'],
      { ms, describe: () => this.describe() },
    );
    if (event !== 'pusher:subscription_succeeded') {
      throw new Error(`subscription to ${name} failed: ${JSON.stringify(data)}\n${this.describe()}`);
    }
    return channel;
  }

  /** Subscribe expecting `pusher:subscription_error`; resolves with {channel, data}. */
  async subscribeExpectingError(name, ms = WAIT_MS) {
    await this.connected(ms);
    const channel = this.pusher.subscribe(name);
    const { event, data } = await raceEvents(
      channel,
      ['pusher:subscription_succeeded', 'pusher:subscription_error'],
      { ms, describe: () => this.describe() },
    );
    if (event !== 'pusher:subscription_error') {
      throw new Error(`subscription to ${name} unexpectedly succeeded\n${this.describe()}`);
    }
    return { channel, data };
  }

  /** Wait for `event` on `channel` (a name) satisfying predicate; resolves {data, metadata}. */
  waitFor(channelName, event, { ms = WAIT_MS, predicate } = {}) {
    const channel = this.pusher.channel(channelName);
    if (!channel) throw new Error(`not subscribed to ${channelName}`);
    return waitForEvent(channel, event, { ms, predicate, describe: () => this.describe() });
  }

  /** Frames received for `channelName` with the given event name. */
  framesFor(channelName, event) {
    return this.frames.filter((f) => f.channel === channelName && (event === undefined || f.event === event));
  }

  disconnect() {
    this.pusher.disconnect();
  }
}

/** pusher-http-node configured for the server + app (override secret etc. via `overrides`). */
export function serverApi(server, app, overrides = {}) {
  return new PusherServer({
    appId: app.id,
    key: app.key,
    secret: app.secret,
    host: server.host,
    port: server.port,
    useTLS: false,
    timeout: WAIT_MS,
    ...overrides,
  });
}

/** Read a pusher-http-node Response as parsed JSON (with the raw text on parse failure). */
export async function jsonBody(res) {
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`response body is not JSON (status ${res.status}): ${text}`);
  }
}

/** Run `fn` expecting a pusher-http-node RequestError; resolves with it. */
export async function expectRequestError(promise) {
  try {
    const res = await promise;
    const body = await res.text().catch(() => '');
    throw new Error(`expected the request to fail, got HTTP ${res.status}: ${body}`);
  } catch (err) {
    if (err && err.name === 'PusherRequestError') return err;
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Raw WebSocket (ws package) helper for frame-exact assertions

export class RawSocket {
  constructor(url) {
    this.url = url;
    this.ws = new WebSocket(url);
    this.frames = [];
    this.waiters = [];
    this.closed = new Promise((resolve) => {
      this.ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
    });
    this.opened = new Promise((resolve, reject) => {
      this.ws.on('open', resolve);
      this.ws.on('error', reject);
      this.ws.on('close', (code) => reject(new Error(`closed (${code}) before open`)));
    });
    this.opened.catch(() => {});
    this.ws.on('error', () => {});
    this.ws.on('message', (buf, isBinary) => {
      const text = buf.toString();
      let frame;
      try {
        frame = JSON.parse(text);
      } catch {
        frame = { unparseable: text, isBinary };
      }
      frame.__raw = text;
      this.frames.push(frame);
      this.waiters = this.waiters.filter((w) => !w(frame));
    });
  }

  static forApp(server, key, query = `protocol=7&client=js&version=${PUSHER_JS_VERSION}&flash=false`) {
    return new RawSocket(`ws://${server.host}:${server.port}/app/${key}?${query}`);
  }

  describe() {
    return `raw frames received: ${JSON.stringify(this.frames.map((f) => f.__raw))}`;
  }

  /** Next frame (already received or future) with this event name (and optional predicate). */
  next(event, { ms = WAIT_MS, predicate = () => true, from = 0 } = {}) {
    const existing = this.frames.slice(from).find((f) => f.event === event && predicate(f));
    if (existing) return Promise.resolve(existing);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`timed out after ${ms} ms waiting for raw frame '${event}'; ${this.describe()}`));
      }, ms);
      const waiter = (frame) => {
        if (frame.event === event && predicate(frame)) {
          clearTimeout(timer);
          resolve(frame);
          return true;
        }
        return false;
      };
      this.waiters.push(waiter);
    });
  }

  send(obj) {
    this.ws.send(JSON.stringify(obj));
  }

  close() {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
      this.ws.terminate();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// User authentication: pusher-js `signin()` answered by a server library

/** A pusher-js custom auth handler answered by `sign(params)`, a value or a promise. */
const answeredBy = (sign) => (params, callback) => {
  new Promise((resolve) => resolve(sign(params))).then(
    (auth) => callback(null, auth),
    (err) => callback(err, null),
  );
};

/**
 * A pusher-js client of `app` (`ws` only) whose `signin()` is answered by
 * `authenticateUser(socketId)` and whose private and presence subscriptions by
 * `authorizeChannel(socketId, channelName)` (each returns the signature or a promise of it).
 * `frames` holds every frame it received.
 */
export function signingInClient(server, app, { authenticateUser, authorizeChannel }) {
  const frames = [];
  const options = {
    cluster: 'x',
    wsHost: server.host,
    wsPort: server.port,
    forceTLS: false,
    enabledTransports: ['ws'],
    enableStats: false,
    userAuthentication: { customHandler: answeredBy(({ socketId }) => authenticateUser(socketId)) },
  };
  if (authorizeChannel) {
    const authorize = ({ socketId, channelName }) => authorizeChannel(socketId, channelName);
    options.channelAuthorization = { customHandler: answeredBy(authorize) };
  }
  const pusher = new PusherClient(app.key, options);
  pusher.connection.bind('message', (frame) => frames.push(frame));
  const describe = () => `frames: ${JSON.stringify(frames)}`;
  return { pusher, frames, describe };
}

/**
 * Calls `signin()` on a `signingInClient`; resolves on `pusher:signin_success`, or with
 * `userId` once the user's own channel `#server-to-user-{userId}` is subscribed too.
 */
export async function signIn(client, userId) {
  const done = waitForEvent(client.pusher.connection, 'message', {
    predicate: (frame) =>
      userId === undefined
        ? frame.event === 'pusher:signin_success'
        : frame.event === 'pusher_internal:subscription_succeeded' && frame.channel === `#server-to-user-${userId}`,
    describe: client.describe,
  });
  client.pusher.signin();
  await done;
}

/** Parse the double-encoded `data` of a server frame (a JSON string for protocol events). */
export function frameData(frame) {
  return typeof frame.data === 'string' ? JSON.parse(frame.data) : frame.data;
}

// ---------------------------------------------------------------------------------------------
// Per-file harness: one server for the file, clients cleaned up after each test.

/**
 * Call at the top level of a test file. Returns a context whose `server` is set once the `before`
 * hook has run. Use `ctx.client(t, app, opts)` inside tests so clients are disconnected when the
 * test ends (pass or fail).
 */
export function useServer(opts = {}) {
  const ctx = {
    server: null,
    client(t, app, clientOpts = {}) {
      const c = new Client(ctx.server, app, clientOpts);
      t.after(() => c.disconnect());
      return c;
    },
    raw(t, key, query) {
      const r = RawSocket.forApp(ctx.server, key, query);
      t.after(() => r.close());
      return r;
    },
    api(app, overrides) {
      return serverApi(ctx.server, app, overrides);
    },
    /** A `signingInClient`, disconnected when the test ends. */
    signingIn(t, app, handlers) {
      const c = signingInClient(ctx.server, app, handlers);
      t.after(() => c.pusher.disconnect());
      return c;
    },
    /** A raw socket signed in with `authenticateUser(socketId)`'s signature (or its promise). */
    async rawSignedIn(t, app, authenticateUser) {
      const r = ctx.raw(t, app.key);
      const established = await r.next('pusher:connection_established');
      r.send({ event: 'pusher:signin', data: await authenticateUser(frameData(established).socket_id) });
      await r.next('pusher:signin_success');
      return r;
    },
  };
  before(async () => {
    ctx.server = await startServer(opts);
  });
  after(async () => {
    if (ctx.server) await ctx.server.stop();
  });
  return ctx;
}

/** Test options shared by every test: a hard per-test timeout. */
export const T = { timeout: TEST_TIMEOUT_MS };
