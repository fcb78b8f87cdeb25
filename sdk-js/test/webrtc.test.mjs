// The WebRTC entry point's signalling without a browser: addressed client events, the ICE
// servers a presence subscription announces, and the signaller's rate limit and queue.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';

import { Switchboard } from '../dist/index.mjs';
import { Signaller } from '../dist/webrtc.mjs';
import { FakeWebSocket, install } from './fakes.mjs';

describe('webrtc signalling over a scripted WebSocket', () => {
  let client;
  beforeEach(() => {
    install();
    mock.timers.enable({ apis: ['setTimeout', 'Date'] });
  });
  afterEach(() => {
    client?.disconnect();
    mock.timers.reset();
  });

  async function joined() {
    client = new Switchboard('key1', {
      host: 'edge.test',
      port: 6001,
      useTLS: false,
      transports: ['ws'],
      rememberTransport: 0,
      channelAuthorization: { customHandler: (_p, cb) => cb(null, { auth: 'key1:sig', channel_data: JSON.stringify({ user_id: 'alice' }) }) },
    });
    const ws = FakeWebSocket.last();
    ws.accept('1.1');
    const channel = client.subscribe('presence-call');
    await Promise.resolve();
    const iceServers = [{ urls: ['stun:stun.example.com'] }, { urls: ['turn:turn.example.com'], username: '1:alice', credential: 'c' }];
    ws.deliver({
      event: 'pusher_internal:subscription_succeeded',
      channel: 'presence-call',
      data: JSON.stringify({ presence: { ids: ['alice', 'bob'], hash: { alice: {}, bob: {} }, count: 2 }, ice_servers: iceServers, epoch: 'e', serial: 0 }),
    });
    return { ws, channel, iceServers };
  }

  it('announced ICE servers are on the channel; triggerTo addresses one member', async () => {
    const { ws, channel, iceServers } = await joined();
    assert.deepEqual(channel.iceServers, iceServers);
    assert.ok(channel.triggerTo('bob', 'client-signal', { kind: 'bye' }));
    assert.deepEqual(ws.sent.at(-1), { event: 'client-signal', channel: 'presence-call', data: { kind: 'bye' }, to: 'bob' });
    assert.throws(() => channel.triggerTo('bob', 'signal', {}));
  });

  it('the signaller stays under its rate, merges waiting candidates, and sends what waited once resubscribed', async () => {
    const { ws, channel } = await joined();
    const signaller = new Signaller(channel, 'client-s', 2);
    const sent = () => ws.sent.filter((f) => f.event === 'client-s');
    signaller.send('bob', { kind: 'description', description: { type: 'offer', sdp: 'o' } });
    for (let i = 0; i < 5; i++) signaller.send('bob', { kind: 'candidates', candidates: [{ candidate: `c${i}` }] });
    assert.equal(sent().length, 2, 'two per second');
    mock.timers.tick(1000);
    assert.equal(sent().length, 3, 'the four waiting candidates went as one event');
    assert.deepEqual(sent()[2].data.candidates.map((c) => c.candidate), ['c1', 'c2', 'c3', 'c4']);

    // Cut: nothing can be sent; it waits and goes out after the resubscribe.
    ws.drop();
    mock.timers.tick(1000);
    signaller.send('bob', { kind: 'bye' });
    const next = FakeWebSocket.last();
    next.accept('2.2');
    await Promise.resolve();
    assert.equal(next.sent.filter((f) => f.event === 'client-s').length, 0);
    next.deliver({ event: 'pusher_internal:subscription_succeeded', channel: 'presence-call', data: JSON.stringify({ presence: { ids: ['alice'], hash: { alice: {} }, count: 1 } }) });
    assert.deepEqual(next.sent.filter((f) => f.event === 'client-s'), [{ event: 'client-s', channel: 'presence-call', data: { kind: 'bye' }, to: 'bob' }]);
  });
});
