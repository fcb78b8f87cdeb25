// Every PromQL query of the alert rules and the Grafana dashboard refers only to metrics and
// labels a running server exports: `switchboard serve` (SWITCHBOARD_BIN: the release binary
// `cargo xtask test` builds as the Dockerfile does) with a throwaway Postgres database, on a
// throwaway Redis (`--broker`), with per-app series on; a client connects and an event is
// published and delivered, then `/metrics` is scraped and each expression checked against it.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';

import { Client, WAIT_MS, waitForEvent } from '../../tests/compat/helpers.mjs';
import { usePlatform } from '../../tests/compat/platform.mjs';
import { startRedis } from '../../tests/compat/redis-server.mjs';

import { parseExposition } from './exposition.mjs';
import { promqlExpressions } from './infra-files.mjs';
import { problems } from './references.mjs';

// The platform's server reads these from the environment it inherits.
const redis = await startRedis();
process.env.SWITCHBOARD_BROKER = redis.url;
process.env.SWITCHBOARD_METRICS_PER_APP_CAP = '10';
const platform = usePlatform();
after(async () => {
  client?.pusher.disconnect();
  await redis.stop();
});

let client;
let scraped;

async function scrape() {
  const response = await fetch(`${platform.server.baseUrl}/metrics`, { signal: AbortSignal.timeout(WAIT_MS) });
  assert.equal(response.status, 200);
  const text = await response.text();
  if (process.env.INFRA_DUMP) (await import("node:fs")).writeFileSync(process.env.INFRA_DUMP, text);
  return parseExposition(text);
}

/**
 * The scrape after a bit of traffic, made once by the first test that asks (the platform's
 * server is up by then: its `before` hook has run).
 */
function exportedMetrics() {
  scraped ??= driveTrafficAndScrape();
  return scraped;
}

async function driveTrafficAndScrape() {
  const app = await platform.newApp();
  client = new Client(platform.server, app);
  await client.connected();
  const channel = await client.subscribe('infra-check');
  const received = waitForEvent(channel, 'greeting');
  await platform.api(app).trigger('infra-check', 'greeting', { hello: 'world' });
  await received;
  return scrape();
}

test('the server exports the series the alerts are about from the start', async () => {
  const exported = await exportedMetrics();
  for (const name of [
    'switchboard_connections',
    'switchboard_slow_consumers_total',
    'switchboard_redis_up',
    'switchboard_draining',
    'switchboard_webhook_attempts_total',
    'switchboard_webhook_queue_oldest_age_seconds',
    'switchboard_billing_outbox_oldest_age_seconds',
    'switchboard_catalog_cache_hits_total',
    'switchboard_connection_ceiling_usage_ratio_bucket',
    'switchboard_redis_ping_duration_seconds_bucket',
    'switchboard_app_connections',
  ]) {
    assert.ok(exported.has(name), `${name} is exported`);
  }
  assert.deepEqual(exported.get('switchboard_redis_up'), [{}]);
  const outcomes = exported.get('switchboard_webhook_attempts_total').map((labels) => labels.outcome).sort();
  assert.deepEqual(outcomes, ['delivered', 'failed', 'retrying']);
  // The sandbox plan's ceiling is 100 connections: its admissions are told apart by it.
  const ceilings = new Set(exported.get('switchboard_connection_ceiling_usage_ratio_bucket').map((l) => l.plan_ceiling));
  assert.ok(ceilings.has('100'), [...ceilings].join(','));
});

test('no app id is a label except in the capped per-app series', async () => {
  const exported = await exportedMetrics();
  for (const [name, samples] of exported) {
    const perApp = name.startsWith('switchboard_app_');
    for (const labels of samples) {
      assert.equal('app' in labels, perApp, `${name} ${JSON.stringify(labels)}`);
    }
  }
});

test('every PromQL query of the alerts and the dashboard names only exported metrics and labels', async () => {
  const exported = await exportedMetrics();
  const expressions = promqlExpressions();
  const failures = expressions
    .map(({ where, expr }) => ({ where, expr, problems: problems(expr, exported) }))
    .filter((result) => result.problems.length > 0);
  assert.deepEqual(failures, []);
});

test('the reference check finds a metric, a label and a value the server does not export', async () => {
  const exported = await exportedMetrics();
  assert.deepEqual(problems('sum(rate(switchboard_messages_delivered_total[5m]))', exported), []);
  assert.deepEqual(problems('rate(switchboard_no_such_metric_total[5m])', exported), [
    'metric switchboard_no_such_metric_total is not exported',
  ]);
  assert.deepEqual(problems('switchboard_connections{app_id="x"}', exported), ['label app_id is not on switchboard_connections']);
  assert.equal(problems('sum by (channel) (switchboard_subscriptions)', exported).length, 1);
  assert.equal(problems('switchboard_webhook_attempts_total{outcome="lost"}', exported).length, 1);
  assert.deepEqual(problems('sum by (instance, job) (switchboard_connections)', exported), [], 'target labels');
});
