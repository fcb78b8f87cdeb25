// pusher-http-python (PyPI `pusher`, unmodified) against the server: every call it makes,
// with the effects checked through unmodified pusher-js clients (or a raw socket where
// pusher-js would linger after a 4009).
//
// The library runs in python/driver.py, in the venv `cargo xtask test` makes
// (tests/compat/.venv, from python/requirements.txt); COMPAT_PYTHON names another interpreter.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { T, WAIT_MS, signIn, uid, useServer, waitForEvent, withTimeout } from './helpers.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PYTHON = process.env.COMPAT_PYTHON || path.join(HERE, '.venv/bin/python');

const ctx = useServer();
let driver;
after(() => driver?.stop());

/** pusher-http-python in its driver process, started on first use (the server is up by then). */
const py = {
  call(...args) {
    if (!existsSync(PYTHON)) {
      throw new Error(
        `no Python for pusher-http-python at ${PYTHON}: run \`cargo xtask test\`, or ` +
          '`python3 -m venv tests/compat/.venv && tests/compat/.venv/bin/pip install -r tests/compat/python/requirements.txt`',
      );
    }
    driver ??= startDriver(ctx.server);
    return driver.call(...args);
  },
};

/** The driver process: `call(app, name, ...args)` runs `pusher.Pusher(app).name(*args)`. */
function startDriver(server) {
  const child = spawn(PYTHON, [path.join(HERE, 'python/driver.py'), server.host, String(server.port)], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr = (stderr + chunk).slice(-16 * 1024)));
  const pending = new Map();
  let next = 1;
  createInterface({ input: child.stdout }).on('line', (line) => {
    const answer = JSON.parse(line);
    pending.get(answer.id)?.(answer);
    pending.delete(answer.id);
  });
  return {
    /** Resolves with the call's result; rejects with the Python exception (type and message). */
    async call(app, name, args = [], kwargs = {}) {
      const id = next++;
      const answered = new Promise((resolve) => pending.set(id, resolve));
      child.stdin.write(`${JSON.stringify({ id, app, call: name, args, kwargs })}\n`);
      const answer = await withTimeout(answered, WAIT_MS, `pusher-http-python ${name}; stderr: ${stderr}`);
      if (answer.error) {
        const error = new Error(`${answer.error.type}: ${answer.error.message}`);
        error.type = answer.error.type;
        throw error;
      }
      return answer.result;
    },
    stop() {
      child.stdin.end();
      child.kill();
    },
  };
}

/**
 * A pusher-js client whose channel authorization and user authentication are answered by
 * pusher-http-python's `authenticate` / `authenticate_user` (`presence` and `user` say with
 * what presence data and user data).
 */
function pythonAuthClient(t, app, { presence, user } = {}) {
  return ctx.signingIn(t, app, {
    authenticateUser: (socketId) => py.call(app, 'authenticate_user', [socketId, user]),
    authorizeChannel: (socketId, channelName) => {
      const customData = channelName.startsWith('presence-') ? [presence] : [];
      return py.call(app, 'authenticate', [channelName, socketId, ...customData]);
    },
  });
}

async function subscribed(client, name) {
  const channel = client.pusher.subscribe(name);
  await waitForEvent(channel, 'pusher:subscription_succeeded', { describe: client.describe });
  return channel;
}

async function connected(client) {
  if (client.pusher.connection.state === 'connected') return;
  await waitForEvent(client.pusher.connection, 'connected', { describe: client.describe });
}

test('trigger reaches subscribers, and socket_id leaves its socket out', T, async (t) => {
  const app = ctx.server.takeApp();
  const [one, two] = [uid('py-a-'), uid('py-b-')];
  const sender = pythonAuthClient(t, app);
  const reader = pythonAuthClient(t, app);
  const senderOne = await subscribed(sender, one);
  const readerOne = await subscribed(reader, one);
  const readerTwo = await subscribed(reader, two);

  const onTwo = waitForEvent(readerTwo, 'greeting', { describe: reader.describe });
  assert.deepEqual(await py.call(app, 'trigger', [[one, two], 'greeting', { text: 'hi' }]), {});
  assert.deepEqual((await onTwo).data, { text: 'hi' });

  // Excluded, the sender's next event on the channel is the one after.
  const senderNext = waitForEvent(senderOne, 'news', { describe: sender.describe });
  const readerNext = waitForEvent(readerOne, 'news', { describe: reader.describe });
  const socketId = sender.pusher.connection.socket_id;
  await py.call(app, 'trigger', [one, 'news', 'first'], { socket_id: socketId });
  assert.equal((await readerNext).data, 'first');
  await py.call(app, 'trigger', [one, 'news', 'second']);
  assert.equal((await senderNext).data, 'second');
});

