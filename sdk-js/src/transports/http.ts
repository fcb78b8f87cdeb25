import type { CarrierContext, CloseInfo, Frame, Transport, TransportHooks, TransportName } from './types';
import { parseFrame } from './types';

/**
 * The HTTP carriers (`/sb/app/{key}/…`). Every downstream request names the session, its
 * subscriptions (with their auth) and the cursor, so any edge can serve it; upstream frames
 * are POSTed to `send` as a JSON array, with the session and its latest cursor (which proves
 * owning the session). Refusals (unknown key…) arrive as a `pusher:error` frame.
 */
function downstreamUrl(context: CarrierContext, path: string, extra = ''): string {
  let query = 'subs=' + encodeURIComponent(JSON.stringify(context.subs()));
  if (context.session) query += '&session=' + encodeURIComponent(context.session);
  if (context.cursor) query += '&cursor=' + encodeURIComponent(context.cursor);
  return `${context.httpBase}/${path}?${query}${extra}`;
}

/** Shared by the HTTP carriers: an upstream queue flushed as one POST per turn of the event loop. */
class HttpCarrier implements Transport {
  closed = false;
  private queue: Frame[] = [];
  private flushing = false;

  constructor(
    readonly name: TransportName,
    protected context: CarrierContext,
    protected hooks: TransportHooks,
    private onClose: () => void,
  ) {}

  send(frame: Frame): boolean {
    if (this.closed) return false;
    this.queue.push(frame);
    this.flush();
    return true;
  }

  /** Sends what is queued once the session and a cursor (the proof of owning it) are known;
   * one request in flight at a time keeps order. */
  flush(): void {
    const { session, cursor } = this.context;
    if (this.flushing || this.closed || !session || !cursor || !this.queue.length) return;
    this.flushing = true;
    Promise.resolve().then(async () => {
      const batch = this.queue;
      this.queue = [];
      try {
        const response = await fetch(
          `${this.context.httpBase}/send?session=${encodeURIComponent(session)}&cursor=${encodeURIComponent(cursor)}`,
          { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(batch) },
        );
        // The server forgot the session: reopen downstream, which rebuilds it from subs + cursor.
        if (response.status === 404) return this.finish({ reopen: true });
        if (!response.ok) return this.finish({ reason: `send answered ${response.status}` });
      } catch {
        return this.finish({ reason: 'send failed' });
      } finally {
        this.flushing = false;
      }
      this.flush();
    });
  }

  finish(info: CloseInfo): void {
    if (this.closed) return;
    this.close();
    this.hooks.onclose(info);
  }

  close(): void {
    this.closed = true;
    this.onClose();
  }
}

/** Server-Sent Events downstream (`id:` is the cursor). With `ids=delta` the server sends a
 * full cursor now and then and, after it, only its delta (`~…`): the cursor is the last full
 * one followed by the latest delta. */
export function sseTransport(context: CarrierContext, hooks: TransportHooks): Transport | null {
  const EventSourceClass: typeof EventSource | undefined = (globalThis as any).EventSource;
  if (typeof EventSourceClass !== 'function' || typeof fetch !== 'function') return null;
  const source = new EventSourceClass(downstreamUrl(context, 'sse', '&ids=delta'));
  let full = '';
  const carrier = new HttpCarrier('sse', context, hooks, () => source.close());
  source.onopen = () => {
    hooks.onopen();
    carrier.flush();
  };
  source.onmessage = (message) => {
    if (carrier.closed) return;
    const id = message.lastEventId || '';
    if (id.startsWith('~')) {
      if (full) context.cursor = full + id;
    } else if (id) {
      full = id.split('~')[0];
      context.cursor = id;
    }
    const frame = parseFrame(message.data);
    if (frame) hooks.onframe(frame);
    // connection_established names the session: upstream can start.
    carrier.flush();
  };
  // EventSource would reconnect to its first URL, with the subscriptions of that moment; the
  // connection reopens it instead, with the current subscriptions and cursor.
  source.onerror = () => carrier.finish({ reason: 'event stream ended' });
  return carrier;
}

/** Long polling (`wait` seconds held by the server) or polling (`wait=0`, every `pollingIntervalMs`). */
function pollTransport(name: TransportName, waitSeconds: number) {
  return (context: CarrierContext, hooks: TransportHooks): Transport | null => {
    if (typeof fetch !== 'function' || typeof AbortController !== 'function') return null;
    const abort = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const carrier = new HttpCarrier(name, context, hooks, () => {
      clearTimeout(timer);
      abort.abort();
    });
    let opened = false;
    const poll = async () => {
      // The first request is answered at once, so the carrier is known to work without waiting.
      const wait = opened ? waitSeconds : 0;
      let body: any;
      try {
        const response = await fetch(downstreamUrl(context, 'poll', `&wait=${wait}`), {
          signal: abort.signal,
          cache: 'no-store',
        });
        if (response.status !== 200) return carrier.finish({ reason: `poll answered ${response.status}` });
        body = await response.json();
      } catch {
        return carrier.finish({ reason: 'poll failed' });
      }
      if (carrier.closed) return;
      if (typeof body.session === 'string') context.session = body.session;
      if (typeof body.cursor === 'string' && body.cursor) context.cursor = body.cursor;
      if (!opened) {
        opened = true;
        hooks.onopen();
      }
      for (const raw of Array.isArray(body.frames) ? body.frames : []) {
        const frame = parseFrame(raw);
        if (carrier.closed) return;
        if (frame) hooks.onframe(frame);
      }
      carrier.flush();
      if (carrier.closed) return;
      if (waitSeconds > 0) poll();
      else timer = setTimeout(poll, context.pollingIntervalMs);
    };
    poll();
    return carrier;
  };
}

export const longPollingTransport = pollTransport('long_polling', 25);
export const pollingTransport = pollTransport('polling', 0);
