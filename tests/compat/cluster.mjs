// Many edges as one cluster, for the cluster and failover tests: a throwaway `redis-server` (or a
// three-master Redis Cluster) on free loopback ports, N `switchboard serve --broker …` edges on it
// sharing one fresh Postgres database (an account, its API token, apps on plans made here), and a
// TCP balancer that sends each new connection to the next live edge.
//
// Nothing here uses the machine's own Redis: every Redis is a child process of the test file,
// without persistence, killed when the file ends.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';

import pg from 'pg';

import { Client, WAIT_MS, freePort, serverApi, startServer, withTimeout } from './helpers.mjs';
import { ADMIN_URL, accountToken, admin, switchboardAdmin } from './platform.mjs';

/** A bound for slow steps of a loaded machine: starting processes, forming a Redis Cluster. */
const START_MS = 30000;

/**
 * Runs `redis-server` on a free port (`extra` adds arguments); resolves once it says it accepts
 * connections, with `{ port, stop() }`.
 */
async function startRedisServer(extra = []) {
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    try {
      return await launchRedis(port, extra);
    } catch (err) {
      // The port can be taken between freePort() and the bind: try another, a few times.
      if (attempt >= 2) throw err;
    }
  }
}

function launchRedis(port, extra) {
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...extra];
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  let output = '';
  const ready = new Promise((resolve, reject) => {
    const keep = (chunk) => {
      output = (output + chunk.toString()).slice(-16 * 1024);
      if (output.includes('Ready to accept connections')) resolve();
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`redis-server on port ${port} exited (${code}):\n${output}`)));
  });
  const server = {
    port,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
  return withTimeout(ready, START_MS, `redis-server on port ${port} to be ready`).then(
    () => server,
    async (err) => {
      await server.stop();
      throw err;
    },
  );
}

/** One throwaway Redis: `{ url: 'redis://127.0.0.1:P/0', stop() }`. */
export async function startRedis() {
  const server = await startRedisServer();
  return { url: `redis://127.0.0.1:${server.port}/0`, stop: () => server.stop() };
}

/**
 * A three-master Redis Cluster (`--cluster-enabled yes` ×3, slots spread by
 * `redis-cli --cluster create`, which returns once every node agrees on them):
 * `{ url: 'redis+cluster://127.0.0.1:P1,…', stop() }`.
 */
