// The three-edge cluster test as unmodified pusher-js and pusher-http-node live it, shared by
// cluster.test.mjs (one Redis) and cluster-redis-cluster.test.mjs (a three-master Redis
// Cluster): clients spread over three `switchboard serve --broker …` edges behave as on one.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { isDeepStrictEqual } from 'node:util';

import { RawSocket, frameData, jsonBody, uid, waitForEvent } from './helpers.mjs';
import { until, useCluster } from './cluster.mjs';
import { WebhookReceiver } from './platform.mjs';

const SLOW = { timeout: 45000 };
// channel_vacated and member_removed are held ~3 s in case the channel or member comes back.
const LEAVE_WAIT_MS = 15000;

// A bound for what crosses edges through Redis (several round trips on a loaded machine).
const CROSS_MS = 15000;

/** Resolves once `holds(client.frames)` is true, checked as each frame arrives. */
async function untilFrames(client, holds) {
  if (holds(client.frames)) return;
  await waitForEvent(client.pusher.connection, 'message', {
    ms: CROSS_MS,
    predicate: () => holds(client.frames),
    describe: () => client.describe(),
  });
}

/** `GET path` (with `params`) on `edge`'s HTTP API, signed by pusher-http-node; the JSON body. */
async function query(ctx, edge, app, apiPath, params) {
  const res = await ctx.api(edge, app).get({ path: apiPath, params });
  assert.equal(res.status, 200, apiPath);
  return jsonBody(res);
}

/** What every edge answers to the same query, once all of them answer `expected`. */
async function agreeOnAll(ctx, app, apiPath, params, expected) {
  const answers = () => Promise.all(ctx.edges.map((edge) => query(ctx, edge, app, apiPath, params)));
  const seen = await until(answers, (all) => all.every((one) => isDeepStrictEqual(one, expected)), {
    what: `every edge to answer ${apiPath} ${JSON.stringify(params)} with ${JSON.stringify(expected)}`,
  });
  for (const answer of seen) assert.deepEqual(answer, expected);
}

/** The sorted ids of a pusher-js presence channel's members. */
function memberIds(channel) {
  const ids = [];
  channel.members.each((member) => ids.push(member.id));
  return ids.sort();
}

/** The edge number (0, 1, 2) of client `n` when clients are dealt out in turn. */
const edgeOf = (ctx, n) => ctx.edges[n % ctx.edges.length];