test('trigger_batch publishes every event', T, async (t) => {
  const app = ctx.server.takeApp();
  const [one, two] = [uid('py-a-'), uid('py-b-')];
  const reader = pythonAuthClient(t, app);
  const first = waitForEvent(await subscribed(reader, one), 'e1', { describe: reader.describe });
  const second = waitForEvent(await subscribed(reader, two), 'e2', { describe: reader.describe });
  const batch = [
    { channel: one, name: 'e1', data: { n: 1 } },
    { channel: two, name: 'e2', data: 'two' },
  ];
  assert.deepEqual(await py.call(app, 'trigger_batch', [batch]), {});
  assert.deepEqual((await first).data, { n: 1 });
  assert.equal((await second).data, 'two');
});

test('authenticate admits private and presence subscriptions; channel and user queries see them', T, async (t) => {
  const app = ctx.server.takeApp();
  const room = uid('presence-py-');
  const secret = uid('private-py-');
  const ann = pythonAuthClient(t, app, { presence: { user_id: 'ann', user_info: { name: 'Ann' } } });
  const bob = pythonAuthClient(t, app, { presence: { user_id: 'bob' } });
  await subscribed(ann, secret);
  const annRoom = await subscribed(ann, room);
  assert.deepEqual(annRoom.members.me, { id: 'ann', info: { name: 'Ann' } });
  // Bob's member list comes with his subscription: Ann, with the info Python signed, and him.
  const bobRoom = await subscribed(bob, room);
  assert.equal(bobRoom.members.count, 2);
  assert.deepEqual(bobRoom.members.get('ann'), { id: 'ann', info: { name: 'Ann' } });

  assert.deepEqual(await py.call(app, 'channels_info', [], { prefix_filter: 'presence-', attributes: ['user_count'] }), {
    channels: { [room]: { user_count: 2 } },
  });
  assert.deepEqual(await py.call(app, 'channels_info'), { channels: { [room]: {}, [secret]: {} } });
  assert.deepEqual(await py.call(app, 'channel_info', [room, ['user_count', 'subscription_count']]), {
    occupied: true,
    user_count: 2,
    subscription_count: 2,
  });
  assert.deepEqual(await py.call(app, 'channel_info', [uid('empty-')]), { occupied: false });
  const { users } = await py.call(app, 'users_info', [room]);
  assert.deepEqual(users.map((u) => u.id).sort(), ['ann', 'bob']);
  // A refusal comes back as the library's own exception for a 400.
  await assert.rejects(py.call(app, 'users_info', [secret]), { type: 'PusherBadRequest' });
});

test('authenticate_user signs a signin; send_to_user reaches it; terminate_user_connections closes it (4009)', T, async (t) => {
  const app = ctx.server.takeApp();
  const user = { id: uid('py-user-'), user_info: { plan: 'pro' } };
  const client = pythonAuthClient(t, app, { user });
  await connected(client);
  await signIn(client, user.id);
  const got = waitForEvent(client.pusher.user, 'note', { describe: client.describe });
  assert.deepEqual(await py.call(app, 'send_to_user', [user.id, 'note', { n: 1 }]), {});
  assert.deepEqual((await got).data, { n: 1 });

  // The terminated user on a raw socket (pusher-js refused with 4009 keeps a 30 s timer of
  // its WebSocket library alive), signed in with pusher-http-python's signature.
  const victim = { id: uid('py-victim-') };
  const raw = await ctx.rawSignedIn(t, app, (socketId) => py.call(app, 'authenticate_user', [socketId, victim]));

  // The library posts to /users/{id}/terminate_connections, without /apps/{id}.
  assert.deepEqual(await py.call(app, 'terminate_user_connections', [victim.id]), {});
  const { code } = await raw.closed;
  assert.equal(code, 4009, raw.describe());
  // The other user is untouched.
  const still = waitForEvent(client.pusher.user, 'still-here', { describe: client.describe });
  await py.call(app, 'send_to_user', [user.id, 'still-here', {}]);
  await still;
  assert.equal(client.pusher.connection.state, 'connected');
});

test('a wrong secret is refused with the library\'s auth error', T, async () => {
  const app = ctx.server.takeApp();
  const wrong = { ...app, secret: `${app.secret}x` };
  await assert.rejects(py.call(wrong, 'trigger', [uid('py-'), 'e', {}]), { type: 'PusherBadAuth' });
  await assert.rejects(py.call(wrong, 'terminate_user_connections', ['someone']), { type: 'PusherBadAuth' });
});
