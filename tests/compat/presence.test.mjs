// Presence channels: members, member_added/member_removed, per-user (not per-connection) identity.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { T, WAIT_MS, uid, useServer, jsonBody } from './helpers.mjs';

const ctx = useServer();

function memberMap(members) {
  const out = {};
  members.each((m) => {
    out[m.id] = m.info;
  });
  return out;
}

test('presence: two users see each other, member_added and member_removed fire', T, async (t) => {
  const app = ctx.server.takeApp();
  const channelName = uid('presence-room-');
  const alice = ctx.client(t, app, { userId: 'alice', userInfo: { name: 'Alice' } });
  const bob = ctx.client(t, app, { userId: 'bob', userInfo: { name: 'Bob', tags: ['x'] } });

  const aliceChannel = await alice.subscribe(channelName);
  assert.equal(aliceChannel.members.count, 1);
  assert.deepEqual(aliceChannel.members.me, { id: 'alice', info: { name: 'Alice' } });
  assert.deepEqual(memberMap(aliceChannel.members), { alice: { name: 'Alice' } });

  const added = alice.waitFor(channelName, 'pusher:member_added');
  const bobChannel = await bob.subscribe(channelName);
  assert.deepEqual((await added).data, { id: 'bob', info: { name: 'Bob', tags: ['x'] } });
  assert.equal(aliceChannel.members.count, 2, 'alice counts two members');

  assert.equal(bobChannel.members.count, 2, 'bob sees two members in subscription_succeeded');
  assert.deepEqual(bobChannel.members.me, { id: 'bob', info: { name: 'Bob', tags: ['x'] } });
  assert.deepEqual(memberMap(bobChannel.members), { alice: { name: 'Alice' }, bob: { name: 'Bob', tags: ['x'] } });
  assert.deepEqual(bob.framesFor(channelName, 'pusher_internal:member_added'), [], 'joiner gets no member_added for itself');

  const removed = alice.waitFor(channelName, 'pusher:member_removed');
  bob.disconnect();
  assert.deepEqual((await removed).data, { id: 'bob', info: { name: 'Bob', tags: ['x'] } });
  assert.equal(aliceChannel.members.count, 1);
  assert.deepEqual(memberMap(aliceChannel.members), { alice: { name: 'Alice' } });

  // Raw frames: member_added/member_removed carry exactly the documented payload.
  const rawAdded = alice.framesFor(channelName, 'pusher_internal:member_added');
  assert.deepEqual(rawAdded.map((f) => f.data), [{ user_id: 'bob', user_info: { name: 'Bob', tags: ['x'] } }]);
  const rawRemoved = alice.framesFor(channelName, 'pusher_internal:member_removed');
  assert.deepEqual(rawRemoved.map((f) => f.data), [{ user_id: 'bob' }]);
});

test('presence: leaving by unsubscribe sends member_removed', T, async (t) => {
  const app = ctx.server.takeApp();
  const channelName = uid('presence-unsub-');
  const alice = ctx.client(t, app, { userId: 'alice', userInfo: {} });
  const bob = ctx.client(t, app, { userId: 'bob', userInfo: {} });
  await alice.subscribe(channelName);
  const added = alice.waitFor(channelName, 'pusher:member_added');
  await bob.subscribe(channelName);
  await added;

  const removed = alice.waitFor(channelName, 'pusher:member_removed');
  bob.pusher.unsubscribe(channelName);
  assert.equal((await removed).data.id, 'bob');
  assert.equal(alice.pusher.channel(channelName).members.count, 1);
});

