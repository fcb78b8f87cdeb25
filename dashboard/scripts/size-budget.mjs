// Fails the build when the dashboard's JavaScript, minified and gzipped, is over budget.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';

const BUDGET_BYTES = 100 * 1024;
const dir = 'dist/assets';
const scripts = readdirSync(dir).filter((name) => name.endsWith('.js'));
let total = 0;
for (const name of scripts) {
  const bytes = gzipSync(readFileSync(path.join(dir, name)), { level: 9 }).length;
  total += bytes;
  console.log(`${name}  ${(bytes / 1024).toFixed(1)} KiB min+gz`);
}
console.log(`dashboard JavaScript ${(total / 1024).toFixed(1)} KiB min+gz (budget ${BUDGET_BYTES / 1024} KiB)`);
if (scripts.length === 0 || total > BUDGET_BYTES) {
  console.error(scripts.length === 0 ? 'FAIL: no JavaScript in dist/assets' : `FAIL: ${total} B is over the ${BUDGET_BYTES} B budget`);
  process.exit(1);
}
