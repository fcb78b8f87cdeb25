// The SDK's HTTP carriers in Chromium, from a page on another origin than the edge: with
// WebSocket removed from the page it falls back to Server-Sent Events; with EventSource
// removed too, to long polling; polling when asked for. Each carrier subscribes to a private
// channel, receives API events, and sends and receives client events (upstream POSTs).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { TEST_TIMEOUT_MS, WAIT_MS, connectPage, launchBrowser, openPage, startPageServer, startServer, uid } from './helpers.mjs';

const CARRIERS = [
  { expected: 'sse', without: ['WebSocket'] },
  { expected: 'long_polling', without: ['WebSocket', 'EventSource'] },
  { expected: 'polling', without: ['WebSocket', 'EventSource'], options: { transports: ['polling'], pollingInterval: 200 } },
];

describe('sdk over the HTTP carriers in Chromium', { timeout: TEST_TIMEOUT_MS * 6 }, () => {
  let server, pages, browser;
  before(async () => {
    server = await startServer();
    pages = await startPageServer(server);
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await pages?.stop();
    await server?.stop();
  });

  for (const { expected, without, options } of CARRIERS) {
    it(`without ${without.join(' and ')}: ${expected} carries events both ways`, { timeout: TEST_TIMEOUT_MS }, async () => {
      const page = await openPage(browser, pages, { without });
      const peer = await openPage(browser, pages);
      try {
        assert.equal(await connectPage(page, server, { user: 'http', options }), expected);
        assert.equal(await connectPage(peer, server, { user: 'ws' }), 'ws');
        const channel = uid('private-room-');
        const succeeded = await page.evaluate(([c, ms]) => harness.subscribe(c, ms), [channel, WAIT_MS]);
        assert.equal(typeof succeeded.serial, 'number');
        await peer.evaluate(([c, ms]) => harness.subscribe(c, ms), [channel, WAIT_MS]);

        // Downstream: API events, in order.
        await page.evaluate((c) => {
          harness.seen = [];
          harness.sb.channel(c).bind('n', (d) => harness.seen.push(d.i));
        }, channel);
        for (let i = 1; i <= 5; i++) await server.api.trigger(channel, 'n', { i });
        await page.waitForFunction(() => harness.seen.length >= 5, null, { timeout: WAIT_MS });
        assert.deepEqual(await page.evaluate(() => harness.seen), [1, 2, 3, 4, 5]);

        // Upstream: a client event POSTed by this page reaches the WebSocket peer…
        await peer.evaluate(([c, ms]) => harness.expect('up', c, 'client-up', ms), [channel, WAIT_MS]);
        assert.equal(await page.evaluate((c) => harness.sb.channel(c).trigger('client-up', { from: 'http' }), channel), true);
        assert.deepEqual((await peer.evaluate(() => harness.take('up'))).data, { from: 'http' });
        // …and one from the peer reaches this page.
        await page.evaluate(([c, ms]) => harness.expect('down', c, 'client-down', ms), [channel, WAIT_MS]);
        await peer.evaluate((c) => harness.sb.channel(c).trigger('client-down', { from: 'ws' }), channel);
        assert.deepEqual((await page.evaluate(() => harness.take('down'))).data, { from: 'ws' });

        const remembered = await page.evaluate(() => Object.values(localStorage).map((v) => JSON.parse(v).name));
        assert.deepEqual(remembered, [expected]);
        assert.deepEqual(page.errors, []);
      } finally {
        await page.closeAll();
        await peer.closeAll();
      }
    });
  }

  it('SSE: after the stream breaks it reopens with the cursor and misses nothing', { timeout: TEST_TIMEOUT_MS }, async () => {
    const page = await openPage(browser, pages, { without: ['WebSocket'], init: tapEventSources });
    try {
      assert.equal(await connectPage(page, server), 'sse');
      const channel = uid('feed-');
      await page.evaluate(([c, ms]) => harness.subscribe(c, ms), [channel, WAIT_MS]);
      await page.evaluate((c) => {
        harness.seen = [];
        harness.sb.channel(c).bind('n', (d) => harness.seen.push(d.i));
      }, channel);
      for (let i = 1; i <= 3; i++) await server.api.trigger(channel, 'n', { i });
      await page.waitForFunction(() => harness.seen.includes(3), null, { timeout: WAIT_MS });
      await page.evaluate(() => {
        window.__sources.at(-1).deaf = true;
      });
      for (let i = 4; i <= 8; i++) await server.api.trigger(channel, 'n', { i });
      // The stream breaks: the SDK sees an error on it and reopens a new one.
      await page.evaluate(() => {
        const source = window.__sources.at(-1);
        source.close();
        source.dispatchEvent(new Event('error'));
      });
      await page.waitForFunction(() => window.__sources.length === 2, null, { timeout: WAIT_MS });
      for (let i = 9; i <= 10; i++) await server.api.trigger(channel, 'n', { i });
      await page.waitForFunction(() => harness.seen.includes(10), null, { timeout: WAIT_MS });
      assert.deepEqual(await page.evaluate(() => harness.seen), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      // The reopened stream names the session, its subscriptions and the cursor before the loss.
      const [first, reopened] = await page.evaluate(() => window.__sources.map((s) => Object.fromEntries(new URL(s.url).searchParams)));
      assert.equal(first.session, undefined);
      assert.equal(reopened.session, await page.evaluate(() => harness.sb.connection.socket_id));
      assert.equal(JSON.parse(reopened.subs)[0].channel, channel);
      assert.ok(reopened.cursor);
      assert.equal(await page.evaluate(() => harness.sb.connection.state), 'connected');
    } finally {
      await page.closeAll();
    }
  });

  it('long polling: a poll answer lost on the way is fetched again from the cursor', { timeout: TEST_TIMEOUT_MS }, async () => {
    const page = await openPage(browser, pages, { without: ['WebSocket', 'EventSource'], init: tapPolls });
    try {
      assert.equal(await connectPage(page, server), 'long_polling');
      const channel = uid('feed-');
      await page.evaluate(([c, ms]) => harness.subscribe(c, ms), [channel, WAIT_MS]);
      await page.evaluate((c) => {
        harness.seen = [];
        harness.sb.channel(c).bind('n', (d) => harness.seen.push(d.i));
      }, channel);
      for (let i = 1; i <= 3; i++) await server.api.trigger(channel, 'n', { i });
      await page.waitForFunction(() => harness.seen.includes(3), null, { timeout: WAIT_MS });
      await page.evaluate(() => {
        window.__dropPolls = 1;
      });
      for (let i = 4; i <= 8; i++) await server.api.trigger(channel, 'n', { i });
      await page.waitForFunction(() => window.__dropped === 1, null, { timeout: WAIT_MS });
      for (let i = 9; i <= 10; i++) await server.api.trigger(channel, 'n', { i });
      await page.waitForFunction(() => harness.seen.includes(10), null, { timeout: WAIT_MS });
      assert.deepEqual(await page.evaluate(() => harness.seen), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      assert.equal(await page.evaluate(() => harness.sb.connection.transport), 'long_polling');
    } finally {
      await page.closeAll();
    }
  });
});

// Page init script: EventSources the page opens are recorded (`__sources`); one marked `deaf`
// drops its messages, as frames lost in flight when a stream breaks. The deaf stream's last
// cursor is the one before the loss, so what follows must come back from the reopened one.
function tapEventSources() {
  const Native = window.EventSource;
  window.__sources = [];
  window.EventSource = class extends Native {
    constructor(...args) {
      super(...args);
      window.__sources.push(this);
      this.addEventListener('message', (event) => this.deaf && event.stopImmediatePropagation());
    }
  };
}

// Page init script: while `__dropPolls` is above zero, a poll's answer is received from the
// edge and then lost (the page sees a network error), as when a connection breaks mid-answer.
function tapPolls() {
  const native = window.fetch.bind(window);
  window.__dropped = 0;
  window.fetch = async (url, init) => {
    const response = await native(url, init);
    if (String(url).includes('/poll?') && window.__dropPolls > 0) {
      const body = await response.json();
      if (body.frames.length) {
        window.__dropPolls--;
        window.__dropped++;
        throw new TypeError('Failed to fetch');
      }
      return new Response(JSON.stringify(body), { status: response.status, headers: response.headers });
    }
    return response;
  };
}