test('presence: one user with two connections is one member', T, async (t) => {
  const app = ctx.server.takeApp();
  const api = ctx.api(app);
  const channelName = uid('presence-multi-');
  const probeName = uid('probe-');
  const alice = ctx.client(t, app, { userId: 'alice', userInfo: { name: 'Alice' } });
  const bob1 = ctx.client(t, app, { userId: 'bob', userInfo: { name: 'Bob' } });
  const bob2 = ctx.client(t, app, { userId: 'bob', userInfo: { name: 'Bob' } });

  const aliceChannel = await alice.subscribe(channelName);

  const added = alice.waitFor(channelName, 'pusher:member_added');
  await bob1.subscribe(channelName);
  await bob1.subscribe(probeName); // only bob1 is on the probe channel (used as a barrier below)
  assert.equal((await added).data.id, 'bob');

  const bob2Channel = await bob2.subscribe(channelName);
  assert.equal(bob2Channel.members.count, 2, 'second connection of bob sees 2 distinct members');
  assert.deepEqual(memberMap(bob2Channel.members), { alice: { name: 'Alice' }, bob: { name: 'Bob' } });

  // Barrier: an event published after bob2's subscription completed. Any member_added caused by
  // bob2 would have been queued to alice before it.
  let barrier = alice.waitFor(channelName, 'barrier-1');
  await api.trigger(channelName, 'barrier-1', {});
  await barrier;
  assert.equal(
    alice.framesFor(channelName, 'pusher_internal:member_added').length,
    1,
    `member_added must fire once per user, not per connection; frames: ${JSON.stringify(alice.frames)}`,
  );
  assert.equal(aliceChannel.members.count, 2);

  // HTTP API agrees: one user, listed once.
  let res = await api.get({ path: `/channels/${channelName}/users` });
  assert.deepEqual(sortUsers(await jsonBody(res)), { users: [{ id: 'alice' }, { id: 'bob' }] });

  // bob1 leaves (disconnect). Wait until the server has processed it: the probe channel, which only
  // bob1 had joined, becomes unoccupied (bounded polling of server state, not a sleep).
  bob1.disconnect();
  await waitUntilUnoccupied(api, probeName);
  barrier = alice.waitFor(channelName, 'barrier-2');
  await api.trigger(channelName, 'barrier-2', {});
  await barrier;
  assert.deepEqual(
    alice.framesFor(channelName, 'pusher_internal:member_removed'),
    [],
    'member_removed must not fire while bob still has a connection',
  );
  assert.equal(aliceChannel.members.count, 2);
  assert.notEqual(aliceChannel.members.get('bob'), null, 'bob is still a member');
  res = await api.get({ path: `/channels/${channelName}`, params: { info: 'user_count' } });
  assert.deepEqual(await jsonBody(res), { occupied: true, user_count: 2 });

  // The last connection leaves: now member_removed fires exactly once.
  const removed = alice.waitFor(channelName, 'pusher:member_removed');
  bob2.disconnect();
  assert.deepEqual((await removed).data, { id: 'bob', info: { name: 'Bob' } });
  assert.equal(aliceChannel.members.count, 1);
  const barrier3 = alice.waitFor(channelName, 'barrier-3');
  await api.trigger(channelName, 'barrier-3', {});
  await barrier3;
  assert.equal(alice.framesFor(channelName, 'pusher_internal:member_removed').length, 1);
});

test('presence: client events carry the sender user_id', T, async (t) => {
  const app = ctx.server.takeApp();
  const channelName = uid('presence-chat-');
  const alice = ctx.client(t, app, { userId: 'alice', userInfo: {} });
  const bob = ctx.client(t, app, { userId: 'bob', userInfo: {} });
  const aliceChannel = await alice.subscribe(channelName);
  await bob.subscribe(channelName);

  const got = bob.waitFor(channelName, 'client-typing');
  aliceChannel.trigger('client-typing', { typing: true });
  const { data, metadata } = await got;
  assert.deepEqual(data, { typing: true });
  assert.deepEqual(metadata, { user_id: 'alice' }, 'presence client events carry user_id of the sender');
});

function byId(a, b) {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

function sortUsers(body) {
  return { ...body, users: [...body.users].sort(byId) };
}

async function waitUntilUnoccupied(api, channelName) {
  const deadline = Date.now() + WAIT_MS;
  let last;
  for (let i = 0; Date.now() < deadline; i++) {
    const res = await api.get({ path: `/channels/${channelName}` });
    last = await jsonBody(res);
    if (last.occupied === false) return;
    await new Promise((r) => setTimeout(r, Math.min(5 * 2 ** i, 100)));
  }
  throw new Error(`channel ${channelName} still occupied after ${WAIT_MS} ms: ${JSON.stringify(last)}`);
}
