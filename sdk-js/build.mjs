// Builds dist/ (ESM + .d.ts + the single-file browser bundle) and checks the bundle's size:
// minified + gzipped, it must be at most half of pusher-js's browser bundle.
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const require = createRequire(import.meta.url);
rmSync('dist', { recursive: true, force: true });

const common = { bundle: true, target: 'es2019', logLevel: 'warning' };
await build({ ...common, entryPoints: ['src/index.ts'], format: 'esm', outfile: 'dist/index.mjs' });
await build({
  ...common,
  entryPoints: ['src/browser.ts'],
  format: 'iife',
  globalName: 'Switchboard',
  // The global is the class, not a module namespace.
  footer: { js: 'Switchboard=Switchboard.default;' },
  minify: true,
  outfile: 'dist/switchboard.min.js',
});
// The WebRTC helper: its own entry point and bundle, so the core bundle carries none of it.
await build({ ...common, entryPoints: ['src/webrtc/index.ts'], format: 'esm', outfile: 'dist/webrtc.mjs' });
await build({
  ...common,
  entryPoints: ['src/webrtc/index.ts'],
  format: 'iife',
  globalName: 'SwitchboardWebRTC',
  footer: { js: 'SwitchboardWebRTC=SwitchboardWebRTC.default;' },
  minify: true,
  outfile: 'dist/switchboard-webrtc.min.js',
});
const tsc = (project) => execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', project], { stdio: 'inherit' });
tsc('.'); // the .d.ts files
tsc('tsconfig.check.json'); // strict type check, including the typed-events usage in test/types-check.ts

const gzipped = (file) => gzipSync(readFileSync(file), { level: 9 }).length;
const ours = gzipped('dist/switchboard.min.js');
const theirs = gzipped(require.resolve('pusher-js/dist/web/pusher.min.js'));
const kib = (n) => `${(n / 1024).toFixed(1)} KiB`;
const pusherVersion = require('pusher-js/package.json').version;
console.log(`switchboard.min.js   ${kib(ours)} min+gz`);
console.log(`pusher-js ${pusherVersion} pusher.min.js   ${kib(theirs)} min+gz`);
console.log(`ratio ${(ours / theirs).toFixed(2)} (limit 0.50)`);
console.log(`switchboard-webrtc.min.js   ${kib(gzipped('dist/switchboard-webrtc.min.js'))} min+gz (separate, not in the budget)`);
if (readFileSync('dist/switchboard.min.js', 'utf8').includes('RTCPeerConnection')) {
  console.error('FAIL: the core bundle contains the WebRTC helper');
  process.exit(1);
}
if (ours > theirs / 2) {
  console.error(`FAIL: the browser bundle (${ours} B) is more than half of pusher-js's (${theirs} B)`);
  process.exit(1);
}
