// Vite builds the dashboard into dist/, which the control plane embeds and serves at `/`.
// `npm run dev` proxies the server's paths to a local `switchboard serve` (SWITCHBOARD_URL).
import { defineConfig } from 'vite';
import preact from '@preact/preset-vite';

const server = process.env.SWITCHBOARD_URL || 'http://127.0.0.1:6001';

export default defineConfig({
  plugins: [preact()],
  build: { target: 'es2020', sourcemap: false, reportCompressedSize: false },
  server: { proxy: { '/v1': server, '/app': { target: server, ws: true }, '/sb': server } },
});
