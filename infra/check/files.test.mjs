// infra/ checked with real tools, no container engine: every YAML and JSON file parses, the
// compose file and the Kubernetes manifests validate against their published JSON schemas
// (infra/schemas, see its README), promtool checks the alert rules and Prometheus' config,
// and the files refer to each other consistently (mounts, datasource, dashboard folder).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import Ajv2020 from 'ajv/dist/2020.js';

import {
  INFRA,
  ROOT,
  dashboardPanels,
  filesEnding,
  promqlExpressions,
  readJson,
  readText,
  readYaml,
  yamlDocuments,
} from './infra-files.mjs';
import { analyse } from './promql.mjs';

const PROMTOOL = process.env.PROMTOOL || 'promtool';
const KUBERNETES_SCHEMAS = 'schemas/kubernetes/v1.34.0-local-strict';
const KUBERNETES_API = 'https://kubernetes.io/api/';

/** The schema file of a Kubernetes object, in the openapi2jsonschema naming. */
function kubernetesSchemaFile({ apiVersion, kind }) {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  const groupPart = group === '' ? '' : `-${group.split('.')[0]}`;
  return `${kind.toLowerCase()}${groupPart}-${version}.json`;
}

function validator() {
  // Formats (int32, byte, …) and the x-kubernetes-* keywords are annotations here.
  return new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
}

function explain(validate) {
  return JSON.stringify(validate.errors?.slice(0, 5), null, 1);
}

test('every YAML and JSON file of infra/ parses', () => {
  const yamlFiles = filesEnding(['.yaml', '.yml']);
  const jsonFiles = filesEnding(['.json']);
  assert.ok(yamlFiles.length >= 10, `found ${yamlFiles.length} YAML files`);
  for (const file of yamlFiles) assert.ok(yamlDocuments(file).length >= 1, `${file} has a document`);
  for (const file of jsonFiles) assert.doesNotThrow(() => JSON.parse(readText(path.relative(INFRA, file))), file);
});

test('compose.yaml is valid against the Compose Specification schema', () => {
  const validate = validator().compile(readJson('schemas/compose-spec.json'));
  const compose = readYaml('compose.yaml');
  assert.ok(validate(compose), explain(validate));
  const services = Object.keys(compose.services).sort();
  assert.deepEqual(services, ['control', 'edge-1', 'edge-2', 'grafana', 'migrate', 'otel-collector', 'postgres', 'prometheus', 'redis']);
  // The schema's check can fail: a misspelt key is refused.
  const broken = structuredClone(compose);
  broken.services.redis.imagee = 'redis:7';
  assert.equal(validate(broken), false, 'a misspelt service key fails the schema');
});

test('every file compose.yaml mounts exists, and the edges share one Redis', () => {
  const compose = readYaml('compose.yaml');
  for (const [name, service] of Object.entries(compose.services)) {
    for (const volume of service.volumes || []) {
      const source = volume.split(':')[0];
      if (!source.startsWith('.')) continue;
      assert.ok(existsSync(path.join(INFRA, source)), `${name} mounts ${source}, which is missing`);
    }
  }
  const broker = (service) => service.command[service.command.indexOf('--broker') + 1];
  assert.equal(broker(compose.services['edge-1']), 'redis://redis:6379/0');
  assert.equal(broker(compose.services['edge-2']), broker(compose.services['edge-1']));
  assert.equal(compose.services.migrate.command[0], 'migrate');
});

test('every Kubernetes manifest is valid against the Kubernetes 1.34 strict schema of its kind', () => {
  const ajv = validator();
  ajv.addSchema(readJson(`${KUBERNETES_SCHEMAS}/_definitions.json`), `${KUBERNETES_API}_definitions.json`);
  const kinds = new Map();
  for (const file of filesEnding(['.yaml'], path.join(INFRA, 'kubernetes'))) {
    for (const object of yamlDocuments(file)) {
      const schemaFile = `${KUBERNETES_SCHEMAS}/${kubernetesSchemaFile(object)}`;
      assert.ok(existsSync(path.join(INFRA, schemaFile)), `${file}: no schema kept for ${object.apiVersion} ${object.kind} (${schemaFile})`);
      const validate = ajv.getSchema(readJson(schemaFile).$id) || ajv.compile(readJson(schemaFile));
      assert.ok(validate(object), `${path.basename(file)} ${object.kind}/${object.metadata?.name}: ${explain(validate)}`);
      kinds.set(`${object.kind}/${object.metadata.name}`, object);
    }
  }
  for (const expected of [
    'Deployment/switchboard-edge',
    'Deployment/switchboard-control',
    'Service/switchboard-edge',
    'Service/switchboard-control',
    'PodDisruptionBudget/switchboard-edge',
    'HorizontalPodAutoscaler/switchboard-edge',
    'Job/switchboard-migrate',
    'Ingress/switchboard',
  ]) {
    assert.ok(kinds.has(expected), `${expected} is among the manifests`);
  }
  // Strict: a field the API does not have is refused.
  const deployment = structuredClone(kinds.get('Deployment/switchboard-edge'));
  deployment.spec.template.spec.containers[0].readinesProbe = {};
  const validate = ajv.getSchema(`${KUBERNETES_API}deployment/apps/v1`);
  assert.equal(validate(deployment), false, 'a misspelt container field fails the strict schema');
});

