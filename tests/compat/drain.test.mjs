// Graceful drain as unmodified pusher-js lives it: two edges behind a load balancer that sends
// each new connection to the first edge whose GET /readyz answers 200. SIGTERM on the first:
// pusher-js gets 4200, reconnects at once, lands on the second edge and resubscribes; the drained
// edge exits 0. On one Redis (`--broker`) the edges share history and epochs, so a channel
// resumed on the second edge replays exactly what was missed; without it, the second edge can
// only say explicitly that it cannot resume.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';

import { Client, T, WAIT_MS, freshApp, serverApi, startServer, uid, waitForEvent } from './helpers.mjs';
import { startRedis } from './redis-server.mjs';

/**
 * A TCP load balancer on a free port: each new connection goes to the first backend whose
 * /readyz answers 200 (checked per connection, as a health-checking balancer with no lag would).
 * `routes` lists the port each connection was sent to.
 */
async function readinessBalancer(backends) {
  const routes = [];
  const sockets = new Set();
  const ready = async (backend) => {
    try {
      const res = await fetch(`${backend.baseUrl}/readyz`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      return res.status === 200;
    } catch {
      return false;
    }
  };
  const server = net.createServer(async (socket) => {
    sockets.add(socket);
    socket.pause();
    socket.on('error', () => socket.destroy());
    socket.on('close', () => sockets.delete(socket));
    let target;
    for (const backend of backends) {
      if (await ready(backend)) {
        target = backend;
        break;
      }
    }
    if (!target) {
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
    routes,
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Resolves once `holds(client.frames)` is true, checked as each frame arrives. */
async function untilFrames(client, holds) {
  if (holds(client.frames)) return;
  await waitForEvent(client.pusher.connection, 'message', {
    predicate: () => holds(client.frames),
    describe: () => client.describe(),
  });
}

/** The first frame received for `channel` with this event name. */
async function frameOf(client, channel, event) {
  await untilFrames(client, () => client.framesFor(channel, event).length > 0);
  return client.framesFor(channel, event)[0];
}

/**
 * Two edges (`env` extra, e.g. a shared broker) behind the balancer; a pusher-js client on the
 * first, subscribed to a `live` channel pusher-js resubscribes itself and a `kept` channel whose
 * position it keeps by hand (as our SDK does). Three events on each, then SIGTERM on the first;
 * returns once the client is connected to the second, with what the checks need.
 */
async function drainedToTheSecondEdge(t, env = {}) {
  const app = freshApp();
  // The same app on both edges; the first one drains without delay.
  const appEnv = { SWITCHBOARD_APPS: `${app.id}:${app.key}:${app.secret}`, ...env };
  const first = await startServer({ apps: 0, env: { ...appEnv, SWITCHBOARD_DRAIN_DELAY: '0' } });
  const second = await startServer({ apps: 0, env: appEnv });
  const balancer = await readinessBalancer([first, second]);
  t.after(async () => {
    await balancer.close();
    await first.stop();
    await second.stop();
  });

  const client = new Client(balancer, app);
  t.after(() => client.disconnect());
  const live = uid('drain-live-');
  await client.subscribe(live);
  const firstSocket = client.socketId;
  assert.deepEqual(balancer.routes, [first.port]);
  // Resumed by hand over pusher-js's own `send_event`: pusher-js does not know this channel,
  // so it does not resubscribe it after the reconnect.
  const kept = uid('drain-kept-');
  client.pusher.send_event('pusher:subscribe', { channel: kept });
  const { epoch } = (await frameOf(client, kept, 'pusher_internal:subscription_succeeded')).data;
  const onFirst = serverApi(first, app);
  for (let n = 1; n <= 3; n++) {
    await onFirst.trigger([live, kept], 'tick', { n });
  }
  await untilFrames(client, () => client.framesFor(live, 'tick').length === 3);
  await untilFrames(client, () => client.framesFor(kept, 'tick').length === 3);
  const position = { epoch, serial: client.framesFor(kept, 'tick').length };
  assert.equal(position.serial, 3);

  const reconnected = waitForEvent(client.pusher.connection, 'state_change', {
    ms: WAIT_MS,
    predicate: ({ current }) => current === 'connected',
    describe: () => client.describe(),
  });
  const mark = client.states.length;
  const exit = first.stop(); // SIGTERM
  await reconnected;
  assert.deepEqual(await exit, { code: 0, signal: null }, 'the drained edge exits 0');

  // Told 4200 (pusher:error, then the close), so pusher-js retried at once: no back-off state.
  assert.ok(
    client.errors.some((e) => e.data?.code === 4200),
    `a 4200 reached pusher-js: ${client.describe()}`,
  );
  assert.deepEqual(client.states.slice(mark), ['connecting', 'connected'], client.describe());
  assert.notEqual(client.socketId, firstSocket);
  assert.equal(balancer.routes.at(-1), second.port, 'the unready edge got no new connection');

  // pusher-js resubscribed by itself; live events published on the second edge arrive.
  const onSecond = serverApi(second, app);
  await untilFrames(client, () => client.framesFor(live, 'pusher_internal:subscription_succeeded').length === 2);
  await onSecond.trigger(live, 'tick', { n: 4 });
  await untilFrames(client, () => client.framesFor(live, 'tick').some((f) => f.data.n === 4));
  return { client, kept, position, onSecond };
}

test('SIGTERM on one Redis: pusher-js moves to the ready edge and a resumed channel gets exactly what it missed', T, async (t) => {
  const redis = await startRedis();
  t.after(() => redis.stop());
  const { client, kept, position, onSecond } = await drainedToTheSecondEdge(t, { SWITCHBOARD_BROKER: redis.url });

  // Missed: published while the kept channel had no subscription anywhere.
  for (let n = 4; n <= 5; n++) await onSecond.trigger(kept, 'tick', { n });
  client.pusher.send_event('pusher:subscribe', { channel: kept, resume: position });
  await untilFrames(client, () => client.framesFor(kept, 'pusher_internal:subscription_succeeded').length === 2);
  const resumed = client.framesFor(kept, 'pusher_internal:subscription_succeeded')[1];
  assert.equal(resumed.data.epoch, position.epoch, 'one history across both edges');
  await untilFrames(client, () => client.framesFor(kept, 'tick').length === 5);
  await onSecond.trigger(kept, 'tick', { n: 6 });
  await untilFrames(client, () => client.framesFor(kept, 'tick').length === 6);

  const ticks = client.framesFor(kept, 'tick');
  assert.deepEqual(ticks.map((f) => f.data.n), [1, 2, 3, 4, 5, 6], 'no gap, no duplicate, in order');
  assert.deepEqual(client.framesFor(kept, 'switchboard:resume_failed'), [], client.describe());
});

test('SIGTERM without a shared broker: the second edge says explicitly what it cannot resume', T, async (t) => {
  const { client, kept, position } = await drainedToTheSecondEdge(t);
  // The second edge shares nothing with the first, so it can only say so, never skip silently.
  client.pusher.send_event('pusher:subscribe', { channel: kept, resume: position });
  const failed = await frameOf(client, kept, 'switchboard:resume_failed');
  assert.equal(failed.data.reason, 'epoch_changed', JSON.stringify(failed));
});
