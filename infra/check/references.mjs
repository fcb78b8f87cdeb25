// Whether a PromQL expression refers only to metrics and labels a scrape has: every selector's
// metric is exported, every matcher's label is on that metric (and an `=` or `=~` matcher
// matches at least one exported value), every grouping label is on a metric the expression
// reads. `job` and `instance` are the labels Prometheus itself adds to every scraped sample.

import { analyse } from './promql.mjs';

export const TARGET_LABELS = new Set(['job', 'instance']);

/** The problems of `expression` against `exported` (parseExposition's map); [] when none. */
export function problems(expression, exported) {
  const { selectors, groupingLabels, errors } = analyse(expression);
  const found = [...errors];
  const labelsRead = new Set(TARGET_LABELS);
  for (const { metric, matchers } of selectors) {
    if (!metric) {
      found.push('a selector without a metric name');
      continue;
    }
    const samples = exported.get(metric);
    if (!samples) {
      found.push(`metric ${metric} is not exported`);
      continue;
    }
    for (const labels of samples) for (const label of Object.keys(labels)) labelsRead.add(label);
    for (const { label, op, value } of matchers) {
      if (TARGET_LABELS.has(label)) continue;
      const values = samples.filter((labels) => label in labels).map((labels) => labels[label]);
      if (values.length === 0) {
        found.push(`label ${label} is not on ${metric}`);
        continue;
      }
      if (op === '=' && !values.includes(value)) {
        found.push(`${metric}{${label}="${value}"} matches no exported series (values: ${[...new Set(values)].join(', ')})`);
      }
      if (op === '=~' && !values.some((v) => new RegExp(`^(?:${value})$`).test(v))) {
        found.push(`${metric}{${label}=~"${value}"} matches no exported series`);
      }
    }
  }
  for (const label of groupingLabels) {
    if (!labelsRead.has(label)) found.push(`grouping label ${label} is on none of the metrics read`);
  }
  return found;
}
