// A scripted WebSocket for driving the SDK without a server: the test plays the server.
export class FakeWebSocket {
  static instances = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeWebSocket.instances.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close() {
    this.readyState = 3;
    this.closedByClient = true;
  }
  // Server side.
  accept(socketId = `1.${FakeWebSocket.instances.length}`) {
    this.readyState = 1;
    this.onopen?.({});
    this.deliver({ event: 'pusher:connection_established', data: JSON.stringify({ socket_id: socketId, activity_timeout: 120 }) });
  }
  deliver(frame) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  drop(code = 1006, reason = '') {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  subscribes() {
    return this.sent.filter((f) => f.event === 'pusher:subscribe').map((f) => f.data);
  }
  static last() {
    return FakeWebSocket.instances[FakeWebSocket.instances.length - 1];
  }
  static reset() {
    FakeWebSocket.instances = [];
  }
}

export function install() {
  globalThis.WebSocket = FakeWebSocket;
  FakeWebSocket.reset();
}

/** A channel event as the edge sends it, stamped. */
export function stamped(channel, event, data, serial, epoch = 'e1') {
  return { event, channel, data: JSON.stringify(data), serial, epoch };
}

// A scripted EventSource: `emit(frame, id)` plays a server event with `id:` = cursor.
export class FakeEventSource {
  static instances = [];
  constructor(url) {
    this.url = url;
    this.params = Object.fromEntries(new URL(url).searchParams);
    FakeEventSource.instances.push(this);
  }
  close() {
    this.closed = true;
  }
  open() {
    this.onopen?.({});
  }
  emit(frame, id) {
    this.onmessage?.({ data: JSON.stringify(frame), lastEventId: id });
  }
  fail() {
    this.onerror?.({});
  }
  static last() {
    return FakeEventSource.instances[FakeEventSource.instances.length - 1];
  }
}

/** A fake fetch: records requests, answers with `respond(request)` (default 204); an answer
 * of null is a request held forever (a long poll with nothing to say), until aborted. */
export function fakeFetch(respond = () => ({ status: 204 })) {
  const requests = [];
  const fetch = async (url, init = {}) => {
    const request = { url, method: init.method || 'GET', body: init.body && JSON.parse(init.body) };
    requests.push(request);
    const answer = respond(request);
    if (!answer) {
      return new Promise((_, reject) => init.signal?.addEventListener('abort', () => reject(new Error('aborted'))));
    }
    const { status, body } = answer;
    return { status, ok: status >= 200 && status < 300, json: async () => body };
  };
  return { fetch, requests };
}

/** An in-memory localStorage. */
export function memoryStorage() {
  const map = new Map();
  return {
    getItem: (k) => (map.has(k) ? map.get(k) : null),
    setItem: (k, v) => map.set(k, String(v)),
    removeItem: (k) => map.delete(k),
    map,
  };
}
