// HTTP API through pusher-http-node: channel queries, trigger info, request signing.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { T, uid, useServer, jsonBody, expectRequestError } from './helpers.mjs';

const ctx = useServer();

const sortUsers = (body) => ({ ...body, users: [...body.users].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)) });

/**
 * Occupy, on a fresh app: presence-a (alice twice + bob), presence-b (carol), public-x (2 conns).
 */
async function populate(t, app) {
  const names = {
    presenceA: uid('presence-a-'),
    presenceB: uid('presence-b-'),
    publicX: uid('public-x-'),
  };
  const alice1 = ctx.client(t, app, { userId: 'alice', userInfo: { n: 1 } });
  const alice2 = ctx.client(t, app, { userId: 'alice', userInfo: { n: 1 } });
  const bob = ctx.client(t, app, { userId: 'bob', userInfo: { n: 2 } });
  const carol = ctx.client(t, app, { userId: 'carol', userInfo: { n: 3 } });
  await Promise.all([
    alice1.subscribe(names.presenceA),
    alice2.subscribe(names.presenceA),
    bob.subscribe(names.presenceA),
    carol.subscribe(names.presenceB),
    alice1.subscribe(names.publicX),
    bob.subscribe(names.publicX),
  ]);
  return names;
}

test('GET /channels lists occupied channels, with filter_by_prefix and info=user_count', T, async (t) => {
  const app = ctx.server.takeApp();
  const api = ctx.api(app);
  const n = await populate(t, app);

  let res = await api.get({ path: '/channels', params: { filter_by_prefix: 'presence-', info: 'user_count' } });
  assert.equal(res.status, 200);
  assert.deepEqual(await jsonBody(res), {
    channels: { [n.presenceA]: { user_count: 2 }, [n.presenceB]: { user_count: 1 } },
  });

  res = await api.get({ path: '/channels' });
  assert.deepEqual(await jsonBody(res), {
    channels: { [n.presenceA]: {}, [n.presenceB]: {}, [n.publicX]: {} },
  });

  res = await api.get({ path: '/channels', params: { filter_by_prefix: 'public-' } });
  assert.deepEqual(await jsonBody(res), { channels: { [n.publicX]: {} } });
});

test('GET /channels/{name} with info=subscription_count / user_count', T, async (t) => {
  const app = ctx.server.takeApp();
  const api = ctx.api(app);
  const n = await populate(t, app);

  let res = await api.get({ path: `/channels/${n.publicX}`, params: { info: 'subscription_count' } });
  assert.deepEqual(await jsonBody(res), { occupied: true, subscription_count: 2 });

  res = await api.get({ path: `/channels/${n.presenceA}`, params: { info: 'user_count' } });
  assert.deepEqual(await jsonBody(res), { occupied: true, user_count: 2 });

  res = await api.get({ path: `/channels/${n.presenceB}`, params: { info: 'user_count' } });
  assert.deepEqual(await jsonBody(res), { occupied: true, user_count: 1 });

  res = await api.get({ path: `/channels/${n.publicX}` });
  assert.deepEqual(await jsonBody(res), { occupied: true });

  res = await api.get({ path: `/channels/${uid('nobody-here-')}` });
  assert.deepEqual(await jsonBody(res), { occupied: false });
});

test('GET /channels/{name}/users lists distinct user ids', T, async (t) => {
  const app = ctx.server.takeApp();
  const api = ctx.api(app);
  const n = await populate(t, app);

  let res = await api.get({ path: `/channels/${n.presenceA}/users` });
  assert.deepEqual(sortUsers(await jsonBody(res)), { users: [{ id: 'alice' }, { id: 'bob' }] });

  res = await api.get({ path: `/channels/${n.presenceB}/users` });
  assert.deepEqual(await jsonBody(res), { users: [{ id: 'carol' }] });
});

