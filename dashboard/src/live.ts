// The live view and the debug console ride on Switchboard itself: the dashboard connects with
// our SDK to the internal system app (`GET /v1/console` names its key) and subscribes to the
// app's private channels `private-live-<appId>` (connections now, messages this minute) and
// `private-console-<appId>` (the event stream), authorised by `POST /v1/console/auth` for the
// logged-in owner only. Both endpoints arrive with issue 10's live feed (api/pending.ts).
import Switchboard, { type ConnectionState } from '@switchboard/js';
import { csrfToken, serverHasPath } from './api/client';
import { call, type ConsoleConnection, PENDING } from './api/pending';

export interface LiveStats {
  connections: number;
  messages_this_minute: number;
}

/** One console entry: the event's name is its type (`connection_opened`, `api_message`, …). */
export interface ConsoleEvent {
  type: string;
  time: string;
  channel?: string;
  event?: string;
  socket_id?: string;
  code?: number;
  reason?: string;
  data?: unknown;
}

export interface FeedHandlers {
  onState?: (state: ConnectionState | 'not-available' | 'failed') => void;
  onLive?: (stats: LiveStats) => void;
  onConsole?: (event: ConsoleEvent) => void;
}

/** Opens the feed of one app; returns the function that closes it. */
export function openFeed(appId: string, handlers: FeedHandlers): () => void {
  let client: Switchboard | undefined;
  let closed = false;
  (async () => {
    if (!(await serverHasPath(PENDING.console))) return handlers.onState?.('not-available');
    const { key } = await call<ConsoleConnection>('GET', PENDING.console);
    if (closed) return;
    const useTLS = location.protocol === 'https:';
    client = new Switchboard(key, {
      host: location.hostname,
      port: Number(location.port) || (useTLS ? 443 : 80),
      useTLS,
      channelAuthorization: { endpoint: PENDING.consoleAuth, headers: { 'X-CSRF-Token': csrfToken() } },
    });
    client.connection.bind('state_change', ({ current }: { current: ConnectionState }) => handlers.onState?.(current));
    if (handlers.onLive) {
      client.subscribe(`private-live-${appId}`).bind_global((event, data) => {
        if (!event.startsWith('pusher:') && typeof data === 'object' && data) handlers.onLive?.(data as LiveStats);
      });
    }
    if (handlers.onConsole) {
      client.subscribe(`private-console-${appId}`).bind_global((event, data) => {
        if (event.startsWith('pusher:') || event.startsWith('switchboard:')) return;
        const entry: Partial<ConsoleEvent> = typeof data === 'object' && data ? data : { data };
        handlers.onConsole?.({ time: new Date().toISOString(), ...entry, type: entry.type ?? event });
      });
    }
  })().catch(() => handlers.onState?.('failed'));
  return () => {
    closed = true;
    client?.disconnect();
  };
}
