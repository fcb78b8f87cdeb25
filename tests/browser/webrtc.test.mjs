// The SDK's WebRTC helper (sdk-js/src/webrtc) in Chromium with its fake camera: two pages on
// one presence channel through a running `switchboard serve` call each other, signalling over
// client events addressed to one member; a third member on the channel sees none of it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { TEST_TIMEOUT_MS, WAIT_MS, launchBrowser, openPage, startPageServer, startServer, uid } from './helpers.mjs';

const MEDIA_FLAGS = ['--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream'];
const SIGNAL = 'client-webrtc-signal';

// Page init script: WebSockets the page opens are recorded (`__sockets`, each with `sent`). A
// socket marked `deaf` drops what it receives (a network cut loses frames in flight); one
// marked `held` keeps what it receives until `release()` hands it on, in order.
function tapWebSockets() {
  const Native = window.WebSocket;
  window.__sockets = [];
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.sent = [];
      this.heldFrames = [];
      window.__sockets.push(this);
      // Registered before the SDK's onmessage, so it can stop the event reaching it.
      this.addEventListener('message', (event) => {
        if (this.releasing) return;
        if (this.held) this.heldFrames.push(event.data);
        if (this.deaf || this.held) event.stopImmediatePropagation();
      });
    }
    send(text) {
      this.sent.push(JSON.parse(text));
      super.send(text);
    }
    release() {
      this.held = false;
      this.releasing = true;
      for (const data of this.heldFrames.splice(0)) this.dispatchEvent(new MessageEvent('message', { data }));
      this.releasing = false;
    }
  };
}

