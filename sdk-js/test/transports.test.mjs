import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';

import { Switchboard } from '../dist/index.mjs';
import { FakeEventSource, FakeWebSocket, fakeFetch, install, memoryStorage } from './fakes.mjs';

const established = (socketId) => ({ event: 'pusher:connection_established', data: JSON.stringify({ socket_id: socketId, activity_timeout: 120 }) });
const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('transport probing, memory and the HTTP carriers', () => {
  let client;
  let net;
  beforeEach(() => {
    install();
    FakeEventSource.instances = [];
    globalThis.EventSource = FakeEventSource;
    globalThis.localStorage = memoryStorage();
    net = fakeFetch();
    globalThis.fetch = net.fetch;
  });
  afterEach(() => {
    client?.disconnect();
    mock.timers.reset();
    delete globalThis.EventSource;
    delete globalThis.localStorage;
  });

  const connect = (options = {}) =>
    (client = new Switchboard('k', { host: 'edge.test', port: 8080, useTLS: false, ...options }));

  it('falls back from a failing WebSocket to SSE at once, and remembers it', () => {
    connect();
    FakeWebSocket.last().drop(1006);
    const source = FakeEventSource.last();
    assert.equal(source.url.split('?')[0], 'http://edge.test:8080/sb/app/k/sse');
    assert.deepEqual(source.params, { subs: '[]', ids: 'delta' });
    source.open();
    source.emit(established('5.1'), 'c1');
    assert.equal(client.connection.state, 'connected');
    assert.equal(client.connection.transport, 'sse');
    const [[key, value]] = globalThis.localStorage.map;
    assert.match(key, /^switchboard\.transport:/);
    assert.equal(JSON.parse(value).name, 'sse');
    client.disconnect();
    // The next client starts with what worked: no WebSocket attempt.
    connect();
    assert.equal(FakeWebSocket.instances.length, 1);
    assert.equal(FakeEventSource.instances.length, 2);
  });

  it('a WebSocket that never answers is given up after connectTimeout', () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    connect({ connectTimeout: 3000 });
    mock.timers.tick(2999);
    assert.equal(FakeEventSource.instances.length, 0);
    mock.timers.tick(1);
    assert.ok(FakeWebSocket.last().closedByClient);
    assert.equal(FakeEventSource.instances.length, 1);
  });

  it('without WebSocket and EventSource, long polling: the first poll is answered at once', async () => {
    delete globalThis.WebSocket;
    delete globalThis.EventSource;
    net = fakeFetch((request) =>
      request.url.includes('/poll')
        ? net.requests.length === 1
          ? { status: 200, body: { session: '7.1', cursor: 'c1', frames: [established('7.1')] } }
          : null
        : { status: 204 },
    );
    globalThis.fetch = net.fetch;
    connect();
    await settle();
    assert.equal(client.connection.transport, 'long_polling');
    const [first, second] = net.requests;
    assert.match(first.url, /\/sb\/app\/k\/poll\?subs=%5B%5D&wait=0$/);
    assert.match(second.url, /poll\?subs=%5B%5D&session=7\.1&cursor=c1&wait=25$/);
  });

  it('upstream frames are POSTed with session and cursor; the subscription rides on every reopen', async () => {
    delete globalThis.WebSocket;
    mock.timers.enable({ apis: ['setTimeout'] });
    connect();
    const source = FakeEventSource.last();
    source.open();
    source.emit(established('5.1'), 'c1');
    client.subscribe('news');
    await settle();
    const post = net.requests.find((r) => r.method === 'POST');
    assert.equal(post.url, 'http://edge.test:8080/sb/app/k/send?session=5.1&cursor=c1');
    assert.deepEqual(post.body, [{ event: 'pusher:subscribe', data: { channel: 'news' } }]);
    source.emit({ event: 'pusher_internal:subscription_succeeded', channel: 'news', data: '{"epoch":"e","serial":0}' }, 'c2');
    source.emit({ event: 'n', channel: 'news', data: '1', serial: 1, epoch: 'e' }, 'c3');

    // The stream breaks: reopened at once with session, subs and the last cursor; same session,
    // so nothing is subscribed again.
    source.fail();
    mock.timers.tick(0);
    const reopened = FakeEventSource.last();
    assert.notEqual(reopened, source);
    assert.deepEqual(reopened.params, { session: '5.1', cursor: 'c3', subs: JSON.stringify([{ channel: 'news' }]), ids: 'delta' });
    reopened.open();
    assert.equal(client.connection.state, 'connected');
    await settle();
    assert.equal(net.requests.filter((r) => r.method === 'POST').length, 1);
  });

  it('SSE short ids: the cursor is the last full one followed by the latest delta', async () => {
    delete globalThis.WebSocket;
    mock.timers.enable({ apis: ['setTimeout'] });
    connect();
    const source = FakeEventSource.last();
    source.open();
    source.emit(established('5.1'), 'F1');
    source.emit({ event: 'n', channel: 'news', data: '1', serial: 1, epoch: 'e' }, '~1.0.1');
    client.subscribe('news');
    await settle();
    const post = net.requests.find((r) => r.method === 'POST');
    assert.equal(post.url, 'http://edge.test:8080/sb/app/k/send?session=5.1&cursor=F1~1.0.1');
    // A new full cursor (with its own delta) replaces the base; later deltas follow it.
    source.emit({ event: 'n', channel: 'news', data: '2', serial: 2, epoch: 'e' }, 'F2~0');
    source.emit({ event: 'n', channel: 'news', data: '3', serial: 3, epoch: 'e' }, '~1.0.1');
    source.fail();
    mock.timers.tick(0);
    assert.equal(FakeEventSource.last().params.cursor, 'F2~1.0.1');
  });

  it('a 404 from send (session unknown to this edge) reopens the downstream', async () => {
    delete globalThis.WebSocket;
    net = fakeFetch(() => ({ status: 404 }));
    globalThis.fetch = net.fetch;
    connect({ channelAuthorization: { customHandler: (_p, cb) => cb(null, { auth: 'k:sig' }) } });
    const source = FakeEventSource.last();
    source.open();
    source.emit(established('5.1'), 'c1');
    client.subscribe('private-x');
    await settle();
    assert.ok(source.closed);
    const reopened = FakeEventSource.last();
    assert.notEqual(reopened, source);
    assert.deepEqual(JSON.parse(reopened.params.subs), [{ channel: 'private-x', auth: 'k:sig' }]);
  });

  it('a refusal on an HTTP carrier (pusher:error 4001) stops', () => {
    delete globalThis.WebSocket;
    connect();
    FakeEventSource.last().emit({ event: 'pusher:error', data: { code: 4001, message: 'unknown key' } });
    assert.equal(client.connection.state, 'disconnected');
    assert.equal(FakeEventSource.instances.length, 1);
  });
});
