// Connection lifecycle: handshake frame, ping/pong, unknown app key, raw frame encodings.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { T, uid, useServer, waitForEvent, frameData } from './helpers.mjs';

const ctx = useServer();

test('pusher-js connects and gets a well-formed socket id', T, async (t) => {
  const app = ctx.server.takeApp();
  const client = ctx.client(t, app);
  await client.connected();
  assert.match(client.socketId, /^\d+\.\d+$/, 'socket_id must match ^\\d+\\.\\d+$');
  assert.deepEqual(client.states, ['connecting', 'connected']);
});

test('raw: pusher:connection_established frame shape', T, async (t) => {
  const app = ctx.server.takeApp();
  const raw = ctx.raw(t, app.key);
  const frame = await raw.next('pusher:connection_established');
  assert.equal(raw.frames[0].event, 'pusher:connection_established', 'it is the first frame');
  assert.equal(typeof frame.data, 'string', `data must be a JSON string: ${frame.__raw}`);
  const data = JSON.parse(frame.data);
  assert.match(data.socket_id, /^\d+\.\d+$/);
  assert.equal(Number.isInteger(data.activity_timeout) && data.activity_timeout > 0, true, frame.__raw);
});

test('raw: pusher:ping is answered with pusher:pong', T, async (t) => {
  const app = ctx.server.takeApp();
  const raw = ctx.raw(t, app.key);
  await raw.next('pusher:connection_established');
  raw.send({ event: 'pusher:ping', data: {} });
  const pong = await raw.next('pusher:pong');
  assert.equal(pong.event, 'pusher:pong');
});

test('raw: subscribe replies and presence payload encoding', T, async (t) => {
  const app = ctx.server.takeApp();
  const api = ctx.api(app);
  const raw = ctx.raw(t, app.key);
  const est = await raw.next('pusher:connection_established');
  const socketId = frameData(est).socket_id;

  const pub = uid('raw-pub-');
  raw.send({ event: 'pusher:subscribe', data: { auth: '', channel: pub } });
  const ok = await raw.next('pusher_internal:subscription_succeeded', { predicate: (f) => f.channel === pub });
  assert.ok(ok.data === undefined || typeof ok.data === 'string', `data must be a string if present: ${ok.__raw}`);

  const presence = uid('presence-raw-');
  const auth = api.authorizeChannel(socketId, presence, { user_id: 'u1', user_info: { name: 'One' } });
  raw.send({ event: 'pusher:subscribe', data: { channel: presence, ...auth } });
  const pres = await raw.next('pusher_internal:subscription_succeeded', { predicate: (f) => f.channel === presence });
  assert.equal(typeof pres.data, 'string', `presence data must be a JSON string: ${pres.__raw}`);
  // Beside `presence`, our extension's `epoch` and `serial` (pusher-js reads only `presence`).
  const { presence: members, epoch, serial } = JSON.parse(pres.data);
  assert.deepEqual(members, { ids: ['u1'], hash: { u1: { name: 'One' } }, count: 1 });
  assert.equal(typeof epoch, 'string');
  assert.equal(serial, 0);

  // App events: `data` is the publisher's string, forwarded untouched.
  await api.trigger(pub, 'raw-ev', { a: [1, 2] });
  const ev = await raw.next('raw-ev');
  assert.equal(ev.channel, pub);
  assert.equal(ev.data, JSON.stringify({ a: [1, 2] }));
  // Our extension: the channel's serial and epoch, as top-level fields pusher-js ignores.
  assert.equal(ev.serial, 1);
  assert.equal(ev.epoch, JSON.parse(ok.data).epoch);
});

test('raw: presence subscribe with a numeric user_id normalises to a string', T, async (t) => {
  const app = ctx.server.takeApp();
  const api = ctx.api(app);
  const raw = ctx.raw(t, app.key);
  const socketId = frameData(await raw.next('pusher:connection_established')).socket_id;
  const presence = uid('presence-num-');
  const auth = api.authorizeChannel(socketId, presence, { user_id: 10, user_info: { name: 'Ten' } });
  raw.send({ event: 'pusher:subscribe', data: { channel: presence, ...auth } });
  const pres = await raw.next('pusher_internal:subscription_succeeded', { predicate: (f) => f.channel === presence });
  assert.deepEqual(frameData(pres).presence, { ids: ['10'], hash: { 10: { name: 'Ten' } }, count: 1 });
});

test('unknown app key: raw socket gets pusher:error 4001 then close code 4001', T, async (t) => {
  const raw = ctx.raw(t, 'nosuchkey0000000000');
  const { code } = await raw.closed;
  assert.equal(code, 4001, `close code; ${raw.describe()}`);
  const errFrame = raw.frames.find((f) => f.event === 'pusher:error');
  assert.ok(errFrame, `a pusher:error frame precedes the close; ${raw.describe()}`);
  assert.equal(raw.frames[0].event, 'pusher:error', 'pusher:error is the first (and only) frame');
  assert.equal(frameData(errFrame).code, 4001, errFrame.__raw);
  assert.equal(typeof frameData(errFrame).message, 'string', errFrame.__raw);
  assert.equal(
    raw.frames.some((f) => f.event === 'pusher:connection_established'),
    false,
    'no connection_established for an unknown key',
  );
});

test('unknown app key: pusher-js stops with 4001 and does not reconnect', T, async (t) => {
  const app = { ...ctx.server.takeApp(), key: 'nosuchkey1111111111' };
  const client = ctx.client(t, app);
  const connectingIn = [];
  client.pusher.connection.bind('connecting_in', (s) => connectingIn.push(s));

  await waitForEvent(client.pusher.connection, 'state_change', {
    predicate: ({ current }) => current === 'disconnected' || current === 'failed',
    describe: () => client.describe(),
  });
  // 'refused' (4001-4099) makes pusher-js go to `disconnected` without scheduling a retry; a
  // retry/backoff action would have kept it in `connecting` instead.
  assert.deepEqual(client.states, ['connecting', 'disconnected'], client.describe());
  assert.deepEqual(connectingIn, [], 'no reconnect was scheduled');
  const codes = client.errors.map((e) => e?.error?.data?.code ?? e?.data?.code);
  assert.ok(codes.includes(4001), `pusher-js saw error code 4001; errors: ${JSON.stringify(client.errors)}`);
  assert.equal(client.pusher.connection.connection, null, 'no live connection');

  // A round trip through the server (another refused socket) as a barrier, then re-check that
  // pusher-js is still disconnected and has not tried again.
  const raw = ctx.raw(t, app.key);
  await raw.closed;
  assert.equal(client.state, 'disconnected');
  assert.deepEqual(client.states, ['connecting', 'disconnected']);
});

test('a valid key on a second app connects independently', T, async (t) => {
  const appA = ctx.server.takeApp();
  const appB = ctx.server.takeApp();
  const a = ctx.client(t, appA);
  const b = ctx.client(t, appB);
  const name = uid('shared-name-');
  await a.subscribe(name);
  await b.subscribe(name);

  // Same channel name in two apps: events do not cross apps.
  const gotB = b.waitFor(name, 'only-b');
  await ctx.api(appA).trigger(name, 'only-a', { app: 'A' });
  await ctx.api(appB).trigger(name, 'only-b', { app: 'B' });
  assert.deepEqual((await gotB).data, { app: 'B' });
  assert.deepEqual(b.framesFor(name, 'only-a'), [], 'app A event leaked into app B');
});
