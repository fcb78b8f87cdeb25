// Webhooks, configured through the control plane (/v1) and checked with pusher-http-node's own
// webhook helper: `pusher.webhook({headers, rawBody}).isValid()`. Also the opt-in
// subscription_count events. Needs Postgres (see platform.mjs).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { RawSocket, T, freePort, uid, waitForEvent } from './helpers.mjs';
import { WebhookReceiver, usePlatform } from './platform.mjs';

const ctx = usePlatform();
const receiver = new WebhookReceiver();
before(() => receiver.start());
after(() => receiver.stop());

// channel_vacated and member_removed wait ~3 s for the channel or member to come back.
const LEAVE_WAIT_MS = 12000;
const SLOW = { timeout: 40000 };

/** An app with one webhook (all events unless `eventTypes`) posting to its own path. */
async function appWithWebhook(eventTypes = []) {
  const app = await ctx.newApp();
  const path = `/hooks/${app.id}`;
  const created = await ctx.v1('POST', `/apps/${app.id}/webhooks`, {
    url: `${receiver.base}${path}`,
    event_types: eventTypes,
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  return { app, path, api: ctx.api(app) };
}

/**
 * The next webhook to `path` carrying an event that matches `expected` (all its fields), after
 * checking the request as a Pusher customer's server would.
 */
async function webhookEvent(api, path, expected, ms, at = receiver) {
  const matches = (event) => Object.entries(expected).every(([k, v]) => event[k] === v);
  const request = await at.next(
    (r) => r.path === path && JSON.parse(r.rawBody).events.some(matches),
    ms === undefined ? {} : { ms },
  );
  const webhook = api.webhook({ headers: request.headers, rawBody: request.rawBody });
  assert.equal(webhook.isValid(), true, `signature of ${request.rawBody} with ${JSON.stringify(request.headers)}`);
  assert.equal(request.headers['content-type'], 'application/json');
  assert.equal(typeof webhook.getTime().getTime(), 'number');
  const events = webhook.getEvents();
  assert.equal(events.length, 1, 'one event per request without batching');
  return events[0];
}

function eventsTo(path) {
  return receiver.requests.filter((r) => r.path === path).flatMap((r) => JSON.parse(r.rawBody).events);
}

test('channel_occupied and channel_vacated follow a channel\'s first and last subscriber', SLOW, async (t) => {
  const { app, path, api } = await appWithWebhook();
  const channelName = uid('room-');
  const alice = ctx.client(t, app);
  const bob = ctx.client(t, app);
  await alice.subscribe(channelName);
  assert.deepEqual(await webhookEvent(api, path, { name: 'channel_occupied', channel: channelName }), {
    name: 'channel_occupied',
    channel: channelName,
  });
  await bob.subscribe(channelName);
  alice.pusher.unsubscribe(channelName);
  bob.pusher.unsubscribe(channelName);
  const vacated = await webhookEvent(api, path, { name: 'channel_vacated', channel: channelName }, LEAVE_WAIT_MS);
  assert.deepEqual(vacated, { name: 'channel_vacated', channel: channelName });
  const seen = eventsTo(path).filter((e) => e.channel === channelName).map((e) => e.name);
  assert.deepEqual(seen, ['channel_occupied', 'channel_vacated'], 'one of each, not one per subscriber');
});

test('member_added, client_event (with user_id) and member_removed on disconnect', SLOW, async (t) => {
  const { app, path, api } = await appWithWebhook(['member_added', 'member_removed', 'client_event']);
  const channelName = uid('presence-room-');
  const alice = ctx.client(t, app, { userId: 'alice', userInfo: { name: 'Alice' } });
  const bob = ctx.client(t, app, { userId: 'bob' });
  const aliceChannel = await alice.subscribe(channelName);
  await webhookEvent(api, path, { name: 'member_added', user_id: 'alice' });
  const bobChannel = await bob.subscribe(channelName);
  assert.deepEqual(await webhookEvent(api, path, { name: 'member_added', user_id: 'bob' }), {
    name: 'member_added',
    channel: channelName,
    user_id: 'bob',
  });

  const heard = waitForEvent(aliceChannel, 'client-wave');
  assert.equal(bobChannel.trigger('client-wave', { hand: 'left' }), true);
  await heard;
  assert.deepEqual(await webhookEvent(api, path, { name: 'client_event', event: 'client-wave' }), {
    name: 'client_event',
    channel: channelName,
    event: 'client-wave',
    data: JSON.stringify({ hand: 'left' }),
    socket_id: bob.socketId,
    user_id: 'bob',
  });

  bob.disconnect();
  assert.deepEqual(await webhookEvent(api, path, { name: 'member_removed' }, LEAVE_WAIT_MS), {
    name: 'member_removed',
    channel: channelName,
    user_id: 'bob',
  });
  // Only the event types this webhook asked for.
  const names = new Set(eventsTo(path).map((e) => e.name));
  assert.deepEqual([...names].sort(), ['client_event', 'member_added', 'member_removed']);
});

test('a client that comes back within the grace period causes no channel_vacated', SLOW, async (t) => {
  const { app, path, api } = await appWithWebhook(['channel_occupied', 'channel_vacated']);
  const flicker = uid('flicker-');
  const gone = uid('gone-');
  const alice = ctx.client(t, app);
  await alice.subscribe(flicker);
  await webhookEvent(api, path, { name: 'channel_occupied', channel: flicker });
  alice.pusher.unsubscribe(flicker);
  await alice.subscribe(flicker);
  // A channel vacated for good afterwards: its webhook comes after flicker's would have.
  await alice.subscribe(gone);
  alice.pusher.unsubscribe(gone);
  await webhookEvent(api, path, { name: 'channel_vacated', channel: gone }, LEAVE_WAIT_MS);
  const flickers = eventsTo(path).filter((e) => e.channel === flicker).map((e) => e.name);
  assert.deepEqual(flickers, ['channel_occupied']);
});

test('cache_miss webhook and pusher:cache_miss for an empty cache channel', T, async (t) => {
  const { app, path, api } = await appWithWebhook(['cache_miss']);
  const channelName = uid('cache-');
  const alice = ctx.client(t, app);
  await alice.connected();
  const channel = alice.pusher.subscribe(channelName);
  await waitForEvent(channel, 'pusher:cache_miss', { describe: () => alice.describe() });
  assert.deepEqual(await webhookEvent(api, path, { name: 'cache_miss' }), { name: 'cache_miss', channel: channelName });
});

test('the delivery log lists each attempt through /v1', T, async (t) => {
  const { app, path, api } = await appWithWebhook(['channel_occupied']);
  const alice = ctx.client(t, app);
  await alice.subscribe(uid('logged-'));
  await webhookEvent(api, path, { name: 'channel_occupied' });
  let log;
  for (let tries = 0; tries < 100; tries++) {
    log = await ctx.v1('GET', `/apps/${app.id}/webhooks/deliveries`);
    if (log.body.length > 0) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.equal(log.status, 200);
  assert.equal(log.body[0].status, 'delivered');
  assert.equal(log.body[0].http_status, 200);
  assert.equal(log.body[0].attempt, 1);
  assert.equal(log.body[0].event_count, 1);
});

test('subscription_count: pusher-js gets the count when the app opted in, and so does the webhook', T, async (t) => {
  const { app, path, api } = await appWithWebhook(['subscription_count']);
  const changed = await ctx.v1('PATCH', `/apps/${app.id}`, { subscription_counting: true });
  assert.equal(changed.status, 200);
  assert.equal(changed.body.subscription_counting, true);
  // The edge may have cached the app before the change: wait until a probe sees counts.
  for (let seen = false; !seen; ) {
    const probe = RawSocket.forApp(ctx.server, app.key);
    await probe.next('pusher:connection_established');
    probe.send({ event: 'pusher:subscribe', data: { channel: 'probe', auth: '' } });
    await probe.next('pusher_internal:subscription_succeeded');
    probe.send({ event: 'pusher:ping', data: {} });
    await probe.next('pusher:pong');
    seen = probe.frames.some((f) => f.event === 'pusher_internal:subscription_count');
    probe.close();
  }
  const channelName = uid('counted-');
  const alice = ctx.client(t, app);
  const bob = ctx.client(t, app);
  await alice.connected();
  const aliceChannel = alice.pusher.subscribe(channelName);
  const first = await waitForEvent(aliceChannel, 'pusher:subscription_count', { describe: () => alice.describe() });
  assert.deepEqual(first.data, { subscription_count: 1 });
  const second = waitForEvent(aliceChannel, 'pusher:subscription_count', {
    predicate: (data) => data.subscription_count === 2,
    describe: () => alice.describe(),
  });
  await bob.subscribe(channelName);
  await second;
  assert.equal(aliceChannel.subscriptionCount, 2);
  assert.deepEqual(await webhookEvent(api, path, { name: 'subscription_count', subscription_count: 2 }), {
    name: 'subscription_count',
    channel: channelName,
    subscription_count: 2,
  });
});

// Last in the file: it restarts the server.
test('webhooks pending when the server stops are delivered by the next server on the same database', SLOW, async (t) => {
  // The endpoint is down while the first server runs.
  const port = await freePort();
  const later = new WebhookReceiver();
  t.after(() => later.stop());
  const app = await ctx.newApp();
  const path = `/hooks/${app.id}`;
  const created = await ctx.v1('POST', `/apps/${app.id}/webhooks`, { url: `http://127.0.0.1:${port}${path}` });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const channelName = uid('restart-');
  const alice = ctx.client(t, app);
  await alice.subscribe(channelName);
  let log;
  for (let tries = 0; tries < 200; tries++) {
    log = await ctx.v1('GET', `/apps/${app.id}/webhooks/deliveries`);
    if (log.body.some((row) => row.error === 'connect_refused')) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.equal(log.body[0].error, 'connect_refused', JSON.stringify(log.body));
  assert.equal(log.body[0].status, 'retrying');
  // Alice leaves, and the server stops while her channel_vacated is still held.
  alice.disconnect();
  await ctx.restart();
  await later.start(port);
  const api = ctx.api(app);
  assert.deepEqual(await webhookEvent(api, path, { name: 'channel_occupied', channel: channelName }, 30000, later), {
    name: 'channel_occupied',
    channel: channelName,
  });
  assert.deepEqual(await webhookEvent(api, path, { name: 'channel_vacated', channel: channelName }, 30000, later), {
    name: 'channel_vacated',
    channel: channelName,
  });
});
