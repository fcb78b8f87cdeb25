// The WebRTC demo, for development (`cargo xtask webrtc-demo`): runs `switchboard serve` with
// one demo app on 127.0.0.1:6001 and serves, on 127.0.0.1:8080, the demo page, the SDK's two
// bundles and the channel-auth endpoint a customer's server would provide (signed here with
// the demo app's secret, as the Pusher libraries sign). Open the page in two tabs with two
// names, call one from the other: a video call and a chat over a data channel.
import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const EDGE_PORT = Number(process.env.DEMO_EDGE_PORT || 6001);
const PAGE_PORT = Number(process.env.DEMO_PAGE_PORT || 8080);
const app = { id: 'webrtc-demo', key: randomBytes(10).toString('hex'), secret: randomBytes(16).toString('hex') };
const binary = process.env.SWITCHBOARD_BIN || path.join(ROOT, 'target/debug/switchboard');
for (const file of [binary, path.join(ROOT, 'sdk-js/dist/switchboard-webrtc.min.js')]) {
  if (!existsSync(file)) throw new Error(`${file} is missing: run \`cargo xtask webrtc-demo\``);
}

const edge = spawn(binary, ['serve', '--host', '127.0.0.1', '--port', String(EDGE_PORT), '--app', `${app.id}:${app.key}:${app.secret}`], { stdio: 'inherit', env: { ...process.env, SWITCHBOARD_DRAIN_DELAY: '0' } });
edge.on('exit', (code) => process.exit(code ?? 1));
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => edge.kill('SIGTERM'));

/** A presence channel signature, as pusher's server libraries make it. */
function authorize(socketId, channel, user) {
  const channelData = JSON.stringify({ user_id: user, user_info: { name: user } });
  const signature = createHmac('sha256', app.secret).update(`${socketId}:${channel}:${channelData}`).digest('hex');
  return { auth: `${app.key}:${signature}`, channel_data: channelData };
}

const files = {
  '/': ['text/html', path.join(HERE, 'webrtc.html')],
  '/switchboard.min.js': ['text/javascript', path.join(ROOT, 'sdk-js/dist/switchboard.min.js')],
  '/switchboard-webrtc.min.js': ['text/javascript', path.join(ROOT, 'sdk-js/dist/switchboard-webrtc.min.js')],
};
http
  .createServer((req, res) => {
    const url = new URL(req.url, 'http://demo');
    const file = files[url.pathname];
    if (req.method === 'GET' && url.pathname === '/config.json') {
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ key: app.key, port: EDGE_PORT }));
    } else if (req.method === 'GET' && file) {
      res.writeHead(200, { 'Content-Type': file[0] }).end(readFileSync(file[1]));
    } else if (req.method === 'POST' && url.pathname === '/auth') {
      let body = '';
      req.on('data', (chunk) => (body = (body + chunk).slice(0, 4096)));
      req.on('end', () => {
        const form = new URLSearchParams(body);
        const user = (url.searchParams.get('user') || '').slice(0, 64);
        const channel = form.get('channel_name') || '';
        if (!user || !channel.startsWith('presence-')) return res.writeHead(403).end();
        res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(authorize(form.get('socket_id'), channel, user)));
      });
    } else {
      res.writeHead(404).end();
    }
  })
  .listen(PAGE_PORT, '127.0.0.1', () => console.log(`WebRTC demo: open http://127.0.0.1:${PAGE_PORT}/ in two tabs`));
