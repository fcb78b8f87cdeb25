// The committed /v1 client types (src/api/schema.d.ts) are exactly what the server's
// OpenAPI document generates: a /v1 change without `npm run gen` fails here.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';

import { generate, SCHEMA_FILE } from '../scripts/generate-api.mjs';
import { startServer } from './harness.mjs';

let server;
before(async () => {
  server = await startServer();
});
after(() => server?.stop());

test('src/api/schema.d.ts is generated from the running server’s /v1/openapi.json', async () => {
  const document = await (await fetch(`${server.base}/v1/openapi.json`)).json();
  const fresh = await generate(document);
  const committed = readFileSync(SCHEMA_FILE, 'utf8');
  assert.ok(fresh.includes('"/v1/apps"'), 'the generated types name the /v1 paths');
  assert.equal(committed, fresh, 'schema.d.ts is stale: run `npm run gen -- http://127.0.0.1:PORT` against a server built from this tree');
});

test('the server answers client routes with the dashboard and keeps its own paths', async () => {
  const index = readFileSync(new URL('../dist/index.html', import.meta.url), 'utf8');
  for (const route of ['/', '/login', '/applications/123/console', '/account']) {
    const response = await fetch(`${server.base}${route}`);
    assert.equal(response.status, 200, route);
    assert.equal(await response.text(), index, `${route} is the dashboard's index.html`);
  }
  for (const route of ['/v1/no-such-thing', '/apps/1/no-such-thing', '/sb/nothing', '/assets/missing.js', '/app/']) {
    const response = await fetch(`${server.base}${route}`);
    await response.arrayBuffer();
    assert.equal(response.status, 404, route);
  }
  const asset = index.match(/src="(\/assets\/[^"]+\.js)"/)[1];
  const script = await fetch(`${server.base}${asset}`);
  assert.equal(script.status, 200);
  assert.match(script.headers.get('content-type'), /javascript/);
  assert.match(script.headers.get('cache-control'), /immutable/);
  const health = await fetch(`${server.base}/healthz`);
  await health.arrayBuffer();
  assert.equal(health.status, 200);
});
