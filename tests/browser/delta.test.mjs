// Delta updates in Chromium: the SDK subscribed with `{delta: 'fossil'}` gets deltas on every
// carrier and rebuilds every event exactly; a delta whose base it missed in transit, and a
// cut, end in full events (resubscribe / resume from the last good serial), never a wrong
// one; a plain Pusher-protocol subscriber on the same channel gets full events only.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { TEST_TIMEOUT_MS, WAIT_MS, connectPage, launchBrowser, openPage, startPageServer, startServer, uid } from './helpers.mjs';

// Page init script: every frame the page receives over a WebSocket, an EventSource or a poll
// is recorded in `__received`; `__dropDeltas = n` loses the next n delta frames in transit
// (WebSocket and EventSource), and a socket marked `deaf` loses everything, as a cut does.
function tapCarriers() {
  window.__received = [];
  window.__dropDeltas = 0;
  const lose = (event) => {
    window.__received.push(String(event.data));
    if (window.__dropDeltas > 0 && String(event.data).includes('"switchboard:delta"')) {
      window.__dropDeltas--;
      event.stopImmediatePropagation();
    }
  };
  if (window.WebSocket) {
    const Native = window.WebSocket;
    window.__sockets = [];
    window.WebSocket = class extends Native {
      constructor(...args) {
        super(...args);
        window.__sockets.push(this);
        this.addEventListener('message', (event) => (this.deaf ? event.stopImmediatePropagation() : lose(event)));
      }
    };
  }
  if (window.EventSource) {
    const Native = window.EventSource;
    window.EventSource = class extends Native {
      constructor(...args) {
        super(...args);
        this.addEventListener('message', lose);
      }
    };
  }
  const nativeFetch = window.fetch;
  window.fetch = async (...args) => {
    const response = await nativeFetch(...args);
    if (String(args[0]).includes('/poll')) {
      response.clone().json().then(
        (body) => (body.frames || []).forEach((frame) => window.__received.push(JSON.stringify(frame))),
        () => {},
      );
    }
    return response;
  };
}

/** A ticker document: 50 prices (about 2 KiB of JSON), `changed` of them moved. */
function ticker(n) {
  const prices = Array.from({ length: 50 }, (_, i) => ({
    symbol: `SYM${String(i).padStart(2, '0')}`,
    bid: +(100 + i + (i % 7 === n % 7 ? n / 100 : 0)).toFixed(2),
    ask: +(100.5 + i + (i % 11 === n % 11 ? n / 100 : 0)).toFixed(2),
    volume: 1000 * i + (i === n % 50 ? n : 0),
  }));
  return { n, prices };
}

/** Subscribes the page with deltas and records every `tick` it is given. */
async function subscribeWithDeltas(page, channel) {
  await page.evaluate(
    ([c, ms]) => {
      harness.ticks = [];
      const ch = harness.sb.subscribe(c, { delta: 'fossil' });
      ch.bind('tick', (d) => harness.ticks.push(d));
      return harness.waitFor(ch, 'pusher:subscription_succeeded', ms);
    },
    [channel, WAIT_MS],
  );
}

async function publish(server, channel, from, to) {
  for (let n = from; n <= to; n++) await server.api.trigger(channel, 'tick', ticker(n));
}

async function ticksSeen(page, count) {
  await page.waitForFunction((n) => harness.ticks.length >= n, count, { timeout: WAIT_MS });
  return page.evaluate(() => harness.ticks);
}

const deltasReceived = (page) => page.evaluate(() => window.__received.filter((f) => f.includes('"switchboard:delta"')).length);