export async function startRedisCluster() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'compat-redis-cluster-'));
  const servers = [];
  const stop = async () => {
    await Promise.all(servers.map((server) => server.stop()));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let n = 0; n < 3; n++) {
      const nodes = path.join(dir, `nodes-${n}.conf`);
      servers.push(await startRedisServer(['--cluster-enabled', 'yes', '--cluster-config-file', nodes, '--dir', dir]));
    }
    const addresses = servers.map((server) => `127.0.0.1:${server.port}`);
    await run('redis-cli', ['--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes']);
    return { url: `redis+cluster://${addresses.join(',')}`, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Runs a program to completion within START_MS; rejects with its output if it fails. */
function run(program, args) {
  const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  const done = new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${program} exited ${code}:\n${output}`))));
  });
  return withTimeout(done, START_MS, `${program} ${args.join(' ')}`).finally(() => child.kill('SIGKILL'));
}

/** A plan with room for everything the cluster tests do; `overrides` change single columns. */
const ROOMY_PLAN = {
  max_connections: 100,
  messages_per_day: 10000000,
  max_message_bytes: 10240,
  client_events_per_second: 100,
  publish_requests_per_second: 1000,
  max_presence_members: 100,
  max_channels_per_connection: 100,
  history_events: 5000,
  history_seconds: 600,
  burst_multiplier: 1,
  webhooks_allowed: true,
};

/**
 * Call at the top level of a test file: a Redis (`redis: 'single'`) or a Redis Cluster
 * (`redis: 'cluster'`), one fresh Postgres database, and `edges` `switchboard serve` processes on
 * both (`env` adds to their environment, e.g. SWITCHBOARD_NODE_HEARTBEAT_TTL). `ctx.edges` are
 * the running edges (helpers.mjs servers, with `kill()`), `ctx.newApp({ plan })` makes an app of
 * the file's account on a plan made by `ctx.createPlan`, `ctx.v1` calls the management API.
 * `setup(ctx)` runs once all that stands (node 20 runs a file's `before` hooks concurrently, so
 * a second hook could not rely on the first).
 */
export function useCluster({ redis = 'single', edges: edgeCount = 3, env: extraEnv = {}, setup = async () => {} } = {}) {
  const name = `compat_cluster_${randomBytes(6).toString('hex')}`;
  const databaseUrl = ADMIN_URL.replace(/\/[^/]*$/, `/${name}`);
  const email = `${name}@example.com`;
  const ctx = {
    redis: null,
    edges: [],
    token: null,
    env: null,
    /** Inserts a free plan `id`: the roomy plan above with `overrides` (column → value). */
    async createPlan(id, overrides = {}) {
      const plan = { ...ROOMY_PLAN, ...overrides };
      const columns = Object.keys(plan);
      const values = [id, id, 0, ...columns.map((column) => plan[column]), 0, 0, 9];
      const placeholders = values.map((_, n) => `$${n + 1}`).join(', ');
      await ctx.sql(
        `INSERT INTO plans (id, display_name, price_cents, ${columns.join(', ')}, ` +
          'overage_cents_per_million_messages, overage_cents_per_thousand_connections, sort_order) ' +
          `VALUES (${placeholders})`,
        values,
      );
    },
    /**
     * An app ({id, key, secret}) of the file's account, on `plan` from its creation (a plan
     * changed afterwards would reach each edge a moment later, through its catalog's NOTIFY).
     */
    async newApp({ plan = 'sandbox' } = {}) {
      const args = ['create-app', '--email', email, '--name', 'cluster', '--plan', plan];
      const out = await switchboardAdmin(args, ctx.env);
      const created = JSON.parse(out.trim().split('\n').pop());
      return { id: created.app_id, key: created.key, secret: created.secret };
    },
    /** Runs one query on the file's database; resolves with its rows. */
    async sql(text, values = []) {
      const client = new pg.Client({ connectionString: databaseUrl });
      await client.connect();
      try {
        return (await client.query(text, values)).rows;
      } finally {
        await client.end();
      }
    },
    /** The management API of the first edge, with the account's token. */
    async v1(method, apiPath, body) {
      const res = await fetch(`${ctx.edges[0].baseUrl}/v1${apiPath}`, {
        method,
        headers: { authorization: `Bearer ${ctx.token}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(WAIT_MS),
      });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : null };
    },
    /** A pusher-js client of `app` on `edge` (or a balancer), disconnected when the test ends. */
    client(t, edge, app, opts = {}) {
      const client = new Client(edge, app, opts);
      t.after(() => client.disconnect());
      return client;
    },
    api(edge, app) {
      return serverApi(edge, app);
    },
  };
  before(async () => {
    ctx.redis = redis === 'cluster' ? await startRedisCluster() : await startRedis();
    await admin(`CREATE DATABASE "${name}"`);
    ctx.env = {
      DATABASE_URL: databaseUrl,
      // One key for every edge: each one opens the app secrets the others sealed.
      SWITCHBOARD_SECRETS_KEY: randomBytes(32).toString('base64'),
      SWITCHBOARD_WEBHOOKS_ALLOW_PRIVATE: 'true',
      SWITCHBOARD_BROKER: ctx.redis.url,
      ...extraEnv,
    };
    // The first edge migrates the fresh database; the others then start on it together.
    ctx.edges.push(await startServer({ apps: 0, env: ctx.env }));
    const others = Array.from({ length: edgeCount - 1 }, () => startServer({ apps: 0, env: ctx.env }));
    ctx.edges.push(...(await Promise.all(others)));
    ctx.token = await accountToken(ctx.edges[0].baseUrl, email, ctx.env);
    await setup(ctx);
  });
  after(async () => {
    await Promise.all(ctx.edges.map((edge) => edge.stop()));
    await admin(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    if (ctx.redis) await ctx.redis.stop();
  });
  return ctx;
}

/**
 * A TCP load balancer on a free port: each new connection goes to the next backend, in turn,
 * whose GET /readyz answers 200 (checked per connection, as a health-checking balancer with no
 * lag would), so a killed edge gets none. `routes` lists the port each connection was sent to.
 */
export async function roundRobinBalancer(backends) {
  const routes = [];
  const sockets = new Set();
  let next = 0;
  const ready = async (backend) => {
    try {
      const res = await fetch(`${backend.baseUrl}/readyz`, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      return res.status === 200;
    } catch {
      return false;
    }
  };
  const pick = async () => {
    for (let tried = 0; tried < backends.length; tried++) {
      const candidate = backends[(next + tried) % backends.length];
      if (await ready(candidate)) {
        next = (next + tried + 1) % backends.length;
        return candidate;
      }
    }
    return null;
  };
  const server = net.createServer(async (socket) => {
    sockets.add(socket);
    socket.pause();
    socket.on('error', () => socket.destroy());
    socket.on('close', () => sockets.delete(socket));
    const target = await pick();
    if (!target || socket.destroyed) {
      socket.destroy();
      return;
    }
    routes.push(target.port);
    const upstream = net.connect(target.port, target.host, () => {
      socket.pipe(upstream);
      upstream.pipe(socket);
      socket.resume();
    });
    sockets.add(upstream);
    upstream.on('error', () => socket.destroy());
    upstream.on('close', () => {
      sockets.delete(upstream);
      socket.destroy();
    });
    socket.on('close', () => upstream.destroy());
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    host: '127.0.0.1',
    port: server.address().port,
    baseUrl: `http://127.0.0.1:${server.address().port}`,
    routes,
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

/**
 * Polls `read()` (an async function) until `holds(value)` is true, at most `ms`; resolves with
 * the value. For cluster-wide counts, which other nodes' steps reach within a round trip.
 */
export async function until(read, holds, { ms = 15000, what = 'a condition' } = {}) {
  const deadline = Date.now() + ms;
  let value;
  for (;;) {
    value = await read();
    if (holds(value)) return value;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}; last seen: ${JSON.stringify(value)}`);
    }
    // A short pause between reads, so a poll does not hammer a loaded machine.
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
