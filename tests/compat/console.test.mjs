// The dashboard's debug console as a browser would open it, with the unmodified pusher-js and
// its own channel authorizer (a form-encoded POST to /v1/console/auth, the account's
// credentials in a header): the console's events of an app arrive, another app's channel is
// refused. Needs Postgres (see platform.mjs).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { PusherClient, T, uid, waitForEvent } from './helpers.mjs';
import { usePlatform } from './platform.mjs';

const ctx = usePlatform();

/** A pusher-js client of the system app, authorised by the control plane with `token`. */
async function dashboard(t, token) {
  const info = await ctx.v1('GET', '/console');
  assert.equal(info.status, 200, JSON.stringify(info.body));
  const pusher = new PusherClient(info.body.key, {
    cluster: 'x',
    wsHost: info.body.ws_host,
    wsPort: info.body.ws_port,
    forceTLS: info.body.tls,
    enabledTransports: ['ws'],
    enableStats: false,
    channelAuthorization: {
      endpoint: `${ctx.server.baseUrl}${info.body.auth_endpoint}`,
      transport: 'ajax',
      headers: { Authorization: `Bearer ${token}` },
    },
  });
  t.after(() => pusher.disconnect());
  return pusher;
}

test('pusher-js subscribes to its app\'s console through /v1/console/auth and gets its events', T, async (t) => {
  const app = await ctx.newApp();
  const pusher = await dashboard(t, ctx.token);
  const consoleChannel = pusher.subscribe(`private-console-${app.id}`);
  await waitForEvent(consoleChannel, 'pusher:subscription_succeeded');

  const channelName = uid('news-');
  const events = [];
  consoleChannel.bind('console', (batch) => events.push(...batch.events));
  // Waiting from before the publish: its batch may come before the publish's response.
  const arrived = waitForEvent(consoleChannel, 'console', {
    predicate: () => events.some((e) => e.type === 'api_publish' && e.channel === channelName),
    describe: () => JSON.stringify(events),
  });
  const published = await ctx.api(app).trigger(channelName, 'hello', { n: 1 });
  assert.equal(published.status, 200);
  await arrived;
  const publish = events.find((e) => e.type === 'api_publish');
  assert.equal(publish.event, 'hello');
  assert.equal(typeof publish.time_ms, 'number');
});

test('pusher-js is refused another app\'s console (403)', T, async (t) => {
  const pusher = await dashboard(t, ctx.token);
  const stranger = pusher.subscribe('private-console-999999');
  const { data: failed } = await waitForEvent(stranger, 'pusher:subscription_error');
  assert.equal(failed.status, 403);
});
