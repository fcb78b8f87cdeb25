// Private channels: signed subscriptions, rejected signatures, client events.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { T, uid, useServer } from './helpers.mjs';

const ctx = useServer();

test('private subscribe with an authorizeChannel signature succeeds and receives events', T, async (t) => {
  const app = ctx.server.takeApp();
  const client = ctx.client(t, app);
  const api = ctx.api(app);
  const channelName = uid('private-ok-');

  const channel = await client.subscribe(channelName);
  assert.equal(channel.subscribed, true);

  const got = client.waitFor(channelName, 'secret-news');
  await api.trigger(channelName, 'secret-news', { ok: true });
  assert.deepEqual((await got).data, { ok: true });
});

test('private subscribe signed with the wrong secret gets pusher:subscription_error', T, async (t) => {
  const app = ctx.server.takeApp();
  const wrongSigner = ctx.api({ ...app, secret: app.secret.replace(/.$/, (c) => (c === '0' ? '1' : '0')) });
  const client = ctx.client(t, app, { signer: wrongSigner });
  const api = ctx.api(app);
  const channelName = uid('private-bad-');

  const { channel, data } = await client.subscribeExpectingError(channelName);
  assert.equal(channel.subscribed, false, 'channel must not be marked subscribed');
  // docs §5: data = {"type":"AuthError","error":"...","status":401}
  assert.equal(typeof data, 'object', `subscription_error data should be an object: ${JSON.stringify(data)}`);
  assert.equal(data.type, 'AuthError', `subscription_error data: ${JSON.stringify(data)}`);
  assert.equal(data.status, 401, `subscription_error data: ${JSON.stringify(data)}`);

  // The server must not have subscribed the connection anyway: the channel is unoccupied.
  const res = await api.get({ path: `/channels/${channelName}` });
  assert.deepEqual(JSON.parse(await res.text()), { occupied: false });
  // And the connection itself stays usable.
  assert.equal(client.state, 'connected');
});

test('private subscribe with a signature for a different socket_id is rejected', T, async (t) => {
  const app = ctx.server.takeApp();
  const api = ctx.api(app);
  // Sign for another socket id: a replayed auth from a different connection must not work.
  const replaySigner = {
    authorizeChannel: (socketId, channelName, data) => api.authorizeChannel('1234.5678', channelName, data),
  };
  const client = ctx.client(t, app, { signer: replaySigner });
  const { data } = await client.subscribeExpectingError(uid('private-replay-'));
  assert.equal(data.type, 'AuthError', `subscription_error data: ${JSON.stringify(data)}`);
});

test('client events on a private channel reach the other member but are not echoed', T, async (t) => {
  const app = ctx.server.takeApp();
  const sender = ctx.client(t, app);
  const receiver = ctx.client(t, app);
  const channelName = uid('private-chat-');
  const senderChannel = await sender.subscribe(channelName);
  const receiverChannel = await receiver.subscribe(channelName);

  const gotPing = receiver.waitFor(channelName, 'client-ping');
  assert.equal(senderChannel.trigger('client-ping', { msg: 'hi', n: [1, 2] }), true, 'trigger() sent');
  assert.deepEqual((await gotPing).data, { msg: 'hi', n: [1, 2] });

  // Reply: the sender's own 'client-ping' (if wrongly echoed) would have been queued to the sender
  // before the receiver even got it, so it would arrive before this reply.
  const gotPong = sender.waitFor(channelName, 'client-pong');
  receiverChannel.trigger('client-pong', { re: 'hi' });
  assert.deepEqual((await gotPong).data, { re: 'hi' });

  assert.deepEqual(sender.framesFor(channelName, 'client-ping'), [], 'sender must not receive its own client event');
  assert.deepEqual(receiver.framesFor(channelName, 'client-pong'), [], 'receiver must not receive its own client event');
  assert.equal(receiver.framesFor(channelName, 'client-ping').length, 1, 'delivered exactly once');
});

test('client events on a public channel are not relayed', T, async (t) => {
  const app = ctx.server.takeApp();
  const sender = ctx.client(t, app);
  const receiver = ctx.client(t, app);
  const api = ctx.api(app);
  const channelName = uid('public-noclient-');
  await sender.subscribe(channelName);
  await receiver.subscribe(channelName);

  // pusher-js lets the app call trigger() on a public channel; the server must drop it.
  sender.pusher.channel(channelName).trigger('client-sneaky', { x: 1 });
  // Barrier: a later server event on the same channel, after the sender's frame was processed.
  // The sender's next frame (a subscribe) is answered only after the client event was handled.
  await sender.subscribe(uid('barrier-'));
  const gotBarrier = receiver.waitFor(channelName, 'barrier');
  await api.trigger(channelName, 'barrier', {});
  await gotBarrier;
  assert.deepEqual(receiver.framesFor(channelName, 'client-sneaky'), [], 'client event on public channel relayed');
});
