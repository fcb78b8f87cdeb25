// The live view and the debug console ride on Switchboard itself: the dashboard connects with
// our SDK to the internal system app (`GET /v1/console` says where) and subscribes to the
// app's private channels `private-live-<appId>` (event `live`, every second: connections now,
// messages in the last minute) and `private-console-<appId>` (event `console`: batches of the
// app's events), authorised by the control plane for the logged-in owner only.
import Switchboard, { type ConnectionState } from '@switchboard/js';
import { api, csrfToken, unwrap } from './api/client';

/** The `live` event's figures (cluster-wide). */
export interface LiveStats {
  connections: number;
  messages_last_minute: number;
  messages_today: number;
  time_ms: number;
}

/**
 * One console entry, as the edge reports it (`type`: `connection_opened`,
 * `connection_closed`, `subscribed`, `unsubscribed`, `api_publish`, `client_event`,
 * `webhook_sent`, `refusal`), stamped with when the dashboard received it.
 */
export interface ConsoleEvent {
  type: string;
  received_ms: number;
  time_ms?: number;
  channel?: string | null;
  event?: string;
  socket_id?: string | null;
  code?: number | null;
  status?: number | string | null;
  reason?: string;
  transport?: string;
  bytes?: number;
  [field: string]: unknown;
}

/** A `console` event: up to 50 of the app's events, and how many were dropped before it. */
interface ConsoleBatch {
  events?: unknown[];
  dropped?: number;
}

/** The SDK's connection state, then `listening` once the app's channel is subscribed. */
export type FeedState = ConnectionState | 'listening' | 'failed';

export interface FeedHandlers {
  onState?: (state: FeedState) => void;
  onLive?: (stats: LiveStats) => void;
  onConsole?: (events: ConsoleEvent[], dropped: number) => void;
}

/** Opens the feed of one app; returns the function that closes it. */
export function openFeed(appId: string, handlers: FeedHandlers): () => void {
  let client: Switchboard | undefined;
  let closed = false;
  (async () => {
    const info = await unwrap(api.GET('/v1/console'));
    if (closed) return;
    client = new Switchboard(info.key, {
      host: info.ws_host,
      port: info.ws_port,
      useTLS: info.tls,
      channelAuthorization: { endpoint: info.auth_endpoint, headers: { 'X-CSRF-Token': csrfToken() } },
    });
    client.connection.bind('state_change', ({ current }: { current: ConnectionState }) => handlers.onState?.(current));
    if (handlers.onLive) {
      client
        .subscribe(`${info.live_channel_prefix}${appId}`)
        .bind('pusher:subscription_succeeded', () => handlers.onState?.('listening'))
        .bind('live', (data: LiveStats) => handlers.onLive?.(data));
    }
    if (handlers.onConsole) {
      const channel = client.subscribe(`${info.console_channel_prefix}${appId}`);
      channel.bind('pusher:subscription_succeeded', () => handlers.onState?.('listening'));
      channel.bind('console', (batch: ConsoleBatch) => {
        const received_ms = Date.now();
        const events = (Array.isArray(batch?.events) ? batch.events : [])
          .filter((event): event is { type: string } => typeof event === 'object' && event !== null && typeof (event as { type?: unknown }).type === 'string')
          .map((event) => ({ ...event, received_ms }) as ConsoleEvent);
        handlers.onConsole?.(events, Number(batch?.dropped) || 0);
      });
    }
  })().catch(() => handlers.onState?.('failed'));
  return () => {
    closed = true;
    client?.disconnect();
  };
}
