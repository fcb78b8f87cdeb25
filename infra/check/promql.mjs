// What a PromQL expression asks of the metrics it reads, from the real PromQL grammar
// (@prometheus-io/lezer-promql, the parser of Prometheus' own UI): each vector selector's
// metric name and label matchers, and the labels it groups or matches on. Syntax errors are
// reported, not guessed around.

import { parser } from '@prometheus-io/lezer-promql';

/** Grafana's interval variables, replaced by a fixed range before parsing. */
const GRAFANA_VARIABLES = [
  ['$__rate_interval', '5m'],
  ['$__interval', '1m'],
  ['$__range', '1h'],
];

export function withoutGrafanaVariables(expression) {
  let text = expression;
  for (const [variable, value] of GRAFANA_VARIABLES) text = text.split(variable).join(value);
  return text;
}

/**
 * {selectors: [{metric, matchers: [{label, op, value}]}], groupingLabels: [label], errors: [text]}
 * for one expression.
 */
export function analyse(expression) {
  const text = withoutGrafanaVariables(expression);
  const tree = parser.parse(text);
  const selectors = [];
  const groupingLabels = [];
  const errors = [];
  const slice = (node) => text.slice(node.from, node.to);
  tree.iterate({
    enter(ref) {
      if (ref.type.isError) {
        errors.push(`syntax error at ${ref.from}: ${JSON.stringify(text.slice(Math.max(0, ref.from - 20), ref.from + 20))}`);
        return;
      }
      if (ref.name === 'VectorSelector') {
        const node = ref.node;
        const identifier = node.getChild('Identifier');
        const matchers = [];
        const list = node.getChild('LabelMatchers');
        for (const matcher of list ? [...list.getChildren('UnquotedLabelMatcher'), ...list.getChildren('QuotedLabelMatcher')] : []) {
          const label = matcher.getChild('LabelName');
          const op = matcher.getChild('MatchOp');
          const value = matcher.getChild('StringLiteral');
          matchers.push({
            label: label ? slice(label) : null,
            op: op ? slice(op) : null,
            value: value ? JSON.parse(slice(value).replace(/^'|'$/g, '"')) : null,
          });
        }
        // A selector without a name (`{__name__=~"…"}`) is refused: it cannot be checked.
        selectors.push({ metric: identifier ? slice(identifier) : null, matchers });
        return false;
      }
      if (ref.name === 'GroupingLabels') {
        for (const label of ref.node.getChildren('LabelName')) groupingLabels.push(slice(label));
        return false;
      }
      return undefined;
    },
  });
  if (text.trim() === '') errors.push('empty expression');
  return { selectors, groupingLabels, errors };
}
