// The files of infra/ and what the checks read from them.

import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { parse, parseAllDocuments } from 'yaml';

export const INFRA = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const ROOT = path.resolve(INFRA, '..');

/** Every file under infra/ with one of `extensions`, but the checks' own node_modules. */
export function filesEnding(extensions, dir = INFRA) {
  const found = [];
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules') continue;
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) found.push(...filesEnding(extensions, full));
    else if (extensions.some((ext) => name.endsWith(ext))) found.push(full);
  }
  return found.sort();
}

export function readText(relative) {
  return readFileSync(path.join(INFRA, relative), 'utf8');
}

/** One YAML document; merge keys (`<<: *anchor`) resolved, as Compose does. */
export function readYaml(relative) {
  return parse(readText(relative), { merge: true });
}

/** Every document of a YAML file, failing on the first syntax error. */
export function yamlDocuments(file) {
  const documents = parseAllDocuments(readFileSync(file, 'utf8'), { merge: true });
  for (const document of documents) {
    if (document.errors.length > 0) throw new Error(`${file}: ${document.errors[0].message}`);
  }
  return documents.map((document) => document.toJS()).filter((value) => value !== null);
}

export function readJson(relative) {
  return JSON.parse(readText(relative));
}

/** The dashboard's panels, rows' panels included. */
export function dashboardPanels(dashboard) {
  return dashboard.panels.flatMap((panel) => [panel, ...(panel.panels || [])]);
}

/** Every PromQL expression of the alert rules and the Grafana dashboard, with where it is. */
export function promqlExpressions() {
  const expressions = [];
  for (const group of readYaml('prometheus/alerts.yml').groups) {
    for (const rule of group.rules) expressions.push({ where: `alert ${rule.alert || rule.record}`, expr: rule.expr });
  }
  for (const panel of dashboardPanels(readJson('grafana/dashboards/switchboard.json'))) {
    for (const target of panel.targets || []) {
      expressions.push({ where: `panel "${panel.title}" ${target.refId}`, expr: target.expr });
    }
  }
  return expressions;
}