describe('WebRTC over a presence channel in Chromium', { timeout: TEST_TIMEOUT_MS * 4 }, () => {
  let server, pages, browser;
  before(async () => {
    server = await startServer();
    pages = await startPageServer(server);
    browser = await launchBrowser({ args: MEDIA_FLAGS });
  });
  after(async () => {
    await browser?.close();
    await pages?.stop();
    await server?.stop();
  });

  /** A page joined to `channel` as `user`; `answer`: it answers incoming calls at once. */
  async function member(channel, user, { answer = false } = {}) {
    const page = await openPage(browser, pages, { path: 'webrtc', init: tapWebSockets });
    await page.evaluate((args) => rtc.join(args), { key: server.app.key, port: server.port, user, channel, ms: WAIT_MS, answer });
    return page;
  }

  const waitForPeer = (page, peer) => page.evaluate(([p, ms]) => rtc.waitForPeer(p, ms), [peer, WAIT_MS]);
  const connected = (page, peer) => page.evaluate(([p, ms]) => rtc.connected(p, ms), [peer, WAIT_MS]);
  const say = (page, peer, text) => page.evaluate(([p, t]) => rtc.say(p, t), [peer, text]);
  const waitForMessage = (page, text) => page.evaluate(([t, ms]) => rtc.waitForMessage(t, ms), [text, WAIT_MS]);
  /** The signals a page's SDK sent, as (to, kind, description type). */
  const sentSignals = (page) =>
    page.evaluate((event) => window.__sockets.flatMap((s) => s.sent).filter((f) => f.event === event).map((f) => ({ to: f.to, kind: f.data.kind, type: f.data.description && f.data.description.type })), SIGNAL);

  /** The third member saw the API's `marker` (so it was listening all along) and no signal. */
  async function sawNoSignals(page, channel) {
    await server.api.trigger(channel, 'marker', {});
    await page.waitForFunction(() => rtc.received.some((r) => r.event === 'marker'), null, { timeout: WAIT_MS });
    const events = await page.evaluate(() => rtc.received.map((r) => r.event));
    assert.deepEqual(events.filter((e) => e.startsWith('client-')), [], `the third member saw ${events}`);
  }

  it('one page calls another: data both ways, the callee plays the caller\'s camera, a third member sees nothing', { timeout: TEST_TIMEOUT_MS }, async () => {
    const channel = uid('presence-call-');
    const alice = await member(channel, 'alice');
    const bob = await member(channel, 'bob', { answer: true });
    const carol = await member(channel, 'carol');
    try {
      await waitForPeer(alice, 'bob');
      assert.deepEqual((await alice.evaluate(() => rtc.webrtc.peers().map((m) => m.id))).sort(), ['bob', 'carol']);
      await alice.evaluate(() => rtc.call('bob'));
      const [aliceCalls, bobCalls] = await Promise.all([connected(alice, 'bob'), connected(bob, 'alice')]);
      assert.equal(aliceCalls.length, 1);
      assert.equal(bobCalls.length, 1);
      assert.deepEqual(await bob.evaluate(() => rtc.incoming), ['alice']);

      await say(alice, 'bob', 'hello bob');
      await waitForMessage(bob, 'hello bob');
      await say(bob, 'alice', 'hello alice');
      await waitForMessage(alice, 'hello alice');

      const video = await bob.evaluate((ms) => rtc.frames(ms), WAIT_MS);
      assert.ok(video.width > 0 && video.height > 0, `the remote video has a size: ${JSON.stringify(video)}`);
      assert.ok(video.presented.at(-1) > video.presented[0], `frames keep coming: ${video.presented}`);

      // Offers, answers and candidates went to one member each, never to everyone.
      const signals = [...(await sentSignals(alice)), ...(await sentSignals(bob))];
      assert.ok(signals.some((s) => s.type === 'offer') && signals.some((s) => s.type === 'answer'));
      assert.ok(signals.some((s) => s.kind === 'candidates'), 'ICE candidates trickled');
      assert.ok(signals.every((s) => s.to === 'alice' || s.to === 'bob'), JSON.stringify(signals));
      await sawNoSignals(carol, channel);

      await alice.evaluate(() => rtc.webrtc.callWith('bob').hangUp());
      await bob.waitForFunction(() => rtc.webrtc.calls().length === 0, null, { timeout: WAIT_MS });
      assert.deepEqual([...alice.errors, ...bob.errors, ...carol.errors], []);
    } finally {
      await Promise.all([alice.closeAll(), bob.closeAll(), carol.closeAll()]);
    }
  });

  it('glare: both call at once and exactly one connection results', { timeout: TEST_TIMEOUT_MS }, async () => {
    const channel = uid('presence-glare-');
    const alice = await member(channel, 'alice');
    const bob = await member(channel, 'bob');
    try {
      await waitForPeer(alice, 'bob');
      await waitForPeer(bob, 'alice');
      // Both hold what they receive until each has sent its own offer: the offers cross.
      for (const page of [alice, bob]) await page.evaluate(() => (window.__sockets.at(-1).held = true));
      await Promise.all([alice.evaluate(() => rtc.call('bob')), bob.evaluate(() => rtc.call('alice'))]);
      for (const [page, peer] of [[alice, 'bob'], [bob, 'alice']]) {
        await page.waitForFunction(([event, p]) => window.__sockets.at(-1).sent.some((f) => f.event === event && f.to === p && f.data.kind === 'description'), [SIGNAL, peer], { timeout: WAIT_MS });
      }
      for (const page of [alice, bob]) await page.evaluate(() => window.__sockets.at(-1).release());

      const [aliceCalls, bobCalls] = await Promise.all([connected(alice, 'bob'), connected(bob, 'alice')]);
      assert.equal(aliceCalls.length, 1, JSON.stringify(aliceCalls));
      assert.equal(bobCalls.length, 1, JSON.stringify(bobCalls));
      assert.notEqual(aliceCalls[0].polite, bobCalls[0].polite, 'one side yields');
      assert.deepEqual(await alice.evaluate(() => rtc.incoming), [], 'no second, incoming call');
      assert.deepEqual(await bob.evaluate(() => rtc.incoming), []);
      for (const page of [alice, bob]) {
        const offers = (await sentSignals(page)).filter((s) => s.type === 'offer');
        assert.ok(offers.length >= 1, 'both sides offered');
      }
      await say(alice, 'bob', 'after glare');
      await waitForMessage(bob, 'after glare');
      await say(bob, 'alice', 'after glare too');
      await waitForMessage(alice, 'after glare too');
      assert.deepEqual([...alice.errors, ...bob.errors], []);
    } finally {
      await Promise.all([alice.closeAll(), bob.closeAll()]);
    }
  });

  it('a renegotiation offer sent while the callee\'s carrier is cut arrives on resume; a third member sees none of it', { timeout: TEST_TIMEOUT_MS }, async () => {
    const channel = uid('presence-cut-');
    const alice = await member(channel, 'alice');
    const bob = await member(channel, 'bob', { answer: true });
    const carol = await member(channel, 'carol');
    try {
      await waitForPeer(alice, 'bob');
      await alice.evaluate(() => rtc.call('bob'));
      await Promise.all([connected(alice, 'bob'), connected(bob, 'alice')]);
      const socketBefore = await bob.evaluate(() => rtc.sb.connection.socket_id);

      // The cut: bob's frames are lost in transit while alice renegotiates (a new data channel).
      await bob.evaluate(() => (window.__sockets.at(-1).deaf = true));
      await alice.evaluate(() => {
        const extra = rtc.webrtc.callWith('bob').createDataChannel('extra');
        extra.onopen = () => extra.send('over the renegotiated channel');
      });
      await alice.waitForFunction((event) => window.__sockets.at(-1).sent.some((f) => f.event === event && f.data.kind === 'description' && f.data.description.type === 'offer' && f.data.description.sdp), SIGNAL, { timeout: WAIT_MS });
      // Sent while bob was cut: it reached the server, not bob. Then bob's socket breaks.
      const offersBefore = await alice.evaluate((event) => window.__sockets.at(-1).sent.filter((f) => f.event === event && f.data.kind === 'description').length, SIGNAL);
      await bob.evaluate((ms) => {
        const reconnected = new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('no reconnect')), ms);
          rtc.sb.connection.bind('connected', () => (clearTimeout(timer), resolve()));
        });
        window.__sockets.at(-1).close();
        return reconnected;
      }, WAIT_MS);
      assert.notEqual(await bob.evaluate(() => rtc.sb.connection.socket_id), socketBefore);
      await waitForMessage(bob, 'extra:over the renegotiated channel');
      const resubscribe = await bob.evaluate(() => window.__sockets.at(-1).sent.find((f) => f.event === 'pusher:subscribe'));
      assert.equal(typeof resubscribe.data.resume.serial, 'number', 'bob resumed from its last serial');
      const offersAfter = await alice.evaluate((event) => window.__sockets.at(-1).sent.filter((f) => f.event === event && f.data.kind === 'description').length, SIGNAL);
      assert.equal(offersAfter, offersBefore, 'the offer was not sent again: the resume replayed it');
      assert.equal((await connected(bob, 'alice')).length, 1, 'still the one call');
      await sawNoSignals(carol, channel);
      assert.deepEqual([...alice.errors, ...bob.errors, ...carol.errors], []);
    } finally {
      await Promise.all([alice.closeAll(), bob.closeAll(), carol.closeAll()]);
    }
  });
});