test('channel queries reject attributes that do not apply (400)', T, async (t) => {
  const app = ctx.server.takeApp();
  const api = ctx.api(app);
  const n = await populate(t, app);

  // info=user_count requires filter_by_prefix=presence-.
  let err = await expectRequestError(api.get({ path: '/channels', params: { info: 'user_count' } }));
  assert.equal(err.status, 400, `GET /channels?info=user_count: ${err.body}`);
  // /users is presence-only.
  err = await expectRequestError(api.get({ path: `/channels/${n.publicX}/users` }));
  assert.equal(err.status, 400, `GET /channels/public/users: ${err.body}`);
  // user_count on a non-presence channel.
  err = await expectRequestError(api.get({ path: `/channels/${n.publicX}`, params: { info: 'user_count' } }));
  assert.equal(err.status, 400, `GET /channels/public?info=user_count: ${err.body}`);
});

test('trigger with info returns subscription_count / user_count', T, async (t) => {
  const app = ctx.server.takeApp();
  const api = ctx.api(app);
  const n = await populate(t, app);

  let res = await api.trigger(n.publicX, 'counted', { x: 1 }, { info: 'subscription_count' });
  assert.equal(res.status, 200);
  assert.deepEqual(await jsonBody(res), { channels: { [n.publicX]: { subscription_count: 2 } } });

  res = await api.trigger(n.presenceA, 'counted', { x: 1 }, { info: 'user_count' });
  assert.deepEqual(await jsonBody(res), { channels: { [n.presenceA]: { user_count: 2 } } });

  // docs §8.2: presence channels report both; subscription_count counts connections (3).
  res = await api.trigger(n.presenceA, 'counted', { x: 1 }, { info: 'user_count,subscription_count' });
  assert.deepEqual(await jsonBody(res), {
    channels: { [n.presenceA]: { user_count: 2, subscription_count: 3 } },
  });

  res = await api.trigger([n.publicX, n.presenceB], 'counted', { x: 1 }, { info: 'subscription_count' });
  assert.deepEqual(await jsonBody(res), {
    channels: { [n.publicX]: { subscription_count: 2 }, [n.presenceB]: { subscription_count: 1 } },
  });
});

test('triggerBatch with info returns per-event attributes', T, async (t) => {
  const app = ctx.server.takeApp();
  const api = ctx.api(app);
  const n = await populate(t, app);

  const res = await api.triggerBatch([
    { channel: n.publicX, name: 'b1', data: {}, info: 'subscription_count' },
    { channel: n.presenceA, name: 'b2', data: {}, info: 'user_count' },
  ]);
  assert.equal(res.status, 200);
  assert.deepEqual(await jsonBody(res), {
    batch: [{ subscription_count: 2 }, { user_count: 2 }],
  });
});

test('a server client with the wrong secret gets HTTP 401', T, async (t) => {
  const app = ctx.server.takeApp();
  const bad = ctx.api(app, { secret: `${app.secret}x` });
  let err = await expectRequestError(bad.trigger(uid('any-'), 'ev', { x: 1 }));
  assert.equal(err.status, 401, `trigger with wrong secret: status ${err.status}, body ${err.body}`);

  err = await expectRequestError(bad.get({ path: '/channels' }));
  assert.equal(err.status, 401, `GET /channels with wrong secret: status ${err.status}, body ${err.body}`);

  // The same request with the right secret works (so the 401 was about the signature).
  const good = ctx.api(app);
  const res = await good.trigger(uid('any-'), 'ev', { x: 1 });
  assert.equal(res.status, 200);
});

test('a server client with an unknown key gets HTTP 401', T, async (t) => {
  const app = ctx.server.takeApp();
  const bad = ctx.api(app, { key: 'ffffffffffffffffffff' });
  const err = await expectRequestError(bad.trigger(uid('any-'), 'ev', { x: 1 }));
  assert.equal(err.status, 401, `status ${err.status}, body ${err.body}`);
});

test('trigger with a tampered body (body_md5 mismatch) gets 401', T, async (t) => {
  const app = ctx.server.takeApp();
  const api = ctx.api(app);
  const path = `/apps/${app.id}/events`;
  const signedBody = JSON.stringify({ name: 'ev', channels: ['c'], data: '{}' });
  const sentBody = JSON.stringify({ name: 'ev', channels: ['c'], data: '{"evil":1}' });
  const query = api.createSignedQueryString({ method: 'POST', path, body: signedBody });
  const res = await fetch(`${ctx.server.baseUrl}${path}?${query}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: sentBody,
  });
  await res.arrayBuffer();
  assert.equal(res.status, 401);
});