test('the edge is ready only until it drains, scales on connections, and the Job migrates', () => {
  const objects = filesEnding(['.yaml'], path.join(INFRA, 'kubernetes')).flatMap(yamlDocuments);
  const find = (kind, name) => objects.find((o) => o.kind === kind && o.metadata.name === name);
  const edge = find('Deployment', 'switchboard-edge').spec.template.spec;
  const container = edge.containers[0];
  assert.equal(container.args[0], 'edge');
  assert.equal(container.readinessProbe.httpGet.path, '/readyz');
  assert.equal(container.livenessProbe.httpGet.path, '/healthz');
  const drainDelay = Number(container.args.find((a) => a.startsWith('--drain-delay=')).split('=')[1]);
  // The drain: the delay, at most 5 s closing and stopping, then the usage flush.
  assert.ok(edge.terminationGracePeriodSeconds >= drainDelay + 15, 'the grace period covers the drain');
  const hpa = find('HorizontalPodAutoscaler', 'switchboard-edge').spec;
  assert.equal(hpa.metrics.find((m) => m.type === 'Pods').pods.metric.name, 'switchboard_connections');
  assert.deepEqual(find('Job', 'switchboard-migrate').spec.template.spec.containers[0].args, ['migrate']);
  const ingress = find('Ingress', 'switchboard').metadata.annotations;
  assert.ok(Number(ingress['nginx.ingress.kubernetes.io/proxy-read-timeout']) >= 3600);
  assert.ok(Number(ingress['nginx.ingress.kubernetes.io/proxy-send-timeout']) >= 3600);
});

test('promtool accepts the alert rules and the Prometheus config', () => {
  const rules = execFileSync(PROMTOOL, ['check', 'rules', path.join(INFRA, 'prometheus/alerts.yml')], { encoding: 'utf8' });
  assert.match(rules, /SUCCESS: \d+ rules found/);
  const config = execFileSync(PROMTOOL, ['check', 'config', '--syntax-only', path.join(INFRA, 'prometheus/prometheus.yml')], {
    encoding: 'utf8',
  });
  assert.match(config, /SUCCESS/);
  assert.deepEqual(readYaml('prometheus/prometheus.yml').rule_files, ['/etc/prometheus/alerts.yml']);
});

test('every alert names the conditions the operator asked for', () => {
  const alerts = readYaml('prometheus/alerts.yml').groups.flatMap((g) => g.rules.map((r) => r.alert));
  for (const alert of [
    'SwitchboardPlanConnectionCeilingSaturated',
    'SwitchboardSlowConsumerCloses',
    'SwitchboardWebhookFailures',
    'SwitchboardRedisDown',
    'SwitchboardDrainStuck',
    'SwitchboardBillingOutboxOld',
  ]) {
    assert.ok(alerts.includes(alert), `${alert} is among the rules`);
  }
});

test('every PromQL expression of the alerts and the dashboard parses', () => {
  const expressions = promqlExpressions();
  assert.ok(expressions.length >= 30, `${expressions.length} expressions`);
  for (const { where, expr } of expressions) {
    const { errors, selectors } = analyse(expr);
    assert.deepEqual(errors, [], `${where}: ${expr}`);
    assert.ok(selectors.length >= 1, `${where} reads a metric`);
  }
  assert.notDeepEqual(analyse('sum(rate(x[5m])').errors, [], 'a broken expression is caught');
});

test('the dashboard reads the provisioned datasource, from the folder Grafana is given', () => {
  const datasource = readYaml('grafana/provisioning/datasources/prometheus.yaml').datasources[0];
  for (const panel of dashboardPanels(readJson('grafana/dashboards/switchboard.json'))) {
    if (panel.type === 'row') continue;
    assert.equal(panel.datasource.uid, datasource.uid, panel.title);
  }
  const provider = readYaml('grafana/provisioning/dashboards/switchboard.yaml').providers[0];
  const grafana = readYaml('compose.yaml').services.grafana;
  assert.ok(grafana.volumes.includes(`./grafana/dashboards:${provider.options.path}:ro`));
});

test('the Dockerfile builds the dashboard, then the release binary, into a slim Debian image', () => {
  const dockerfile = readText('Dockerfile');
  const stages = [...dockerfile.matchAll(/^FROM (\S+) AS (\S+)$/gm)].map((m) => [m[2], m[1]]);
  assert.deepEqual(stages.map(([name]) => name), ['dashboard', 'binary', 'runtime']);
  assert.match(stages[2][1], /^debian:[a-z]+-slim$/);
  assert.match(dockerfile, /RUN npm run build/);
  assert.match(dockerfile, /COPY --from=dashboard \/src\/dashboard\/dist dashboard\/dist/);
  assert.ok(existsSync(path.join(ROOT, 'dashboard/package-lock.json')), 'npm ci has a lock file');
  // xtask's tests hold the cargo line to the one the test run builds with.
  assert.match(dockerfile, /^RUN cargo build --release --locked -p switchboard/m);
});