describe('delta updates in Chromium', { timeout: TEST_TIMEOUT_MS * 6 }, () => {
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

  it('WebSocket: deltas rebuild every event; a lost base and a cut end in full events, never a wrong one', { timeout: TEST_TIMEOUT_MS }, async () => {
    const page = await openPage(browser, pages, { init: tapCarriers });
    try {
      assert.equal(await connectPage(page, server), 'ws');
      const channel = uid('ticker-');
      // A plain subscriber on the same channel (what pusher-js sends: no delta option).
      await page.evaluate(
        ([url, c]) =>
          new Promise((resolve) => {
            window.__plain = [];
            const ws = new WebSocket(url);
            ws.deaf = false;
            ws.onmessage = (e) => {
              const frame = JSON.parse(e.data);
              if (frame.event === 'pusher:connection_established') ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel: c } }));
              else if (frame.event === 'pusher_internal:subscription_succeeded') resolve();
              else if (frame.channel === c) window.__plain.push(frame);
            };
          }),
        [`ws://127.0.0.1:${server.port}/app/${server.app.key}?protocol=7&client=js&version=8.6.0`, channel],
      );
      await subscribeWithDeltas(page, channel);
      await publish(server, channel, 1, 10);
      assert.deepEqual(await ticksSeen(page, 10), Array.from({ length: 10 }, (_, i) => ticker(i + 1)));
      assert.ok((await deltasReceived(page)) >= 8, 'every event after the first came as a delta');

      // The next delta is lost in transit: the one after names a base the client lacks.
      await page.evaluate(() => (window.__dropDeltas = 1));
      await publish(server, channel, 11, 14);
      const afterLoss = await ticksSeen(page, 14);
      assert.deepEqual(afterLoss, Array.from({ length: 14 }, (_, i) => ticker(i + 1)), 'the lost event came back in full, in order');
      assert.ok((await page.evaluate((c) => harness.sb.channel(c).deltaMismatches, channel)) >= 1);

      // A cut: frames lost while the socket is deaf, then it breaks; the SDK resumes.
      await page.evaluate(() => (window.__sockets[0].deaf = true));
      await publish(server, channel, 15, 18);
      await page.evaluate((ms) => {
        const reconnected = harness.waitFor(harness.sb.connection, 'connected', ms);
        window.__sockets[0].close();
        return reconnected;
      }, WAIT_MS);
      await publish(server, channel, 19, 22);
      assert.deepEqual(await ticksSeen(page, 22), Array.from({ length: 22 }, (_, i) => ticker(i + 1)), 'no event lost, none twice, none wrong');

      const plain = await page.evaluate(() => window.__plain);
      assert.deepEqual(plain.map((f) => f.event), Array(22).fill('tick'), 'the plain subscriber never gets a delta');
      assert.deepEqual(plain.map((f) => JSON.parse(f.data)), Array.from({ length: 22 }, (_, i) => ticker(i + 1)));
      assert.deepEqual(page.errors, []);
    } finally {
      await page.closeAll();
    }
  });

  for (const { expected, without, drops } of [
    { expected: 'sse', without: ['WebSocket'], drops: true },
    { expected: 'long_polling', without: ['WebSocket', 'EventSource'], drops: false },
  ]) {
    it(`${expected}: deltas rebuild every event${drops ? ', a lost base ends in full events' : ''}`, { timeout: TEST_TIMEOUT_MS }, async () => {
      const page = await openPage(browser, pages, { without, init: tapCarriers });
      try {
        assert.equal(await connectPage(page, server), expected);
        const channel = uid('ticker-');
        await subscribeWithDeltas(page, channel);
        await publish(server, channel, 1, 6);
        assert.deepEqual(await ticksSeen(page, 6), Array.from({ length: 6 }, (_, i) => ticker(i + 1)));
        await page.waitForFunction(() => window.__received.filter((f) => f.includes('"switchboard:delta"')).length >= 5, null, { timeout: WAIT_MS });
        if (drops) {
          await page.evaluate(() => (window.__dropDeltas = 1));
          await publish(server, channel, 7, 10);
          assert.deepEqual(await ticksSeen(page, 10), Array.from({ length: 10 }, (_, i) => ticker(i + 1)));
          assert.ok((await page.evaluate((c) => harness.sb.channel(c).deltaMismatches, channel)) >= 1);
        } else {
          assert.equal(await page.evaluate((c) => harness.sb.channel(c).deltaMismatches, channel), 0);
        }
        assert.deepEqual(page.errors, []);
      } finally {
        await page.closeAll();
      }
    });
  }
});
