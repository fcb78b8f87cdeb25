// Public channels: subscribe, server trigger delivery, socket_id exclusion, triggerBatch.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { T, uid, useServer, jsonBody } from './helpers.mjs';

const ctx = useServer();

test('public subscribe succeeds and a server trigger delivers the exact data', T, async (t) => {
  const app = ctx.server.takeApp();
  const client = ctx.client(t, app);
  const api = ctx.api(app);
  const channelName = uid('public-');

  await client.subscribe(channelName);
  const channel = client.pusher.channel(channelName);
  assert.equal(channel.subscribed, true, 'channel.subscribed after pusher:subscription_succeeded');

  // Object data: pusher-http-node JSON-encodes it, pusher-js decodes it.
  const payload = { text: 'héllo ✓', n: 42, nested: { list: [1, 'two', null, true] } };
  const gotObject = client.waitFor(channelName, 'greeting');
  const res = await api.trigger(channelName, 'greeting', payload);
  assert.equal(res.status, 200);
  assert.deepEqual(await jsonBody(res), {}, 'trigger without info returns {}');
  assert.deepEqual((await gotObject).data, payload);

  // A string that is not JSON must arrive verbatim (the server must not re-encode it).
  const plain = 'just a string, "quoted" \\ and\nnewline';
  const gotString = client.waitFor(channelName, 'plain');
  await api.trigger(channelName, 'plain', plain);
  assert.equal((await gotString).data, plain);

  // The wire frame carries the publisher's string untouched.
  const frame = client.framesFor(channelName, 'plain')[0];
  assert.equal(frame.data, plain);
});

test('trigger to several channels reaches each subscribed channel', T, async (t) => {
  const app = ctx.server.takeApp();
  const client = ctx.client(t, app);
  const api = ctx.api(app);
  const a = uid('multi-a-');
  const b = uid('multi-b-');
  await client.subscribe(a);
  await client.subscribe(b);

  const gotA = client.waitFor(a, 'fanout');
  const gotB = client.waitFor(b, 'fanout');
  await api.trigger([a, b], 'fanout', { to: 'both' });
  assert.deepEqual((await gotA).data, { to: 'both' });
  assert.deepEqual((await gotB).data, { to: 'both' });
});

test('trigger with socket_id excludes that connection only', T, async (t) => {
  const app = ctx.server.takeApp();
  const excluded = ctx.client(t, app);
  const other = ctx.client(t, app);
  const api = ctx.api(app);
  const channelName = uid('excl-');
  await excluded.subscribe(channelName);
  await other.subscribe(channelName);

  const otherGotFirst = other.waitFor(channelName, 'first');
  const otherGotSecond = other.waitFor(channelName, 'second');
  const excludedGotSecond = excluded.waitFor(channelName, 'second');

  await api.trigger(channelName, 'first', { seq: 1 }, { socket_id: excluded.socketId });
  await api.trigger(channelName, 'second', { seq: 2 });

  assert.deepEqual((await otherGotFirst).data, { seq: 1 }, 'the non-excluded connection gets the excluded event');
  assert.deepEqual((await otherGotSecond).data, { seq: 2 });
  assert.deepEqual((await excludedGotSecond).data, { seq: 2 });

  // 'second' was published after 'first', so by now 'first' would have arrived if it was sent.
  const appEvents = excluded.framesFor(channelName).filter((f) => !f.event.startsWith('pusher'));
  assert.deepEqual(
    appEvents.map((f) => f.event),
    ['second'],
    `excluded connection must see only 'second'; frames: ${JSON.stringify(excluded.frames)}`,
  );
  const otherEvents = other.framesFor(channelName).filter((f) => !f.event.startsWith('pusher'));
  assert.deepEqual(otherEvents.map((f) => f.event), ['first', 'second'], 'per-connection order is preserved');
});

test('triggerBatch delivers every event of the batch', T, async (t) => {
  const app = ctx.server.takeApp();
  const client = ctx.client(t, app);
  const api = ctx.api(app);
  const a = uid('batch-a-');
  const b = uid('batch-b-');
  await client.subscribe(a);
  await client.subscribe(b);

  const batch = [
    { channel: a, name: 'ev-1', data: { i: 1 } },
    { channel: b, name: 'ev-2', data: { i: 2 } },
    { channel: a, name: 'ev-3', data: 'three' },
    { channel: b, name: 'ev-4', data: { i: 4, s: 'ünïcode' } },
  ];
  const expected = batch.map((e) => ({ channel: e.channel, name: e.name, data: e.data }));
  const waits = expected.map((e) => client.waitFor(e.channel, e.name));

  const res = await api.triggerBatch(batch);
  assert.equal(res.status, 200);
  assert.deepEqual(await jsonBody(res), {}, 'triggerBatch without info returns {}');

  const got = await Promise.all(waits);
  got.forEach(({ data }, i) => assert.deepEqual(data, expected[i].data, `batch event ${i}`));

  // Each event arrives exactly once.
  for (const e of expected) {
    assert.equal(client.framesFor(e.channel, e.name).length, 1, `${e.name} delivered once`);
  }
});

test('unsubscribe stops delivery on that channel', T, async (t) => {
  const app = ctx.server.takeApp();
  const client = ctx.client(t, app);
  const api = ctx.api(app);
  const gone = uid('gone-');
  const kept = uid('kept-');
  await client.subscribe(gone);
  await client.subscribe(kept);
  client.pusher.unsubscribe(gone);

  // The unsubscribe frame is sent before this barrier subscription, and frames on one connection
  // are processed in order, so once `barrier` succeeds the server has processed the unsubscribe.
  await client.subscribe(uid('barrier-'));
  const gotKept = client.waitFor(kept, 'after');
  await api.trigger(gone, 'after', { x: 1 });
  await api.trigger(kept, 'after', { x: 2 });
  assert.deepEqual((await gotKept).data, { x: 2 });
  assert.deepEqual(
    client.framesFor(gone, 'after'),
    [],
    'no event for an unsubscribed channel',
  );
});
