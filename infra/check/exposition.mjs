// The Prometheus text exposition format, as a scraper reads it: each sample's metric name and
// labels (HELP and TYPE lines are skipped).

/** Map of metric name to the label sets of its samples. */
export function parseExposition(text) {
  const metrics = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+\S+(\s+\S+)?$/.exec(line);
    if (!match) throw new Error(`not an exposition line: ${JSON.stringify(line)}`);
    const [, name, , body = ''] = match;
    const labels = {};
    for (const pair of body.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[pair[1]] = pair[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
    }
    if (!metrics.has(name)) metrics.set(name, []);
    metrics.get(name).push(labels);
  }
  return metrics;
}
