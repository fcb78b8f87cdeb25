// Cache channels with pusher-js: the last event published through the HTTP API is the first
// event a new subscriber gets; an empty cache sends `pusher:cache_miss`; `info=cache` through
// pusher-http-node.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { T, jsonBody, uid, useServer, waitForEvent } from './helpers.mjs';

const ctx = useServer();

test('a new subscriber gets the cached event right after subscribing', T, async (t) => {
  const app = ctx.server.takeApp();
  const api = ctx.api(app);
  const channelName = uid('cache-price-');
  await api.trigger(channelName, 'price', { usd: 1 });
  await api.trigger(channelName, 'price', { usd: 2 });

  const client = ctx.client(t, app);
  await client.connected();
  const channel = client.pusher.subscribe(channelName);
  const order = [];
  channel.bind('pusher:subscription_succeeded', () => order.push('succeeded'));
  const first = await waitForEvent(channel, 'price', { describe: () => client.describe() });
  order.push('price');
  assert.deepEqual(first.data, { usd: 2 }, 'the last event, not the first');
  assert.deepEqual(order, ['succeeded', 'price']);
  assert.deepEqual(client.framesFor(channelName, 'pusher:cache_miss'), []);

  // Live events flow as on any channel.
  const next = waitForEvent(channel, 'price', { predicate: (d) => d.usd === 3 });
  await api.trigger(channelName, 'price', { usd: 3 });
  await next;
});

test('an empty cache channel sends pusher:cache_miss; client events are not cached', T, async (t) => {
  const app = ctx.server.takeApp();
  const channelName = uid('private-cache-room-');
  const alice = ctx.client(t, app);
  await alice.connected();
  const channel = alice.pusher.subscribe(channelName);
  await waitForEvent(channel, 'pusher:cache_miss', { describe: () => alice.describe() });
  assert.equal(channel.subscribed, true);
  channel.trigger('client-typing', { on: true });

  const bob = ctx.client(t, app);
  await bob.connected();
  const bobChannel = bob.pusher.subscribe(channelName);
  await waitForEvent(bobChannel, 'pusher:cache_miss', { describe: () => bob.describe() });
});

test('presence cache channels replay after the member list', T, async (t) => {
  const app = ctx.server.takeApp();
  const api = ctx.api(app);
  const channelName = uid('presence-cache-game-');
  await api.trigger(channelName, 'score', { home: 2, away: 1 });
  const client = ctx.client(t, app, { userId: 'fan' });
  await client.connected();
  const channel = client.pusher.subscribe(channelName);
  const score = await waitForEvent(channel, 'score', { describe: () => client.describe() });
  assert.deepEqual(score.data, { home: 2, away: 1 });
  assert.equal(channel.members.count, 1, 'subscription_succeeded came first');
});

test('GET /channels/{name}?info=cache shows the cached data and its ttl', T, async () => {
  const app = ctx.server.takeApp();
  const api = ctx.api(app);
  const channelName = uid('cache-info-');
  await api.trigger(channelName, 'state', { on: true });
  const res = await api.get({ path: `/channels/${channelName}`, params: { info: 'cache' } });
  const body = await jsonBody(res);
  assert.equal(body.occupied, false);
  assert.equal(body.cache.data, JSON.stringify({ on: true }));
  assert.ok(body.cache.ttl > 1700 && body.cache.ttl <= 1800, JSON.stringify(body));
});