/** Defines the cluster tests on a Redis of `kind` ('single' or 'cluster'). */
export function clusterTests(kind) {
  const receiver = new WebhookReceiver();
  const ctx = useCluster({
    redis: kind,
    async setup() {
      await receiver.start();
      await ctx.createPlan('cluster');
      await ctx.createPlan('cluster-three', { max_connections: 3 });
    },
  });
  after(() => receiver.stop());

  test(`${kind}: every subscriber on three edges gets every event published through one, in order`, SLOW, async (t) => {
    const app = await ctx.newApp({ plan: 'cluster' });
    const channelName = uid('news-');
    const clients = Array.from({ length: 6 }, (_, n) => ctx.client(t, edgeOf(ctx, n), app));
    await Promise.all(clients.map((client) => client.subscribe(channelName)));
    await agreeOnAll(ctx, app, `/channels/${channelName}`, { info: 'subscription_count' }, {
      occupied: true,
      subscription_count: 6,
    });

    const events = 30;
    const publisher = ctx.api(ctx.edges[0], app);
    for (let n = 1; n <= events; n++) {
      await publisher.trigger(channelName, 'tick', { n });
    }
    const expected = Array.from({ length: events }, (_, n) => n + 1);
    for (const client of clients) {
      await untilFrames(client, () => client.framesFor(channelName, 'tick').length >= events);
      const got = client.framesFor(channelName, 'tick').map((frame) => frame.data.n);
      assert.deepEqual(got, expected, `every event once, in order, on ${client.server.port}`);
    }
    await agreeOnAll(ctx, app, '/channels', { filter_by_prefix: 'news-' }, { channels: { [channelName]: {} } });
  });

  test(`${kind}: presence members, user counts and client events agree across the three edges`, SLOW, async (t) => {
    const app = await ctx.newApp({ plan: 'cluster' });
    const room = uid('presence-room-');
    const people = [
      ['alice', 0],
      ['bob', 1],
      ['carol', 2],
      ['alice', 2], // Alice's second tab, on another edge: the same member.
    ];
    const clients = people.map(([userId, edge]) => ctx.client(t, ctx.edges[edge], app, { userId, userInfo: { name: userId } }));
    const channels = [];
    for (const client of clients) channels.push(await client.subscribe(room));
    const [aliceChannel, bobChannel, carolChannel, aliceTabChannel] = channels;
    await untilFrames(clients[0], () => aliceChannel.members.count === 3);
    await untilFrames(clients[1], () => bobChannel.members.count === 3);
    for (const channel of channels) assert.deepEqual(memberIds(channel), ['alice', 'bob', 'carol']);

    const everyone = { users: [{ id: 'alice' }, { id: 'bob' }, { id: 'carol' }] };
    const sortedUsers = async (edge) => {
      const body = await query(ctx, edge, app, `/channels/${room}/users`);
      return { users: body.users.sort((a, b) => a.id.localeCompare(b.id)) };
    };
    for (const edge of ctx.edges) assert.deepEqual(await sortedUsers(edge), everyone, `users on ${edge.port}`);
    await agreeOnAll(ctx, app, `/channels/${room}`, { info: 'user_count,subscription_count' }, {
      occupied: true,
      user_count: 3,
      subscription_count: 4,
    });
    await agreeOnAll(ctx, app, '/channels', { filter_by_prefix: 'presence-', info: 'user_count' }, {
      channels: { [room]: { user_count: 3 } },
    });

    // A client event from Alice's tab on the third edge reaches the first two, with her user id.
    const heard = [aliceChannel, bobChannel, carolChannel].map((channel) => waitForEvent(channel, 'client-wave', { ms: CROSS_MS }));
    assert.equal(aliceTabChannel.trigger('client-wave', { hand: 'left' }), true);
    for (const { data, metadata } of await Promise.all(heard)) {
      assert.deepEqual(data, { hand: 'left' });
      assert.equal(metadata.user_id, 'alice');
    }
    // Her tab published member_added (if any) before it handled its client event, on the same
    // channel: so everyone has now seen every member_added there is.
    for (const client of clients.slice(0, 3)) {
      const added = client.framesFor(room, 'pusher_internal:member_added').map((frame) => frame.data.user_id);
      assert.equal(added.filter((id) => id === 'alice').length, 0, `no one is told of Alice's second tab: ${client.describe()}`);
    }
    assert.equal(clients[3].framesFor(room, 'client-wave').length, 0, 'the sender does not get its own client event');

    // Bob leaves on the second edge: both other edges tell their members, and agree on who is left.
    const removed = [aliceChannel, carolChannel].map((channel) => waitForEvent(channel, 'pusher:member_removed', { ms: CROSS_MS }));
    clients[1].disconnect();
    for (const { data } of await Promise.all(removed)) assert.equal(data.id, 'bob');
    await agreeOnAll(ctx, app, `/channels/${room}`, { info: 'user_count,subscription_count' }, {
      occupied: true,
      user_count: 2,
      subscription_count: 3,
    });
  });

  test(`${kind}: a client resumes on another edge and gets exactly what it missed`, SLOW, async (t) => {
    const app = await ctx.newApp({ plan: 'cluster' });
    const channelName = uid('resume-');
    const [first, second, third] = ctx.edges;
    const lost = RawSocket.forApp(first, app.key);
    t.after(() => lost.close());
    await lost.next('pusher:connection_established');
    lost.send({ event: 'pusher:subscribe', data: { channel: channelName } });
    const told = frameData(await lost.next('pusher_internal:subscription_succeeded'));
    for (let n = 1; n <= 2; n++) await ctx.api(second, app).trigger(channelName, 'tick', { n });
    await lost.next('tick', { predicate: (frame) => frame.serial === 2 });
    lost.close(); // Lost without a close frame, as a dropped network would.

    for (let n = 3; n <= 5; n++) await ctx.api(third, app).trigger(channelName, 'tick', { n });
    const resumed = RawSocket.forApp(second, app.key);
    t.after(() => resumed.close());
    await resumed.next('pusher:connection_established');
    const position = { epoch: told.epoch, serial: 2 };
    resumed.send({ event: 'pusher:subscribe', data: { channel: channelName, resume: position } });
    const succeeded = frameData(await resumed.next('pusher_internal:subscription_succeeded'));
    assert.deepEqual(succeeded, position, 'the second edge knows the first one\'s epoch and serial');
    await resumed.next('tick', { predicate: (frame) => frame.serial === 5 });
    await ctx.api(first, app).trigger(channelName, 'tick', { n: 6 });
    await resumed.next('tick', { predicate: (frame) => frame.serial === 6 });
    const sinceResume = resumed.frames.filter(
      (frame) => frame.channel === channelName && frame.event !== 'pusher_internal:subscription_succeeded',
    );
    assert.deepEqual(
      sinceResume.map((frame) => [frame.event, frame.serial, frame.epoch, JSON.parse(frame.data).n]),
      [3, 4, 5, 6].map((n) => ['tick', n, told.epoch, n]),
      `the missed events, then live ones, each once; ${resumed.describe()}`,
    );
  });

  test(`${kind}: the plan's connection limit holds across the three edges (4004 on any)`, SLOW, async (t) => {
    const app = await ctx.newApp({ plan: 'cluster-three' });
    const held = ctx.edges.map((edge) => ctx.client(t, edge, app));
    await Promise.all(held.map((client) => client.connected()));
    for (const edge of ctx.edges) {
      const refused = ctx.client(t, edge, app);
      await waitForEvent(refused.pusher.connection, 'state_change', {
        predicate: ({ current }) => current === 'disconnected' || current === 'failed',
        describe: () => refused.describe(),
      });
      const codes = refused.errors.map((e) => e?.error?.data?.code ?? e?.data?.code);
      assert.ok(codes.includes(4004), `over the limit on ${edge.port}: 4004; ${refused.describe()}`);
      assert.equal(refused.socketId, undefined, 'never connected');
    }
    // One leaves on the first edge: its slot is free for a client of the third (released in the
    // background, so a refusal meanwhile is retried), and then the cluster is full again.
    held[0].disconnect();
    const admitted = await until(
      async () => {
        const raw = RawSocket.forApp(ctx.edges[2], app.key);
        const answers = [raw.next('pusher:connection_established'), raw.next('pusher:error')];
        for (const answer of answers) answer.catch(() => {}); // the one that never comes
        const first = await Promise.race(answers);
        if (first.event === 'pusher:error') raw.close();
        else t.after(() => raw.close());
        return first.event;
      },
      (event) => event === 'pusher:connection_established',
      { what: 'the freed slot to admit a client on another edge' },
    );
    assert.equal(admitted, 'pusher:connection_established');
    const over = RawSocket.forApp(ctx.edges[1], app.key);
    t.after(() => over.close());
    assert.equal(frameData(await over.next('pusher:error')).code, 4004);
    assert.equal((await over.closed).code, 4004);
  });

  test(`${kind}: webhooks fire once per cluster, not once per edge`, SLOW, async (t) => {
    const app = await ctx.newApp({ plan: 'cluster' });
    const hookPath = `/hooks/${app.id}`;
    const created = await ctx.v1('POST', `/apps/${app.id}/webhooks`, { url: `${receiver.base}${hookPath}`, event_types: [] });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const api = ctx.api(ctx.edges[0], app);
    const room = uid('room-');
    const lobby = uid('presence-lobby-');
    const onRoom = ctx.edges.map((edge) => ctx.client(t, edge, app));
    await Promise.all(onRoom.map((client) => client.subscribe(room)));
    const inLobby = [
      ['alice', 0],
      ['alice', 1],
      ['bob', 2],
    ].map(([userId, edge]) => ctx.client(t, ctx.edges[edge], app, { userId }));
    for (const client of inLobby) await client.subscribe(lobby);
    const hook = (name, fields = {}, ms) => verifiedEvent(receiver, api, hookPath, { name, ...fields }, ms);
    await hook('channel_occupied', { channel: room });
    await hook('channel_occupied', { channel: lobby });
    await hook('member_added', { channel: lobby, user_id: 'alice' });
    await hook('member_added', { channel: lobby, user_id: 'bob' });

    for (const client of [...onRoom, ...inLobby]) client.disconnect();
    await hook('channel_vacated', { channel: room }, LEAVE_WAIT_MS);
    await hook('channel_vacated', { channel: lobby }, LEAVE_WAIT_MS);
    await hook('member_removed', { channel: lobby, user_id: 'alice' }, LEAVE_WAIT_MS);
    await hook('member_removed', { channel: lobby, user_id: 'bob' }, LEAVE_WAIT_MS);

    // A marker channel vacated on each edge: each edge's webhooks leave in the order they were
    // emitted, so once all three markers are in and nothing is left to send, a duplicate
    // emitted by any edge would have arrived.
    const markers = ctx.edges.map(() => uid('marker-'));
    for (const [n, edge] of ctx.edges.entries()) {
      const client = ctx.client(t, edge, app);
      await client.subscribe(markers[n]);
      client.disconnect();
    }
    for (const marker of markers) await hook('channel_vacated', { channel: marker }, LEAVE_WAIT_MS);
    await until(
      () => ctx.sql('SELECT count(*)::int AS pending FROM webhook_outbox WHERE app_id = $1', [app.id]),
      (rows) => rows[0].pending === 0,
      { what: 'every queued webhook request of the app to be delivered' },
    );
    const seen = receiver.requests
      .filter((request) => request.path === hookPath)
      .flatMap((request) => JSON.parse(request.rawBody).events)
      .filter((event) => event.channel === room || event.channel === lobby)
      .map((event) => `${event.name} ${event.channel === room ? 'room' : 'lobby'}${event.user_id ? ` ${event.user_id}` : ''}`)
      .sort();
    assert.deepEqual(seen, [
      'channel_occupied lobby',
      'channel_occupied room',
      'channel_vacated lobby',
      'channel_vacated room',
      'member_added lobby alice',
      'member_added lobby bob',
      'member_removed lobby alice',
      'member_removed lobby bob',
    ]);
  });
}

/**
 * The next webhook to `hookPath` carrying an event with all of `expected`'s fields, checked as
 * a Pusher customer's server checks it (`pusher.webhook(...).isValid()`); resolves with the event.
 */
async function verifiedEvent(receiver, api, hookPath, expected, ms) {
  const matches = (event) => Object.entries(expected).every(([key, value]) => event[key] === value);
  const request = await receiver.next(
    (r) => r.path === hookPath && JSON.parse(r.rawBody).events.some(matches),
    ms === undefined ? {} : { ms },
  );
  const webhook = api.webhook({ headers: request.headers, rawBody: request.rawBody });
  assert.equal(webhook.isValid(), true, `signature of ${request.rawBody}`);
  return webhook.getEvents().find(matches);
}

