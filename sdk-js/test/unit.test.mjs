import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';

import { Switchboard, PositionTracker, backoffDelay, closeAction } from '../dist/index.mjs';
import { FakeWebSocket, install, stamped } from './fakes.mjs';

describe('backoff', () => {
  it('grows exponentially, jittered between half and all of the ceiling, capped', () => {
    const options = { baseMs: 1000, maxMs: 30000 };
    for (let attempt = 0; attempt < 12; attempt++) {
      const ceiling = Math.min(30000, 1000 * 2 ** attempt);
      assert.equal(backoffDelay(attempt, options, () => 0), ceiling / 2);
      assert.equal(backoffDelay(attempt, options, () => 1), ceiling);
      const d = backoffDelay(attempt, options);
      assert.ok(d >= ceiling / 2 && d <= ceiling, `attempt ${attempt}: ${d}`);
    }
    assert.equal(backoffDelay(1000, options, () => 1), 30000);
  });

  it('spreads clients: the same attempt gives different delays', () => {
    const delays = new Set(Array.from({ length: 50 }, () => backoffDelay(4)));
    assert.ok(delays.size > 10);
  });
});

describe('close codes', () => {
  it('follow Pusher ranges', () => {
    assert.equal(closeAction(4000), 'stop');
    assert.equal(closeAction(4001), 'stop');
    assert.equal(closeAction(4099), 'stop');
    assert.equal(closeAction(4100), 'backoff');
    assert.equal(closeAction(4199), 'backoff');
    assert.equal(closeAction(4200), 'reconnect_now');
    assert.equal(closeAction(4299), 'reconnect_now');
    assert.equal(closeAction(1006), 'reconnect');
    assert.equal(closeAction(1000), 'reconnect');
    assert.equal(closeAction(undefined), 'reconnect');
  });
});

describe('position tracking', () => {
  it('drops serials at or below the last seen, in the same epoch', () => {
    const t = new PositionTracker();
    assert.equal(t.resume(), undefined);
    assert.ok(t.accept(1, 'a'));
    assert.ok(t.accept(2, 'a'));
    assert.ok(!t.accept(2, 'a'));
    assert.ok(!t.accept(1, 'a'));
    assert.ok(t.accept(5, 'a'));
    assert.deepEqual(t.resume(), { serial: 5, epoch: 'a' });
  });

  it('starts over in a new epoch; unstamped frames always pass', () => {
    const t = new PositionTracker();
    t.accept(9, 'a');
    assert.ok(t.accept(1, 'b'));
    assert.deepEqual(t.current, { serial: 1, epoch: 'b' });
    assert.ok(t.accept(undefined, undefined));
    assert.deepEqual(t.current, { serial: 1, epoch: 'b' });
  });

  it('subscription_succeeded sets the position but never moves it back in the same epoch', () => {
    const t = new PositionTracker();
    t.subscribed(10, 'a');
    assert.deepEqual(t.current, { serial: 10, epoch: 'a' });
    assert.ok(!t.accept(10, 'a'));
    t.accept(12, 'a');
    t.subscribed(11, 'a');
    assert.deepEqual(t.current, { serial: 12, epoch: 'a' });
    t.subscribed(3, 'b');
    assert.deepEqual(t.current, { serial: 3, epoch: 'b' });
  });
});

