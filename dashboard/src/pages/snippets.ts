// Ready-to-paste code with one app's values, for our SDK, pusher-js and the `pusher` server
// libraries (Node, Python). Pure: the tests of the page read what this returns.

export interface Endpoint {
  host: string;
  port: number;
  useTLS: boolean;
}

export interface Snippet {
  id: string;
  label: string;
  code: string;
}

export function snippets({ appId, key, secret, endpoint }: { appId: string; key: string; secret: string; endpoint: Endpoint }): Snippet[] {
  const { host, port, useTLS } = endpoint;
  const q = JSON.stringify;
  const scheme = useTLS ? 'https' : 'http';
  return [
    {
      id: 'switchboard',
      label: 'Switchboard JS',
      code: `import Switchboard from '@switchboard/js';

const client = new Switchboard(${q(key)}, { host: ${q(host)}, port: ${port}, useTLS: ${useTLS} });
client.subscribe('my-channel').bind('my-event', (data) => console.log(data));`,
    },
    {
      id: 'pusher-js',
      label: 'pusher-js',
      code: `import Pusher from 'pusher-js';

const pusher = new Pusher(${q(key)}, {
  cluster: 'mt1', // required by pusher-js, unused here
  wsHost: ${q(host)}, wsPort: ${port}, wssPort: ${port},
  httpHost: ${q(host)}, httpPort: ${port}, httpsPort: ${port},
  forceTLS: ${useTLS}, enabledTransports: ['ws', 'wss'],
});
pusher.subscribe('my-channel').bind('my-event', (data) => console.log(data));`,
    },
    {
      id: 'node',
      label: 'Node (pusher)',
      code: `const Pusher = require('pusher');

const pusher = new Pusher({
  appId: ${q(appId)}, key: ${q(key)}, secret: ${q(secret)},
  host: ${q(host)}, port: ${q(String(port))}, useTLS: ${useTLS},
});
await pusher.trigger('my-channel', 'my-event', { message: 'hello' });`,
    },
    {
      id: 'python',
      label: 'Python (pusher)',
      code: `import pusher

client = pusher.Pusher(
    app_id=${q(appId)}, key=${q(key)}, secret=${q(secret)},
    host=${q(host)}, port=${port}, ssl=${useTLS ? 'True' : 'False'},
)
client.trigger('my-channel', 'my-event', {'message': 'hello'})  # via ${scheme}://${host}:${port}`,
    },
  ];
}
