// The console's "publish a test event": the same signed request Pusher's server libraries
// send (`POST /apps/{id}/events`, HMAC-SHA256 over method, path and sorted query with the
// body's MD5), made in the browser with a key's secret the owner revealed.
import SparkMD5 from 'spark-md5';

export interface TestEvent {
  channel: string;
  name: string;
  data: string;
}

async function hmacHex(secret: string, text: string): Promise<string> {
  const encoder = new TextEncoder();
  const key = await crypto.subtle.importKey('raw', encoder.encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  const signature = await crypto.subtle.sign('HMAC', key, encoder.encode(text));
  return [...new Uint8Array(signature)].map((byte) => byte.toString(16).padStart(2, '0')).join('');
}

/** Publishes one event on the app's edge (this origin); resolves, or throws the server's reason. */
export async function publishTestEvent(appId: string, key: string, secret: string, event: TestEvent): Promise<void> {
  const body = JSON.stringify({ name: event.name, channels: [event.channel], data: event.data });
  const path = `/apps/${encodeURIComponent(appId)}/events`;
  const params = new URLSearchParams({
    auth_key: key,
    auth_timestamp: String(Math.floor(Date.now() / 1000)),
    auth_version: '1.0',
    body_md5: SparkMD5.hash(body),
  });
  params.sort();
  const query = decodeURIComponent(params.toString());
  params.set('auth_signature', await hmacHex(secret, `POST\n${path}\n${query}`));
  const response = await fetch(`${path}?${params}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
  if (!response.ok) {
    const text = await response.text();
    let reason = text;
    try {
      reason = JSON.parse(text).error ?? text;
    } catch {
      // Not JSON: the text as it came.
    }
    throw new Error(`The edge refused the event (${response.status}): ${reason || response.statusText}`);
  }
}
