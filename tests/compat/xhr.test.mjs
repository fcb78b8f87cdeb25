// pusher-js's own HTTP fallbacks: the unmodified Node build of pusher-js (its XMLHttpRequest is
// the bundled `xmlhttprequest` package, which reports each chunk as it arrives, so streaming
// really streams) restricted to `xhr_streaming`, then to `xhr_polling`, with `httpHost`/`httpPort`
// pointing at the server and no WebSocket transport enabled.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { PusherClient, T, WAIT_MS, raceEvents, uid, useServer, waitForEvent } from './helpers.mjs';

const ctx = useServer();

/** A pusher-js client that may use only `transport`, signing channels with the app's secret. */
function xhrClient(t, app, transport, { userId } = {}) {
  const { host, port } = ctx.server;
  const signer = ctx.api(app);
  const frames = [];
  const states = [];
  const pusher = new PusherClient(app.key, {
    cluster: 'x',
    httpHost: host,
    httpPort: port,
    wsHost: host,
    wsPort: port,
    forceTLS: false,
    enabledTransports: [transport],
    enableStats: false,
    channelAuthorization: {
      customHandler: (params, callback) => {
        try {
          const presence = params.channelName.startsWith('presence-') ? { user_id: userId } : undefined;
          callback(null, signer.authorizeChannel(params.socketId, params.channelName, presence));
        } catch (err) {
          callback(err, null);
        }
      },
    },
  });
  states.push(pusher.connection.state);
  pusher.connection.bind('state_change', ({ current }) => states.push(current));
  pusher.connection.bind('message', (frame) => frames.push(frame));
  t.after(() => pusher.disconnect());
  const describe = () =>
    `${transport} client: states=${JSON.stringify(states)}\n  frames: ${JSON.stringify(frames)}`;
  return { pusher, frames, states, describe };
}

async function connected(client) {
  if (client.pusher.connection.state !== 'connected') {
    await waitForEvent(client.pusher.connection, 'state_change', {
      predicate: ({ current }) => current === 'connected',
      describe: client.describe,
    });
  }
}

async function subscribed(client, name) {
  await connected(client);
  const channel = client.pusher.subscribe(name);
  const { event, data } = await raceEvents(
    channel,
    ['pusher:subscription_succeeded', 'pusher:subscription_error'],
    { describe: client.describe },
  );
  assert.equal(event, 'pusher:subscription_succeeded', `${name}: ${JSON.stringify(data)}\n${client.describe()}`);
  return channel;
}

/** Resolves with the data of the first `count` `event`s on `channel`, in arrival order. */
function collect(channel, event, count, describe) {
  return new Promise((resolve, reject) => {
    const got = [];
    const timer = setTimeout(() => {
      channel.unbind(event, handler);
      reject(new Error(`timed out with ${got.length}/${count} '${event}'\n${describe()}`));
    }, WAIT_MS);
    const handler = (data) => {
      got.push(data);
      if (got.length === count) {
        clearTimeout(timer);
        channel.unbind(event, handler);
        resolve(got);
      }
    };
    channel.bind(event, handler);
  });
}

for (const transport of ['xhr_streaming', 'xhr_polling']) {
  test(`${transport}: pusher-js connects over it, subscribes to a private channel and receives`, T, async (t) => {
    const app = ctx.server.takeApp();
    const client = xhrClient(t, app, transport);
    await connected(client);
    assert.equal(client.pusher.connection.connection.transport.name, transport, client.describe());
    assert.match(client.pusher.connection.socket_id, /^\d+\.\d+$/);

    const name = uid('private-xhr-');
    const channel = await subscribed(client, name);
    const api = ctx.api(app);
    const got = collect(channel, 'numbered', 5, client.describe);
    for (let n = 1; n <= 5; n++) await api.trigger(name, 'numbered', { n });
    assert.deepEqual(
      (await got).map((data) => data.n),
      [1, 2, 3, 4, 5],
    );

    // Public channels too, on the same connection.
    const news = uid('news-');
    const publicChannel = await subscribed(client, news);
    const headline = waitForEvent(publicChannel, 'headline', { describe: client.describe });
    await api.trigger(news, 'headline', 'hello');
    assert.equal((await headline).data, 'hello');
  });

  test(`${transport}: client events between an xhr client and a WebSocket client`, T, async (t) => {
    const app = ctx.server.takeApp();
    const name = uid('private-chat-');
    const xhr = xhrClient(t, app, transport);
    const ws = ctx.client(t, app);
    const [xhrChannel, wsChannel] = await Promise.all([subscribed(xhr, name), ws.subscribe(name)]);
    assert.equal(xhr.pusher.connection.connection.transport.name, transport);

    const atWs = waitForEvent(wsChannel, 'client-typing', { describe: () => ws.describe() });
    assert.equal(xhrChannel.trigger('client-typing', { from: 'xhr' }), true);
    assert.deepEqual((await atWs).data, { from: 'xhr' });

    const atXhr = waitForEvent(xhrChannel, 'client-typing', { describe: xhr.describe });
    assert.equal(wsChannel.trigger('client-typing', { from: 'ws' }), true);
    assert.deepEqual((await atXhr).data, { from: 'ws' });
  });

  test(`${transport}: presence members see an xhr member join`, T, async (t) => {
    const app = ctx.server.takeApp();
    const name = uid('presence-room-');
    const ws = ctx.client(t, app, { userId: 'ws-user' });
    const wsChannel = await ws.subscribe(name);
    const added = waitForEvent(wsChannel, 'pusher:member_added', { describe: () => ws.describe() });
    const xhr = xhrClient(t, app, transport, { userId: 'xhr-user' });
    const xhrChannel = await subscribed(xhr, name);
    assert.equal((await added).data.id, 'xhr-user');
    assert.deepEqual(Object.keys(xhrChannel.members.members).sort(), ['ws-user', 'xhr-user']);
  });

  test(`${transport}: 320 K characters of events arrive whole and in order (past pusher-js's 256 K stream rotation)`, T, async (t) => {
    const app = ctx.server.takeApp();
    const client = xhrClient(t, app, transport);
    const name = uid('bulk-');
    const channel = await subscribed(client, name);
    const api = ctx.api(app);
    const got = collect(channel, 'bulk', 40, client.describe);
    const filler = `${'x'.repeat(7990)}é😀`;
    for (let n = 0; n < 40; n++) await api.trigger(name, 'bulk', { n, filler });
    const data = await got;
    assert.deepEqual(
      data.map((d) => d.n),
      Array.from({ length: 40 }, (_, n) => n),
    );
    assert.ok(data.every((d) => d.filler === filler));
    assert.equal(client.pusher.connection.state, 'connected');
    assert.deepEqual(client.states, ['connecting', 'connected'], 'the same connection throughout');
  });

  test(`${transport}: an unknown key stops pusher-js with 4001`, T, async (t) => {
    const app = { ...ctx.server.takeApp(), key: 'nosuchkey2222222222' };
    const client = xhrClient(t, app, transport);
    const errors = [];
    client.pusher.connection.bind('error', (err) => errors.push(err));
    await waitForEvent(client.pusher.connection, 'state_change', {
      predicate: ({ current }) => current === 'disconnected' || current === 'failed',
      describe: client.describe,
    });
    const codes = errors.map((e) => e?.error?.data?.code ?? e?.data?.code);
    assert.ok(codes.includes(4001), `errors: ${JSON.stringify(errors)}\n${client.describe()}`);
  });
}
