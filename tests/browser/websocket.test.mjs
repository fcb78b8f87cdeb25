// The SDK in Chromium over WebSocket, from a page on another origin than the edge.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { TEST_TIMEOUT_MS, WAIT_MS, connectPage, launchBrowser, openPage, startPageServer, startServer, uid } from './helpers.mjs';

// Page init script: WebSockets the page opens are recorded (`__sockets`, each with `sent`), and
// one marked `deaf` drops what it receives, as a network cut loses frames in flight.
function tapWebSockets() {
  const Native = window.WebSocket;
  window.__sockets = [];
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.sent = [];
      window.__sockets.push(this);
      // Registered before the SDK's onmessage, so it can stop the event reaching it.
      this.addEventListener('message', (event) => this.deaf && event.stopImmediatePropagation());
    }
    send(text) {
      this.sent.push(JSON.parse(text));
      super.send(text);
    }
  };
}

describe('sdk over WebSocket in Chromium', { timeout: TEST_TIMEOUT_MS * 6 }, () => {
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

  it('connects over WebSocket, subscribes and receives an API event', { timeout: TEST_TIMEOUT_MS }, async () => {
    const page = await openPage(browser, pages);
    try {
      assert.equal(await connectPage(page, server), 'ws');
      const channel = uid('news-');
      const succeeded = await page.evaluate(([c, ms]) => harness.subscribe(c, ms), [channel, WAIT_MS]);
      assert.equal(typeof succeeded.serial, 'number');
      await page.evaluate(([c, ms]) => harness.expect('e', c, 'greet', ms), [channel, WAIT_MS]);
      await server.api.trigger(channel, 'greet', { hello: 'world' });
      const { data } = await page.evaluate(() => harness.take('e'));
      assert.deepEqual(data, { hello: 'world' });
      const remembered = await page.evaluate(() => Object.entries(localStorage).map(([, v]) => JSON.parse(v).name));
      assert.deepEqual(remembered, ['ws']);
      assert.deepEqual(page.errors, []);
    } finally {
      await page.closeAll();
    }
  });

  it('presence: members, member_added and member_removed across two pages', { timeout: TEST_TIMEOUT_MS }, async () => {
    const alice = await openPage(browser, pages);
    const bob = await openPage(browser, pages);
    try {
      const channel = uid('presence-room-');
      await connectPage(alice, server, { user: 'alice' });
      await connectPage(bob, server, { user: 'bob' });
      const first = await alice.evaluate(([c, ms]) => harness.subscribe(c, ms), [channel, WAIT_MS]);
      assert.deepEqual(first, { count: 1, me: { id: 'alice', info: { name: 'alice' } }, ids: ['alice'] });
      await alice.evaluate(([c, ms]) => {
        harness.expect('added', c, 'pusher:member_added', ms);
        harness.expect('removed', c, 'pusher:member_removed', ms);
      }, [channel, WAIT_MS]);
      const second = await bob.evaluate(([c, ms]) => harness.subscribe(c, ms), [channel, WAIT_MS]);
      assert.deepEqual(second, { count: 2, me: { id: 'bob', info: { name: 'bob' } }, ids: ['alice', 'bob'] });
      assert.deepEqual((await alice.evaluate(() => harness.take('added'))).data, { id: 'bob', info: { name: 'bob' } });
      const members = await alice.evaluate((c) => {
        const m = harness.sb.channel(c).members;
        const ids = [];
        m.each((member) => ids.push(member.id));
        return { count: m.count, ids: ids.sort(), bob: m.get('bob') };
      }, channel);
      assert.deepEqual(members, { count: 2, ids: ['alice', 'bob'], bob: { id: 'bob', info: { name: 'bob' } } });
      await bob.evaluate(() => harness.sb.disconnect());
      assert.deepEqual((await alice.evaluate(() => harness.take('removed'))).data, { id: 'bob', info: { name: 'bob' } });
      assert.equal(await alice.evaluate((c) => harness.sb.channel(c).members.count, channel), 1);
    } finally {
      await alice.closeAll();
      await bob.closeAll();
    }
  });

  it('a client event from one page reaches the other, with the sender on presence', { timeout: TEST_TIMEOUT_MS }, async () => {
    const alice = await openPage(browser, pages);
    const bob = await openPage(browser, pages);
    try {
      const channel = uid('presence-chat-');
      await connectPage(alice, server, { user: 'alice' });
      await connectPage(bob, server, { user: 'bob' });
      await alice.evaluate(([c, ms]) => harness.subscribe(c, ms), [channel, WAIT_MS]);
      await bob.evaluate(([c, ms]) => harness.subscribe(c, ms), [channel, WAIT_MS]);
      await bob.evaluate(([c, ms]) => harness.expect('typing', c, 'client-typing', ms), [channel, WAIT_MS]);
      assert.equal(await alice.evaluate((c) => harness.sb.channel(c).trigger('client-typing', { who: 'alice' }), channel), true);
      const { data, metadata } = await bob.evaluate(() => harness.take('typing'));
      assert.deepEqual(data, { who: 'alice' });
      assert.deepEqual(metadata, { user_id: 'alice' });
    } finally {
      await alice.closeAll();
      await bob.closeAll();
    }
  });

  it('after a cut it reconnects and resumes: no event lost, none twice', { timeout: TEST_TIMEOUT_MS }, async () => {
    const page = await openPage(browser, pages, { init: tapWebSockets });
    try {
      await connectPage(page, server);
      const channel = uid('feed-');
      await page.evaluate(([c, ms]) => harness.subscribe(c, ms), [channel, WAIT_MS]);
      await page.evaluate((c) => {
        harness.seen = [];
        harness.sb.channel(c).bind('n', (d) => harness.seen.push(d.i));
      }, channel);
      for (let i = 1; i <= 3; i++) await server.api.trigger(channel, 'n', { i });
      await page.waitForFunction(() => harness.seen.includes(3), null, { timeout: WAIT_MS });
      const socketBefore = await page.evaluate(() => harness.sb.connection.socket_id);
      // The cut: from now on this socket's frames are lost in transit, then it breaks.
      await page.evaluate(() => {
        window.__sockets.at(-1).deaf = true;
      });
      for (let i = 4; i <= 8; i++) await server.api.trigger(channel, 'n', { i });
      await page.evaluate((ms) => {
        const reconnected = harness.waitFor(harness.sb.connection, 'connected', ms);
        window.__sockets.at(-1).close();
        return reconnected;
      }, WAIT_MS);
      for (let i = 9; i <= 10; i++) await server.api.trigger(channel, 'n', { i });
      await page.waitForFunction(() => harness.seen.includes(10), null, { timeout: WAIT_MS });
      assert.deepEqual(await page.evaluate(() => harness.seen), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      assert.notEqual(await page.evaluate(() => harness.sb.connection.socket_id), socketBefore);
      const resubscribe = await page.evaluate(() => window.__sockets.at(-1).sent.find((f) => f.event === 'pusher:subscribe'));
      assert.equal(resubscribe.data.resume.serial, 3);
      assert.equal(typeof resubscribe.data.resume.epoch, 'string');
    } finally {
      await page.closeAll();
    }
  });

  it('an edge restart: 4200, reconnect, and resume_failed (new epoch) as a channel event', { timeout: TEST_TIMEOUT_MS }, async () => {
    // A server of its own, restarted on the same port: its history (and epoch) starts anew.
    let edge = await startServer();
    const page = await openPage(browser, pages);
    try {
      // WebSocket only: while the edge is down every probe fails, and which fallback answered
      // first after the restart would depend on how long the restart took. What this test is
      // about is the resume, not the probing (fallback.test.mjs covers that).
      const options = { backoff: { baseMs: 100, maxMs: 500 }, transports: ['ws'] };
      await connectPage(page, edge, { options });
      const channel = uid('feed-');
      await page.evaluate(([c, ms]) => harness.subscribe(c, ms), [channel, WAIT_MS]);
      await page.evaluate((c) => {
        harness.seen = [];
        harness.failures = [];
        const ch = harness.sb.channel(c);
        ch.bind('n', (d) => harness.seen.push(d.i));
        ch.bind('switchboard:resume_failed', (f) => harness.failures.push(f));
      }, channel);
      for (let i = 1; i <= 2; i++) await edge.api.trigger(channel, 'n', { i });
      await page.waitForFunction(() => harness.seen.includes(2), null, { timeout: WAIT_MS });
      const before = await page.evaluate((c) => harness.sb.channel(c).position, channel);
      assert.equal(before.serial, 2);
      await page.evaluate((ms) => {
        harness.dropped = harness.waitFor(harness.sb.connection, 'state_change', ms, (s) => s.previous === 'connected');
      }, WAIT_MS);
      await edge.stop(); // SIGTERM: every connection is closed with 4200
      await page.evaluate(() => harness.dropped);
      edge = await startServer({ port: edge.port, app: edge.app });
      // Bounded from the moment the edge is back, however long its start took.
      await page.waitForFunction(() => harness.sb.connection.state === 'connected', null, { timeout: WAIT_MS });
      await page.waitForFunction(() => harness.failures.length === 1, null, { timeout: WAIT_MS });
      const [failure] = await page.evaluate(() => harness.failures);
      assert.equal(failure.reason, 'epoch_changed');
      assert.notEqual(failure.epoch, before.epoch);
      // Live again, in the new epoch (its serial 1 is not mistaken for a duplicate).
      await edge.api.trigger(channel, 'n', { i: 3 });
      await page.waitForFunction(() => harness.seen.includes(3), null, { timeout: WAIT_MS });
      assert.deepEqual(await page.evaluate(() => harness.seen), [1, 2, 3]);
      assert.equal(await page.evaluate(() => harness.sb.connection.transport), 'ws');
    } finally {
      await page.closeAll();
      await edge.stop();
    }
  });

});
