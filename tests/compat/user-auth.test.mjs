// User authentication: pusher-js `signin()` signed by pusher-http-node's `authenticateUser`,
// server-to-user events (`sendToUser` → `pusher.user.bind`), presence identity from the
// signed-in user, and `terminateUserConnections`.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { T, frameData, signIn, uid, useServer, waitForEvent } from './helpers.mjs';

const ctx = useServer();

/** A pusher-js client that signs in as `user` through the app's own pusher-http-node. */
function signingInClient(t, app, user, api = ctx.api(app)) {
  return ctx.signingIn(t, app, {
    authenticateUser: (socketId) => api.authenticateUser(socketId, user),
    // No presence data: the server takes the member from the signed-in user.
    authorizeChannel: (socketId, channelName) => api.authorizeChannel(socketId, channelName),
  });
}

/** Resolves once the server confirmed the signin and the user's own channel. */
async function signedIn(client, userId) {
  await signIn(client, userId);
  const success = client.frames.find((f) => f.event === 'pusher:signin_success');
  assert.ok(success, client.describe());
  assert.deepEqual(client.pusher.user.user_data.id, userId);
}

test('signin, then sendToUser reaches every connection of that user and no one else', T, async (t) => {
  const app = ctx.server.takeApp();
  const api = ctx.api(app);
  const ann = { id: uid('ann-'), user_info: { name: 'Ann' } };
  const annLaptop = signingInClient(t, app, ann);
  const annPhone = signingInClient(t, app, ann);
  const bobUser = { id: uid('bob-') };
  const bob = signingInClient(t, app, bobUser);
  await Promise.all([signedIn(annLaptop, ann.id), signedIn(annPhone, ann.id), signedIn(bob, bobUser.id)]);

  const onLaptop = waitForEvent(annLaptop.pusher.user, 'reminder', { describe: annLaptop.describe });
  const onPhone = waitForEvent(annPhone.pusher.user, 'reminder', { describe: annPhone.describe });
  let bobGot = false;
  bob.pusher.user.bind('reminder', () => (bobGot = true));
  await api.sendToUser(ann.id, 'reminder', { text: 'stand up' });
  assert.deepEqual((await onLaptop).data, { text: 'stand up' });
  assert.deepEqual((await onPhone).data, { text: 'stand up' });
  assert.equal(bobGot, false);
});

test('a signin signed with the wrong secret is refused and the connection stays up', T, async (t) => {
  const app = ctx.server.takeApp();
  const wrong = ctx.api({ ...app, secret: `${app.secret}x` });
  const client = signingInClient(t, app, { id: 'mallory' }, wrong);
  const refused = waitForEvent(client.pusher.connection, 'message', {
    predicate: (frame) => frame.event === 'pusher:error',
    describe: client.describe,
  });
  client.pusher.signin();
  await refused;
  assert.equal(client.frames.some((f) => f.event === 'pusher:signin_success'), false);
  assert.equal(client.pusher.connection.state, 'connected');
  // And it cannot listen to that user's channel.
  const raw = ctx.raw(t, app.key);
  await raw.next('pusher:connection_established');
  raw.send({ event: 'pusher:subscribe', data: { channel: '#server-to-user-mallory', auth: '' } });
  const error = await raw.next('pusher:subscription_error');
  assert.equal(error.channel, '#server-to-user-mallory');
});

test('presence membership comes from the signed-in user when channel_data is absent', T, async (t) => {
  const app = ctx.server.takeApp();
  const carol = { id: uid('carol-'), user_info: { team: 'blue' } };
  const client = signingInClient(t, app, carol);
  await signedIn(client, carol.id);
  const channel = client.pusher.subscribe(uid('presence-team-'));
  await waitForEvent(channel, 'pusher:subscription_succeeded', { describe: client.describe });
  assert.deepEqual(channel.members.me, { id: carol.id, info: { team: 'blue' } });
  assert.equal(channel.members.count, 1);
});

test('terminateUserConnections closes that user\'s connections (4009) and spares others', T, async (t) => {
  const app = ctx.server.takeApp();
  const api = ctx.api(app);
  const dave = { id: uid('dave-') };
  const eve = { id: uid('eve-') };
  // Dave on a raw socket (pusher-js, refused with 4009, would keep a 30 s close timer of its
  // WebSocket library alive past the test), signed in with pusher-http-node's signature.
  const raw = await ctx.rawSignedIn(t, app, (socketId) => api.authenticateUser(socketId, dave));
  const success = await raw.next('pusher:signin_success');
  assert.deepEqual(JSON.parse(frameData(success).user_data), dave);
  const eveClient = signingInClient(t, app, eve);
  await signedIn(eveClient, eve.id);

  const res = await api.terminateUserConnections(dave.id);
  assert.equal(res.status, 200);
  const { code } = await raw.closed;
  assert.equal(code, 4009, raw.describe());
  assert.equal(raw.frames.find((f) => f.event === 'pusher:error')?.data?.code, 4009, raw.describe());
  // Eve is untouched and still gets her events.
  assert.equal(eveClient.pusher.connection.state, 'connected');
  const got = waitForEvent(eveClient.pusher.user, 'still-here', { describe: eveClient.describe });
  await api.sendToUser(eve.id, 'still-here', {});
  await got;
});
