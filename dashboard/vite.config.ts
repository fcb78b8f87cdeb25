// Vite builds the dashboard into dist/, which the control plane embeds and serves at `/`.
// `npm run dev` proxies the server's paths to a local `switchboard serve` (SWITCHBOARD_URL).
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';
import preact from '@preact/preset-vite';

const server = process.env.SWITCHBOARD_URL || 'http://127.0.0.1:6001';

export default defineConfig({
  plugins: [preact()],
  // Our SDK from its source, so the dashboard never waits for sdk-js's own build.
  resolve: { alias: { '@switchboard/js': fileURLToPath(new URL('../sdk-js/src/index.ts', import.meta.url)) } },
  build: { target: 'es2020', sourcemap: false, reportCompressedSize: false },
  server: { proxy: { '/v1': server, '/app': { target: server, ws: true }, '/sb': server } },
});
