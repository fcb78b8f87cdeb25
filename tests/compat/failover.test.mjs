// Failover: one of three edges on one Redis is SIGKILLed while events stream through another.
// Clients reach the edges through a balancer that sends each new connection to the next live
// edge. The dead edge's unmodified pusher-js clients reconnect there by themselves; clients that
// resume (a raw protocol client doing what our SDK does: `resume` from the last serial seen) end
// with every event, in order, once; the dead edge's subscriptions, connection slots and presence
// members leave the cluster within its heartbeat window (`--node-heartbeat-ttl` 3 s here).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';

import { RawSocket, frameData, jsonBody, uid, waitForEvent } from './helpers.mjs';
import { roundRobinBalancer, until, useCluster } from './cluster.mjs';
import { ResumingClient } from './resuming-client.mjs';

const HEARTBEAT_TTL_S = 3;
// Generous bounds: each only fails on a real bug, never on a slow machine.
const STREAM_MS = 20000;
const GONE_MS = 20000;
// The stream's rate (one trigger, then this pause): a load, not a synchronisation. It keeps the
// gap a resumed client asks for well inside the outbox's room and the plan's history.
const PUBLISH_EVERY_MS = 20;

// The app's connection ceiling: room for the test's 8 clients and the 2 that move while the dead
// edge's 3 still count, so that no move is refused.
const MAX_CONNECTIONS = 12;

const ctx = useCluster({
  redis: 'single',
  env: { SWITCHBOARD_NODE_HEARTBEAT_TTL: String(HEARTBEAT_TTL_S) },
  setup: (cluster) => cluster.createPlan('failover', { max_connections: MAX_CONNECTIONS }),
});

/** Resolves once `holds(client.frames)` is true, checked as each frame arrives. */
async function untilFrames(client, holds, ms = STREAM_MS) {
  if (holds(client.frames)) return;
  await waitForEvent(client.pusher.connection, 'message', {
    ms,
    predicate: () => holds(client.frames),
    describe: () => client.describe(),
  });
}

const ticks = (client, channel) => client.framesFor(channel, 'tick').map((frame) => frame.data.n);
const upTo = (last) => Array.from({ length: last }, (_, n) => n + 1);

