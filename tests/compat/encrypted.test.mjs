// End-to-end encrypted channels: pusher-http-node with `encryptionMasterKeyBase64` encrypts and
// hands pusher-js the channel's shared secret; pusher-js (its built-in tweetnacl) decrypts. The
// server only ever sees {nonce, ciphertext} and passes it through untouched.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';

import { T, frameData, uid, useServer, waitForEvent } from './helpers.mjs';

const ctx = useServer();

function encryptingApi(app) {
  return ctx.api(app, { encryptionMasterKeyBase64: randomBytes(32).toString('base64') });
}

test('an encrypted event reaches pusher-js decrypted; the wire carries only nonce and ciphertext', T, async (t) => {
  const app = ctx.server.takeApp();
  const api = encryptingApi(app);
  const channelName = uid('private-encrypted-vault-');
  const client = ctx.client(t, app, { signer: api });
  const channel = await client.subscribe(channelName);

  // A raw subscriber (the signature only, no use of the shared secret) sees what the server
  // forwards.
  const raw = ctx.raw(t, app.key);
  const established = await raw.next('pusher:connection_established');
  const socketId = frameData(established).socket_id;
  const { auth } = api.authorizeChannel(socketId, channelName);
  raw.send({ event: 'pusher:subscribe', data: { channel: channelName, auth } });
  await raw.next('pusher_internal:subscription_succeeded');

  const got = waitForEvent(channel, 'secret', { describe: () => client.describe() });
  await api.trigger(channelName, 'secret', { pin: '1234' });
  assert.deepEqual((await got).data, { pin: '1234' });

  const onWire = await raw.next('secret');
  const payload = JSON.parse(onWire.data);
  assert.deepEqual(Object.keys(payload).sort(), ['ciphertext', 'nonce']);
  assert.equal(Buffer.from(payload.nonce, 'base64').length, 24);
  assert.equal(onWire.__raw.includes('1234'), false, 'no plaintext on the wire');
});

test('an encrypted cache channel replays its last (still encrypted) event to new subscribers', T, async (t) => {
  const app = ctx.server.takeApp();
  const api = encryptingApi(app);
  const channelName = uid('private-encrypted-cache-state-');
  await api.trigger(channelName, 'state', { level: 7 });
  const client = ctx.client(t, app, { signer: api });
  await client.connected();
  const channel = client.pusher.subscribe(channelName);
  const replayed = await waitForEvent(channel, 'state', { describe: () => client.describe() });
  assert.deepEqual(replayed.data, { level: 7 });
});
