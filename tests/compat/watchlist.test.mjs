// Watchlist events with unmodified pusher-js: a user signed in with a `watchlist` hears, on
// `pusher.user.watchlist`, `online` when a watched user's first connection signs in and
// `offline` when their last one leaves, for users of its own app only.
//
// Ordering, not time, makes the negative checks sound: the server tells a user's watchers
// before it sends that user `signin_success`, and runs a closed connection's clean-up before
// answering its close, so an event that should not exist would arrive before the next one
// the test awaits.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { T, WAIT_MS, signIn, uid, useServer, waitForEvent, withTimeout } from './helpers.mjs';

const ctx = useServer();

/** A pusher-js client of `app` that signs in as `user` (its user_data may carry a watchlist). */
function signingInClient(t, app, user) {
  const api = ctx.api(app);
  const client = ctx.signingIn(t, app, { authenticateUser: (socketId) => api.authenticateUser(socketId, user) });
  // Every watchlist event pusher-js emits, in order, as {name, user_ids}.
  const watched = [];
  for (const name of ['online', 'offline']) {
    client.pusher.user.watchlist.bind(name, (event) => watched.push({ name: event.name, user_ids: event.user_ids }));
  }
  const describe = () => `watchlist events: ${JSON.stringify(watched)}\nframes: ${JSON.stringify(client.frames)}`;
  return { ...client, watched, describe };
}

/** Resolves once the client has received `count` watchlist events. */
async function watchlistEvents(client, count) {
  const reached = () => client.watched.length >= count;
  if (!reached()) {
    await waitForEvent(client.pusher.connection, 'message', {
      predicate: () => reached(),
      describe: client.describe,
    });
  }
  return client.watched.slice(0, count);
}

/** A raw socket of `app` signed in as `user` with pusher-http-node's signature. */
function rawSignedIn(t, app, user) {
  return ctx.rawSignedIn(t, app, (socketId) => ctx.api(app).authenticateUser(socketId, user));
}

/** Closes the raw socket with a close handshake; the server answers after its clean-up. */
async function closeAndWait(raw) {
  raw.ws.close(1000);
  await withTimeout(raw.closed, WAIT_MS, 'the server answers the close');
}

test('a watcher hears online on a first connection, offline after the last, and nothing from another app', T, async (t) => {
  const app = ctx.server.takeApp();
  const otherApp = ctx.server.takeApp();
  const [ann, bob, cat] = [uid('ann-'), uid('bob-'), uid('cat-')];

  const watcher = signingInClient(t, app, { id: ann, watchlist: [bob, cat] });
  await signIn(watcher);
  // The initial state right after signin: both watched users offline.
  assert.deepEqual(await watchlistEvents(watcher, 1), [{ name: 'offline', user_ids: [bob, cat] }], watcher.describe());

  // A user of another app with Bob's id signs in: Ann hears nothing of it...
  await signIn(signingInClient(t, otherApp, { id: bob }));
  // ...so the next thing she hears is Cat coming online.
  const catClient = signingInClient(t, app, { id: cat });
  await signIn(catClient);
  // Bob's first connection (a raw socket, so its close can be awaited) and his second.
  const bobLaptop = await rawSignedIn(t, app, { id: bob });
  const bobPhone = signingInClient(t, app, { id: bob });
  await signIn(bobPhone);
  // His first connection leaving is not news, so the next thing Ann hears is Cat leaving.
  await closeAndWait(bobLaptop);
  catClient.pusher.disconnect();
  await watchlistEvents(watcher, 4);
  // Bob's last connection leaving is news.
  bobPhone.pusher.disconnect();

  assert.deepEqual(
    await watchlistEvents(watcher, 5),
    [
      { name: 'offline', user_ids: [bob, cat] },
      { name: 'online', user_ids: [cat] },
      { name: 'online', user_ids: [bob] },
      { name: 'offline', user_ids: [cat] },
      { name: 'offline', user_ids: [bob] },
    ],
    watcher.describe(),
  );
});

test('a new watcher learns who is already online', T, async (t) => {
  const app = ctx.server.takeApp();
  const [dan, eve, fay] = [uid('dan-'), uid('eve-'), uid('fay-')];
  await signIn(signingInClient(t, app, { id: eve }));
  const watcher = signingInClient(t, app, { id: dan, watchlist: [eve, fay] });
  await signIn(watcher);
  assert.deepEqual(
    await watchlistEvents(watcher, 2),
    [
      { name: 'online', user_ids: [eve] },
      { name: 'offline', user_ids: [fay] },
    ],
    watcher.describe(),
  );
});

test('a watchlist over 100 ids is cut to the first 100 with error 4302', T, async (t) => {
  const app = ctx.server.takeApp();
  const ids = Array.from({ length: 101 }, (_, n) => `${uid('w-')}-${n}`);
  const watcher = signingInClient(t, app, { id: uid('gus-'), watchlist: ids });
  const error = waitForEvent(watcher.pusher.connection, 'message', {
    predicate: (frame) => frame.event === 'pusher:error',
    describe: watcher.describe,
  });
  await signIn(watcher);
  assert.equal((await error).data.data.code, 4302, watcher.describe());
  assert.deepEqual(await watchlistEvents(watcher, 1), [{ name: 'offline', user_ids: ids.slice(0, 100) }]);
  assert.equal(watcher.pusher.connection.state, 'connected');
});
