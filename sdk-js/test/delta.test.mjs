// Delta updates in the SDK: applied and verified against the last event delivered, and any
// mismatch answered by a resubscribe from the last good serial, never a wrong event.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { createDelta } from 'fossil-delta';

import { Switchboard } from '../dist/index.mjs';
import { FakeWebSocket, install, stamped } from './fakes.mjs';

const encoder = new TextEncoder();
const ticker = (prices) => JSON.stringify({ prices });

/** The delta frame the edge sends for `data` against `baseData`. */
function deltaFrame(channel, event, baseData, data, base, serial, epoch = 'e1') {
  const delta = createDelta(encoder.encode(baseData), encoder.encode(data));
  const b64 = Buffer.from(delta).toString('base64');
  return { event: 'switchboard:delta', channel, serial, epoch, base, name: event, delta: b64 };
}

describe('delta updates over a scripted WebSocket', () => {
  let client;
  beforeEach(() => {
    install();
    mock.timers.enable({ apis: ['setTimeout'] });
  });
  afterEach(() => {
    client?.disconnect();
    mock.timers.reset();
  });

  it('asks for deltas, applies them to the last event, resubscribes on a missing base', () => {
    client = new Switchboard('key1', { host: 'edge.test', port: 6001, useTLS: false, transports: ['ws'], rememberTransport: 0 });
    const ws = FakeWebSocket.last();
    ws.accept('1.1');
    const channel = client.subscribe('ticker', { delta: 'fossil' });
    const plain = client.subscribe('news');
    assert.deepEqual(ws.subscribes(), [{ channel: 'ticker', delta: 'fossil' }, { channel: 'news' }]);
    const seen = [];
    channel.bind('tick', (data) => seen.push(data.prices));
    const global = [];
    client.bind_global((event, data) => event === 'tick' && global.push(data.prices[0]));
    ws.deliver({ event: 'pusher_internal:subscription_succeeded', channel: 'ticker', data: JSON.stringify({ epoch: 'e1', serial: 0 }) });

    const docs = [[1, 2, 3], [1, 2, 4], [5, 2, 4], [5, 6, 4], [7, 6, 4]].map(ticker);
    ws.deliver(stamped('ticker', 'tick', JSON.parse(docs[0]), 1));
    ws.deliver(deltaFrame('ticker', 'tick', docs[0], docs[1], 1, 2));
    ws.deliver(deltaFrame('ticker', 'tick', docs[1], docs[2], 2, 3));
    ws.deliver(deltaFrame('ticker', 'tick', docs[1], docs[2], 2, 3)); // a duplicate
    assert.deepEqual(seen, [[1, 2, 3], [1, 2, 4], [5, 2, 4]]);
    assert.deepEqual(global, [1, 1, 5], 'global bindings see the rebuilt event');
    assert.deepEqual(channel.position, { serial: 3, epoch: 'e1' });

    // Serial 4 never arrived: the delta for 5 names a base this client does not hold.
    const before = ws.subscribes().length;
    ws.deliver(deltaFrame('ticker', 'tick', docs[3], docs[4], 4, 5));
    assert.deepEqual(seen.length, 3, 'nothing is delivered from a missing base');
    assert.equal(channel.deltaMismatches, 1);
    assert.deepEqual(ws.subscribes().slice(before), [{ channel: 'ticker', resume: { serial: 3, epoch: 'e1' }, delta: 'fossil' }]);
    // Deltas in flight before the resubscribe is confirmed are dropped too.
    ws.deliver(deltaFrame('ticker', 'tick', docs[4], docs[4], 5, 6));
    ws.deliver({ event: 'pusher_internal:subscription_succeeded', channel: 'ticker', data: JSON.stringify({ epoch: 'e1', serial: 3 }) });
    ws.deliver(stamped('ticker', 'tick', JSON.parse(docs[3]), 4));
    ws.deliver(stamped('ticker', 'tick', JSON.parse(docs[4]), 5));
    ws.deliver(deltaFrame('ticker', 'tick', docs[4], docs[0], 5, 6));
    assert.deepEqual(seen.slice(3), [[5, 6, 4], [7, 6, 4], [1, 2, 3]]);
    assert.equal(channel.deltaMismatches, 1);
    assert.ok(plain);
  });

  it('a delta that does not check out against the base (a wrong base) is never delivered', () => {
    client = new Switchboard('key1', { host: 'edge.test', port: 6001, useTLS: false, transports: ['ws'], rememberTransport: 0 });
    const ws = FakeWebSocket.last();
    ws.accept('1.1');
    const channel = client.subscribe('ticker', { delta: 'fossil' });
    const seen = [];
    channel.bind('tick', (data) => seen.push(data.prices));
    ws.deliver({ event: 'pusher_internal:subscription_succeeded', channel: 'ticker', data: JSON.stringify({ epoch: 'e1', serial: 0 }) });
    const range = (from) => Array.from({ length: 50 }, (_, i) => from + i);
    ws.deliver(stamped('ticker', 'tick', { prices: range(100) }, 1));
    // Named base 1, but computed against other content (copies from it would give other
    // bytes): fossil's length and checksum catch it. (A delta made only of literals gives
    // its target whatever the base: right, not wrong.)
    const serverBase = ticker(range(500));
    const target = ticker([...range(500).slice(0, 49), 7]);
    ws.deliver(deltaFrame('ticker', 'tick', serverBase, target, 1, 2));
    // Another epoch's serial 1 is another base too.
    ws.deliver(deltaFrame('ticker', 'tick', ticker(range(100)), ticker(range(101)), 1, 2, 'e2'));
    assert.deepEqual(seen, [range(100)]);
    assert.equal(channel.deltaMismatches, 1, 'the second arrives while resyncing');
    const last = ws.subscribes().at(-1);
    assert.deepEqual(last, { channel: 'ticker', resume: { serial: 1, epoch: 'e1' }, delta: 'fossil' });
  });

  it('the HTTP carriers name the delta option in subs, so a rebuilt session asks again', () => {
    client = new Switchboard('key1', { host: 'edge.test', port: 6001, useTLS: false, transports: ['ws'], rememberTransport: 0 });
    FakeWebSocket.last().accept('1.1');
    const channel = client.subscribe('ticker', { delta: 'fossil' });
    assert.deepEqual(channel._params(), { channel: 'ticker', delta: 'fossil' });
  });
});