describe('client over a scripted WebSocket', () => {
  let client;
  beforeEach(() => {
    install();
    mock.timers.enable({ apis: ['setTimeout'] });
  });
  afterEach(() => {
    client?.disconnect();
    mock.timers.reset();
  });

  const connect = (options = {}) => {
    client = new Switchboard('key1', { host: 'edge.test', port: 6001, useTLS: false, transports: ['ws'], rememberTransport: 0, ...options });
    // The constructor already started connecting: record that state, then every change.
    const states = [client.connection.state];
    client.connection.bind('state_change', ({ current }) => states.push(current));
    return states;
  };

  it('connects, subscribes, delivers typed events once, resumes after a drop', () => {
    const states = connect();
    const ws = FakeWebSocket.last();
    assert.equal(ws.url, 'ws://edge.test:6001/app/key1?protocol=7&client=switchboard-js&version=0.1.0');
    ws.accept('1.1');
    assert.equal(client.connection.state, 'connected');
    assert.equal(client.connection.socket_id, '1.1');
    assert.equal(client.connection.transport, 'ws');

    const channel = client.subscribe('news');
    assert.deepEqual(ws.subscribes(), [{ channel: 'news' }]);
    const seen = [];
    channel.bind('n', (data) => seen.push(data.i));
    const failures = [];
    channel.bind('switchboard:resume_failed', (data) => failures.push(data));
    ws.deliver({ event: 'pusher_internal:subscription_succeeded', channel: 'news', data: JSON.stringify({ epoch: 'e1', serial: 4 }) });
    assert.ok(channel.subscribed);
    ws.deliver(stamped('news', 'n', { i: 4 }, 4)); // at the announced position: already past
    ws.deliver(stamped('news', 'n', { i: 5 }, 5));
    ws.deliver(stamped('news', 'n', { i: 6 }, 6));
    ws.deliver(stamped('news', 'n', { i: 6 }, 6)); // duplicate
    assert.deepEqual(seen, [5, 6]);

    ws.drop(1006);
    assert.equal(client.connection.state, 'connecting');
    // The first retry after a connection that worked is immediate.
    mock.timers.tick(0);
    const ws2 = FakeWebSocket.last();
    assert.notEqual(ws2, ws);
    ws2.accept('1.2');
    assert.deepEqual(ws2.subscribes(), [{ channel: 'news', resume: { serial: 6, epoch: 'e1' } }]);
    ws2.deliver({ event: 'pusher_internal:subscription_succeeded', channel: 'news', data: JSON.stringify({ epoch: 'e1', serial: 6 }) });
    ws2.deliver(stamped('news', 'n', { i: 5 }, 5));
    ws2.deliver(stamped('news', 'n', { i: 7 }, 7));
    ws2.deliver({ event: 'switchboard:resume_failed', channel: 'news', data: JSON.stringify({ epoch: 'e1', oldest_available: 3, reason: 'outside_window' }) });
    assert.deepEqual(seen, [5, 6, 7]);
    assert.deepEqual(failures, [{ epoch: 'e1', oldest_available: 3, reason: 'outside_window' }]);
    assert.deepEqual(states, ['connecting', 'connected', 'connecting', 'connected']);
  });

  it('4000-4099: disconnected, no reconnect, an error event', () => {
    const states = connect();
    const errors = [];
    client.connection.bind('error', (e) => errors.push(e));
    FakeWebSocket.last().accept();
    FakeWebSocket.last().drop(4001, 'unknown app');
    mock.timers.tick(120000);
    assert.equal(FakeWebSocket.instances.length, 1);
    assert.equal(client.connection.state, 'disconnected');
    assert.deepEqual(states, ['connecting', 'connected', 'disconnected']);
    assert.equal(errors[0].data.code, 4001);
  });

  it('a pusher:error 4004 before connecting stops too', () => {
    connect();
    const ws = FakeWebSocket.last();
    ws.deliver({ event: 'pusher:error', data: { code: 4004, message: 'over quota' } });
    mock.timers.tick(120000);
    assert.equal(FakeWebSocket.instances.length, 1);
    assert.equal(client.connection.state, 'disconnected');
  });

  it('4200-4299: reconnects at once; 4100-4199: backs off first', () => {
    connect({ backoff: { baseMs: 1000, maxMs: 1000 } });
    FakeWebSocket.last().accept();
    FakeWebSocket.last().drop(4200);
    mock.timers.tick(0);
    assert.equal(FakeWebSocket.instances.length, 2);
    FakeWebSocket.last().accept();
    FakeWebSocket.last().drop(4100);
    mock.timers.tick(499);
    assert.equal(FakeWebSocket.instances.length, 2, 'no reconnect before half the backoff');
    mock.timers.tick(501);
    assert.equal(FakeWebSocket.instances.length, 3);
  });

  it('repeated failures back off exponentially and end up unavailable', () => {
    const states = connect({ backoff: { baseMs: 100, maxMs: 10000 } });
    FakeWebSocket.last().drop(1006); // the only transport failed to connect
    assert.equal(client.connection.state, 'unavailable');
    let total = 0;
    for (let attempt = 0; attempt < 5; attempt++) {
      const before = FakeWebSocket.instances.length;
      const ceiling = 100 * 2 ** attempt;
      mock.timers.tick(ceiling / 2 - 1);
      assert.equal(FakeWebSocket.instances.length, before, `attempt ${attempt} too early`);
      mock.timers.tick(ceiling / 2 + 1);
      assert.equal(FakeWebSocket.instances.length, before + 1, `attempt ${attempt} not made`);
      total++;
      FakeWebSocket.last().drop(1006);
    }
    assert.equal(total, 5);
    mock.timers.tick(10000);
    FakeWebSocket.last().accept();
    assert.equal(client.connection.state, 'connected');
    assert.deepEqual(states, ['connecting', 'unavailable', 'connected']);
  });

  it('pings on silence and reconnects when no pong comes', () => {
    connect({ activityTimeout: 1000, pongTimeout: 500 });
    const ws = FakeWebSocket.last();
    ws.accept();
    mock.timers.tick(1000);
    assert.deepEqual(ws.sent.at(-1), { event: 'pusher:ping', data: {} });
    mock.timers.tick(500);
    assert.ok(ws.closedByClient);
    mock.timers.tick(0);
    assert.equal(FakeWebSocket.instances.length, 2);
  });

  it('answers the server ping', () => {
    connect();
    const ws = FakeWebSocket.last();
    ws.accept();
    ws.deliver({ event: 'pusher:ping', data: '{}' });
    assert.deepEqual(ws.sent.at(-1), { event: 'pusher:pong', data: {} });
  });

  it('presence members, member events, client events with auth from a custom handler', async () => {
    const authed = [];
    connect({
      channelAuthorization: {
        customHandler: ({ socketId, channelName }, cb) => {
          authed.push([socketId, channelName]);
          cb(null, { auth: 'key1:sig', channel_data: JSON.stringify({ user_id: 'u1', user_info: { n: 1 } }) });
        },
      },
    });
    const ws = FakeWebSocket.last();
    ws.accept('9.9');
    const channel = client.subscribe('presence-room');
    await Promise.resolve();
    assert.deepEqual(authed, [['9.9', 'presence-room']]);
    assert.deepEqual(ws.subscribes(), [
      { channel: 'presence-room', auth: 'key1:sig', channel_data: JSON.stringify({ user_id: 'u1', user_info: { n: 1 } }) },
    ]);
    const events = [];
    channel.bind('pusher:subscription_succeeded', (members) => events.push(['ok', members.count, members.me]));
    channel.bind('pusher:member_added', (m) => events.push(['added', m.id]));
    channel.bind('pusher:member_removed', (m) => events.push(['removed', m.id]));
    ws.deliver({
      event: 'pusher_internal:subscription_succeeded',
      channel: 'presence-room',
      data: JSON.stringify({ presence: { ids: ['u1', 'u2'], hash: { u1: { n: 1 }, u2: { n: 2 } }, count: 2 }, epoch: 'e', serial: 0 }),
    });
    ws.deliver({ event: 'pusher_internal:member_added', channel: 'presence-room', data: JSON.stringify({ user_id: 'u3', user_info: {} }) });
    ws.deliver({ event: 'pusher_internal:member_removed', channel: 'presence-room', data: JSON.stringify({ user_id: 'u2' }) });
    assert.deepEqual(events, [['ok', 2, { id: 'u1', info: { n: 1 } }], ['added', 'u3'], ['removed', 'u2']]);
    const ids = [];
    channel.members.each((m) => ids.push(m.id));
    assert.deepEqual(ids.sort(), ['u1', 'u3']);
    assert.equal(channel.members.get('u3').id, 'u3');
    assert.ok(channel.trigger('client-hi', { x: 1 }));
    assert.deepEqual(ws.sent.at(-1), { event: 'client-hi', channel: 'presence-room', data: { x: 1 } });
    assert.throws(() => channel.trigger('hi', {}));
    const meta = [];
    channel.bind('client-hi', (data, m) => meta.push(m.user_id));
    ws.deliver({ event: 'client-hi', channel: 'presence-room', data: '{}', user_id: 'u3', serial: 1, epoch: 'e' });
    assert.deepEqual(meta, ['u3']);
  });

  it('a failed authorization is a subscription_error', async () => {
    connect({ channelAuthorization: { customHandler: (_p, cb) => cb(new Error('nope'), null) } });
    FakeWebSocket.last().accept();
    const channel = client.subscribe('private-x');
    const errors = [];
    channel.bind('pusher:subscription_error', (e) => errors.push(e));
    await new Promise((r) => setImmediate(r));
    assert.equal(errors[0].type, 'AuthError');
    assert.equal(FakeWebSocket.last().subscribes().length, 0);
  });

  it('disconnect() stops for good and unsubscribe sends pusher:unsubscribe', () => {
    connect();
    const ws = FakeWebSocket.last();
    ws.accept();
    client.subscribe('a');
    client.unsubscribe('a');
    assert.deepEqual(ws.sent.at(-1), { event: 'pusher:unsubscribe', data: { channel: 'a' } });
    client.disconnect();
    assert.ok(ws.closedByClient);
    mock.timers.tick(60000);
    assert.equal(FakeWebSocket.instances.length, 1);
    assert.equal(client.connection.state, 'disconnected');
  });
});

describe('options', () => {
  it("maps pusher-js's enabledTransports and host options", () => {
    install();
    const client = new Switchboard('k', { wsHost: 'h.test', wsPort: 7000, forceTLS: false, enabledTransports: ['ws'], autoConnect: false, rememberTransport: 0 });
    client.connect();
    assert.equal(FakeWebSocket.last().url.split('?')[0], 'ws://h.test:7000/app/k');
    FakeWebSocket.last().drop(1006);
    // ws was the only transport enabled: nothing else is tried.
    assert.equal(client.connection.state, 'unavailable');
    client.disconnect();
    const tls = new Switchboard('k', { host: 'h.test', autoConnect: false });
    tls.connect();
    assert.equal(FakeWebSocket.last().url.split('?')[0], 'wss://h.test:443/app/k');
    tls.disconnect();
  });
});
