// The edge's HTTP carriers that our SDK does not pick by itself, each driven by hand in
// Chromium from a page on another origin than the edge: the forever frame (a hidden iframe
// whose scripts postMessage each frame to the page) and HTTP streaming (fetch() with a
// ReadableStream reader over ndjson lines: CORS and incremental delivery). Each subscribes to
// a public channel and receives an event published through the HTTP API.
//
// Nothing sleeps to synchronise: every wait is on a page condition, bounded by WAIT_MS.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { TEST_TIMEOUT_MS, WAIT_MS, launchBrowser, openPage, startPageServer, startServer, uid } from './helpers.mjs';

/** Waits (bounded) until the page's `window.__frames` holds a frame with `event`; returns it. */
async function frameWith(page, event, what) {
  try {
    await page.waitForFunction((e) => window.__frames.some((item) => item.frame.event === e), event, { timeout: WAIT_MS });
  } catch (error) {
    const seen = await page.evaluate(() => ({ frames: window.__frames.map((item) => item.frame.event), failure: window.__failure }));
    throw new Error(`timed out after ${WAIT_MS} ms waiting for ${what} (${event}); seen ${JSON.stringify(seen)}: ${error.message}`);
  }
  return page.evaluate((e) => window.__frames.find((item) => item.frame.event === e), event);
}

describe('the edge carriers in Chromium, from a page on another origin', { timeout: TEST_TIMEOUT_MS * 3 }, () => {
  let server, pages, browser, edge;
  before(async () => {
    server = await startServer();
    pages = await startPageServer(server);
    browser = await launchBrowser();
    edge = `http://127.0.0.1:${server.port}`;
  });
  after(async () => {
    await browser?.close();
    await pages?.stop();
    await server?.stop();
  });

  it('the forever frame delivers by postMessage to the page', { timeout: TEST_TIMEOUT_MS }, async () => {
    const page = await openPage(browser, pages);
    try {
      const channel = uid('room-');
      const pageOrigin = await page.evaluate(() => location.origin);
      assert.notEqual(pageOrigin, edge, 'the page must be on another origin than the edge');
      await page.evaluate(
        ({ edge, key, channel }) => {
          window.__frames = [];
          window.__strays = [];
          window.addEventListener('message', (event) => {
            const data = event.data;
            if (event.origin !== edge || !data || data.type !== 'switchboard' || data.callback !== 'sb') {
              window.__strays.push({ origin: event.origin, data });
              return;
            }
            window.__frames.push({ cursor: data.cursor, frame: data.frame });
          });
          const query = new URLSearchParams({ subs: JSON.stringify([{ channel }]), origin: location.origin, callback: 'sb' });
          const iframe = document.createElement('iframe');
          iframe.style.display = 'none';
          iframe.src = `${edge}/sb/app/${key}/iframe?${query}`;
          document.body.appendChild(iframe);
        },
        { edge, key: server.app.key, channel },
      );

      const established = await frameWith(page, 'pusher:connection_established', 'the session to open');
      assert.match(JSON.parse(established.frame.data).socket_id, /^\d+\.\d+$/);
      const subscribed = await frameWith(page, 'pusher_internal:subscription_succeeded', 'the subscription');
      assert.equal(subscribed.frame.channel, channel);

      await server.api.trigger(channel, 'hello', { via: 'iframe' });
      const hello = await frameWith(page, 'hello', 'the published event');
      assert.equal(hello.frame.channel, channel);
      assert.deepEqual(JSON.parse(hello.frame.data), { via: 'iframe' });
      assert.equal(typeof hello.cursor, 'string');
      assert.ok(hello.cursor.length > 0, 'each frame comes with its cursor');
      assert.deepEqual(await page.evaluate(() => window.__strays), []);
      assert.deepEqual(page.errors, []);
    } finally {
      await page.closeAll();
    }
  });

  it('HTTP streaming delivers ndjson lines to fetch() incrementally', { timeout: TEST_TIMEOUT_MS }, async () => {
    const page = await openPage(browser, pages);
    try {
      const channel = uid('room-');
      const opened = await page.evaluate(
        async ({ edge, key, channel, ms }) => {
          window.__frames = [];
          window.__done = false;
          window.__failure = null;
          window.__abort = new AbortController();
          const query = new URLSearchParams({ subs: JSON.stringify([{ channel }]) });
          const timer = setTimeout(() => window.__abort.abort(), ms);
          const response = await fetch(`${edge}/sb/app/${key}/stream?${query}`, { signal: window.__abort.signal });
          clearTimeout(timer);
          const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
          (async () => {
            let buffer = '';
            for (;;) {
              const { value, done } = await reader.read();
              if (done) break;
              buffer += value;
              let end;
              while ((end = buffer.indexOf('\n')) >= 0) {
                const line = buffer.slice(0, end);
                buffer = buffer.slice(end + 1);
                if (line.trim() === '') continue; // heartbeat
                const item = JSON.parse(line);
                window.__frames.push({ cursor: item.cursor, frame: item.frame });
              }
            }
            window.__done = true;
          })().catch((error) => {
            window.__failure = String(error);
          });
          return { status: response.status, contentType: response.headers.get('content-type') };
        },
        { edge, key: server.app.key, channel, ms: WAIT_MS },
      );
      assert.equal(opened.status, 200);
      assert.match(opened.contentType, /^application\/x-ndjson/);

      const established = await frameWith(page, 'pusher:connection_established', 'the session to open');
      assert.match(JSON.parse(established.frame.data).socket_id, /^\d+\.\d+$/);
      const subscribed = await frameWith(page, 'pusher_internal:subscription_succeeded', 'the subscription');
      assert.equal(subscribed.frame.channel, channel);

      await server.api.trigger(channel, 'hello', { via: 'stream' });
      const hello = await frameWith(page, 'hello', 'the published event');
      assert.equal(hello.frame.channel, channel);
      assert.deepEqual(JSON.parse(hello.frame.data), { via: 'stream' });
      assert.ok(typeof hello.cursor === 'string' && hello.cursor.length > 0, 'each frame comes with its cursor');
      // Delivered while the response is still open: incremental, not at its end.
      assert.deepEqual(await page.evaluate(() => ({ done: window.__done, failure: window.__failure })), { done: false, failure: null });
      await page.evaluate(() => window.__abort.abort());
      assert.deepEqual(page.errors, []);
    } finally {
      await page.closeAll();
    }
  });
});