test('SIGKILL one of three edges mid-stream: its clients move to the others and resuming ones lose nothing', { timeout: 60000 }, async (t) => {
  const app = await ctx.newApp({ plan: 'failover' });
  const [publishing, , victim] = ctx.edges;
  const balancer = await roundRobinBalancer(ctx.edges);
  t.after(() => balancer.close());
  const stream = uid('stream-');
  const room = uid('presence-room-');

  // Through the balancer, dealt in turn: one pusher-js client and one resuming client per edge.
  const pusherClients = [];
  for (let n = 0; n < ctx.edges.length; n++) {
    const client = ctx.client(t, balancer, app);
    await client.subscribe(stream);
    client.edge = balancer.routes.at(-1);
    pusherClients.push(client);
  }
  // Set once the victim is killed: a moved resuming client comes back only after 10 more events,
  // so what it resumes is a real gap, served from the history.
  let published = 0;
  let killedAt = null;
  const gapPublished = () =>
    until(async () => published, (count) => killedAt !== null && count >= killedAt + 10, {
      ms: STREAM_MS,
      what: '10 events published while the resuming client is away',
    });
  const resumers = [];
  for (let n = 0; n < ctx.edges.length; n++) {
    const resumer = new ResumingClient(balancer, app.key, [stream], { beforeReconnect: gapPublished });
    t.after(() => resumer.stop());
    await resumer.until((r) => r.subscriptions === 1, { what: 'the first subscription' });
    resumer.edge = balancer.routes.at(-1);
    resumers.push(resumer);
  }
  const ports = ctx.edges.map((edge) => edge.port);
  assert.deepEqual(pusherClients.map((client) => client.edge).sort(), [...ports].sort(), 'one pusher-js client per edge');
  assert.deepEqual(resumers.map((resumer) => resumer.edge).sort(), [...ports].sort(), 'one resuming client per edge');
  const onVictim = pusherClients.find((client) => client.edge === victim.port);
  const resumerOnVictim = resumers.find((resumer) => resumer.edge === victim.port);

  // A presence member on the doomed edge, connected to it directly (nothing brings it back), and
  // one watching from the publishing edge.
  const doomed = RawSocket.forApp(victim, app.key);
  t.after(() => doomed.close());
  const socketId = frameData(await doomed.next('pusher:connection_established')).socket_id;
  const signed = ctx.api(victim, app).authorizeChannel(socketId, room, { user_id: 'doomed' });
  doomed.send({ event: 'pusher:subscribe', data: { channel: room, ...signed } });
  await doomed.next('pusher_internal:subscription_succeeded');
  const watcher = ctx.client(t, publishing, app, { userId: 'watcher' });
  const watched = await watcher.subscribe(room);
  assert.ok(watched.members.get('doomed'), `the watcher sees the doomed member; ${watcher.describe()}`);

  // Publishing through the first edge, one event after another, until told to stop.
  const api = ctx.api(publishing, app);
  let stopPublishing = false;
  const publisher = (async () => {
    while (!stopPublishing) {
      published += 1;
      const res = await api.trigger(stream, 'tick', { n: published });
      assert.equal(res.status, 200);
      await delay(PUBLISH_EVERY_MS);
    }
  })();
  t.after(() => {
    stopPublishing = true;
  });

  await resumerOnVictim.until((r) => r.events.length >= 20, { ms: STREAM_MS, what: 'the stream to be flowing' });
  const doomedRemoved = waitForEvent(watched, 'pusher:member_removed', {
    ms: GONE_MS,
    predicate: (member) => member.id === 'doomed',
    describe: () => watcher.describe(),
  });
  doomedRemoved.catch(() => {}); // awaited below; not an unhandled rejection meanwhile
  killedAt = published;
  const exit = await victim.kill('SIGKILL');
  assert.equal(exit.signal, 'SIGKILL');

  // The dead edge's clients reconnect through the balancer, to the live edges.
  const victimSocket = onVictim.socketId;
  await untilFrames(onVictim, () => onVictim.framesFor(stream, 'pusher_internal:subscription_succeeded').length === 2);
  assert.notEqual(onVictim.socketId, victimSocket, 'a new connection');
  await resumerOnVictim.until((r) => r.subscriptions === 2, { ms: STREAM_MS, what: 'the resumed subscription' });
  assert.ok(
    balancer.routes.slice(ctx.edges.length * 2).every((port) => port !== victim.port),
    `no new connection went to the dead edge: ${JSON.stringify(balancer.routes)}`,
  );

  // A while more of the stream after everyone is back, then the last event.
  const reconnectedAt = published;
  await until(
    async () => published,
    (count) => count >= reconnectedAt + 20,
    { ms: STREAM_MS, what: '20 more events published' },
  );
  stopPublishing = true;
  await publisher;
  const total = published;
  assert.ok(total > killedAt, `events were published while the edge was dead (${killedAt} → ${total})`);
  t.diagnostic(`events: ${total}; published by the kill: ${killedAt}; once its clients were back: ${reconnectedAt}`);

  await t.test('every resuming client ends with every event, in order, once', async () => {
    for (const resumer of resumers) {
      await resumer.until((r) => r.events.length >= total, { ms: STREAM_MS, what: `all ${total} events` });
      assert.deepEqual(resumer.failures, [], 'nothing it could not resume');
      assert.deepEqual(resumer.events.map((event) => event.serial), upTo(total), resumer.describe());
      assert.deepEqual(resumer.events.map((event) => event.data.n), upTo(total));
    }
    assert.equal(resumerOnVictim.connections, 2, 'the dead edge\'s resuming client reconnected once');
    const [{ serial: resumedAfter }] = resumerOnVictim.resumedFrom;
    assert.ok(resumedAfter <= killedAt, `it resumed after serial ${resumedAfter}, at most ${killedAt}`);
  });

  await t.test('pusher-js clients: all events on the live edges; after the reconnect, on the dead one\'s', async (st) => {
    for (const client of pusherClients) {
      await untilFrames(client, () => ticks(client, stream).at(-1) === total);
      if (client === onVictim) continue;
      assert.deepEqual(ticks(client, stream), upTo(total), `on ${client.edge}`);
    }
    // pusher-js has no resume: what came during its reconnect is not replayed, but nothing comes
    // twice or out of order, and the stream goes on.
    const got = ticks(onVictim, stream);
    assert.ok(got.every((n, i) => i === 0 || n > got[i - 1]), `in order, once: ${JSON.stringify(got)}`);
    assert.equal(got[0], 1, `from the first event on: ${onVictim.describe()}`);
    assert.equal(got.at(-1), total);
    st.diagnostic(`the dead edge's pusher-js client missed ${total - got.length} events while it reconnected`);
  });

  await t.test('the dead edge\'s subscriptions leave the cluster\'s counts within its heartbeat window', async () => {
    // Six subscribers again (the moved ones count once, on their new edges).
    for (const edge of ctx.edges.filter((e) => e !== victim)) {
      await until(
        async () => jsonBody(await ctx.api(edge, app).get({ path: `/channels/${stream}`, params: { info: 'subscription_count' } })),
        (body) => body.subscription_count === 6,
        { ms: GONE_MS, what: `the subscription count on ${edge.port} to drop the dead edge's` },
      );
    }
  });

  await t.test('the dead edge\'s connection slots are released: the ceiling admits exactly the live remainder', async (st) => {
    // Live now: 3 pusher-js, 3 resuming clients, the watcher; the doomed member died with its edge.
    const remainder = MAX_CONNECTIONS - 7;
    const admitted = [];
    const attempt = async () => {
      const raw = RawSocket.forApp(publishing, app.key);
      st.after(() => raw.close());
      const answers = [raw.next('pusher:connection_established'), raw.next('pusher:error')];
      for (const answer of answers) answer.catch(() => {}); // the one that never comes
      const first = await Promise.race(answers);
      if (first.event === 'pusher:error') {
        raw.close();
        return frameData(first).code;
      }
      admitted.push(raw);
      return 'admitted';
    };
    // Refusals while the dead edge's slots still count are retried; once they are swept, the
    // remainder is admitted, and not one more.
    await until(attempt, () => admitted.length === remainder, {
      ms: GONE_MS,
      what: `${remainder} more connections to be admitted`,
    });
    assert.equal(await attempt(), 4004, 'the ceiling holds after the sweep');
  });

  await t.test('the dead edge\'s presence members leave the others\' member lists within its heartbeat window', async () => {
    // FIXME(issue 9): presence expiry of a dead node is being built on another branch; until it
    // is merged, this fails here (the doomed member stays).
    await doomedRemoved;
    assert.equal(watched.members.get('doomed'), null);
    for (const edge of ctx.edges.filter((e) => e !== victim)) {
      const body = await jsonBody(await ctx.api(edge, app).get({ path: `/channels/${room}/users` }));
      assert.deepEqual(body.users, [{ id: 'watcher' }], `users on ${edge.port}`);
    }
  });
});
