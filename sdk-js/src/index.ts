import { authorizer, type ChannelAuthorizationOptions } from './auth';
import { DEFAULT_BACKOFF, type BackoffOptions } from './backoff';
import { Channel, type EventMap, type SubscribeOptions } from './channel';
import { DELTA_EVENT } from './delta';
import { Connection, type ConnectionState } from './connection';
import { Dispatcher, type EventCallback, type GlobalCallback } from './events';
import type { Frame, SubscriptionParams, TransportName } from './transports/types';

export { backoffDelay, closeAction, DEFAULT_BACKOFF } from './backoff';
export type { BackoffOptions, CloseAction } from './backoff';
export { PositionTracker } from './position';
export type { ChannelPosition } from './position';
export { Channel, Members } from './channel';
export type { ChannelEvents, EventMap, Member, ResumeFailed, SubscribeOptions, SubscriptionError } from './channel';
export type { DeltaFormat } from './delta';
export { Connection } from './connection';
export type { ConnectionState } from './connection';
export type { EventCallback, EventMetadata, GlobalCallback } from './events';
export type { ChannelAuthorizationCallback, ChannelAuthorizationData, ChannelAuthorizationOptions } from './auth';
export type { Frame, TransportName } from './transports/types';

export const VERSION = '0.1.0';

export interface Options {
  /** The edge's host name (pusher-js's `wsHost` is accepted too). */
  host?: string;
  /** The edge's port; default 443 with TLS, 80 without (pusher-js's `wsPort` / `wssPort` accepted). */
  port?: number;
  /** wss:// and https:// (pusher-js's `forceTLS` accepted); default true, false for `http:` pages. */
  useTLS?: boolean;
  wsHost?: string;
  wsPort?: number;
  wssPort?: number;
  forceTLS?: boolean;
  /** Ignored: accepted so that pusher-js options work unchanged. */
  cluster?: string;
  /** As pusher-js: a POST endpoint for private and presence channel signatures. */
  authEndpoint?: string;
  auth?: { headers?: Record<string, string>; params?: Record<string, string> };
  channelAuthorization?: ChannelAuthorizationOptions;
  /** Tried in this order; default `['ws', 'sse', 'long_polling', 'polling']`. */
  transports?: TransportName[];
  /** pusher-js's option, mapped: `ws`/`wss` → ws, `xhr_streaming` → sse, `xhr_polling` → long_polling and polling. */
  enabledTransports?: string[];
  /** Reconnect backoff: `{baseMs, maxMs}` (default 1 s, 30 s, jittered). */
  backoff?: BackoffOptions;
  /** Ms of silence before a ping (lowered to the server's `activity_timeout`); default 120000. */
  activityTimeout?: number;
  /** Ms to wait for the pong; default 30000. */
  pongTimeout?: number;
  /** Ms a transport may take to connect before the next is tried; default 8000. */
  connectTimeout?: number;
  /** Ms between requests of the `polling` transport; default 2000. */
  pollingInterval?: number;
  /** Ms a working transport is remembered in localStorage; 0 disables; default 30 minutes. */
  rememberTransport?: number;
  /** Connect in the constructor, as pusher-js does; default true. */
  autoConnect?: boolean;
}

const ALL_TRANSPORTS: TransportName[] = ['ws', 'sse', 'long_polling', 'polling'];

/**
 * The client: `new Switchboard(key, options)` in place of `new Pusher(key, options)`.
 * Subscriptions survive reconnects; each resubscribe resumes from the last serial seen.
 */
export class Switchboard {
  static readonly VERSION = VERSION;
  readonly key: string;
  readonly connection: Connection;
  private channels = new Map<string, Channel<any>>();
  private global = new Dispatcher();

  constructor(key: string, options: Options = {}) {
    this.key = key;
    const page = (globalThis as any).location;
    const useTLS = options.useTLS ?? options.forceTLS ?? !(page && page.protocol === 'http:');
    const host = options.host || options.wsHost || (page && page.hostname) || 'localhost';
    const port = options.port || (useTLS ? options.wssPort : options.wsPort) || (useTLS ? 443 : 80);
    const authorization: ChannelAuthorizationOptions = options.channelAuthorization || {
      endpoint: options.authEndpoint,
      headers: options.auth && options.auth.headers,
      params: options.auth && options.auth.params,
    };
    let transports = options.transports || ALL_TRANSPORTS;
    if (!options.transports && options.enabledTransports) {
      // pusher-js names: ws/wss, xhr_streaming (our SSE), xhr_polling (our long polling and polling).
      const wanted = options.enabledTransports.join(' ');
      transports = ALL_TRANSPORTS.filter((name) =>
        name === 'ws' ? /\bwss?\b/.test(wanted) : name === 'sse' ? /xhr_streaming/.test(wanted) : /xhr_polling/.test(wanted),
      );
    }
    const authorize = authorizer(authorization);
    this.connection = new Connection(
      {
        wsUrl: `${useTLS ? 'wss' : 'ws'}://${host}:${port}/app/${encodeURIComponent(key)}?protocol=7&client=switchboard-js&version=${VERSION}`,
        httpBase: `${useTLS ? 'https' : 'http'}://${host}:${port}/sb/app/${encodeURIComponent(key)}`,
        transports,
        backoff: options.backoff || DEFAULT_BACKOFF,
        connectTimeoutMs: options.connectTimeout ?? 8000,
        activityTimeoutMs: options.activityTimeout ?? 120000,
        pongTimeoutMs: options.pongTimeout ?? 30000,
        pollingIntervalMs: options.pollingInterval ?? 2000,
        rememberMs: options.rememberTransport ?? 30 * 60 * 1000,
      },
      {
        frame: (frame) => this.route(frame),
        connected: (newSession) => {
          for (const channel of this.channels.values()) {
            if (newSession) channel._disconnected();
            void channel._subscribe();
          }
        },
        subs: () => {
          const subs: SubscriptionParams[] = [];
          for (const channel of this.channels.values()) {
            const params = channel._params();
            if (params) subs.push(params);
          }
          return subs;
        },
      },
    );
    this.host = {
      socketId: () => (this.connection.state === 'connected' ? this.connection.socket_id : null),
      send: (frame: Frame) => this.connection.send(frame),
      authorize,
    };
    if (options.autoConnect !== false) this.connect();
  }

  private host: ConstructorParameters<typeof Channel>[1];

  connect(): void {
    this.connection.connect();
  }

  /** Closes the connection and stops reconnecting; `connect()` starts again. */
  disconnect(): void {
    for (const channel of this.channels.values()) channel._disconnected();
    this.connection.disconnect();
  }

  /**
   * Subscribes (or returns the existing subscription); typed by the channel's event map.
   * `{ delta: 'fossil' }` asks for delta updates (see the README).
   */
  subscribe<Events extends EventMap = EventMap>(name: string, options?: SubscribeOptions): Channel<Events> {
    let channel = this.channels.get(name);
    if (!channel) {
      channel = new Channel<Events>(name, this.host, options);
      this.channels.set(name, channel);
    } else {
      channel._setOptions(options);
    }
    void channel._subscribe();
    return channel as Channel<Events>;
  }

  unsubscribe(name: string): void {
    const channel = this.channels.get(name);
    if (!channel) return;
    this.channels.delete(name);
    channel._unsubscribe();
  }

  channel<Events extends EventMap = EventMap>(name: string): Channel<Events> | undefined {
    return this.channels.get(name) as Channel<Events> | undefined;
  }

  allChannels(): Channel[] {
    return Array.from(this.channels.values());
  }

  /** Binds `event` on every channel (and connection-level events such as `pusher:error`). */
  bind(event: string, callback: EventCallback): this {
    this.global.bind(event, callback);
    return this;
  }

  unbind(event?: string, callback?: EventCallback): this {
    this.global.unbind(event, callback);
    return this;
  }

  bind_global(callback: GlobalCallback): this {
    this.global.bind_global(callback);
    return this;
  }

  unbind_global(callback?: GlobalCallback): this {
    this.global.unbind_global(callback);
    return this;
  }

  private route(received: Frame): void {
    const channel = received.channel ? this.channels.get(received.channel) : undefined;
    const handled = channel ? channel._handle(received) : null;
    // A delta reaches global bindings as the event it rebuilds, or not at all.
    const frame = received.event === DELTA_EVENT ? handled : received;
    if (!frame) return;
    if (frame.event.indexOf('pusher_internal:') !== 0) {
      const data = typeof frame.data === 'string' ? safeParseData(frame.data) : frame.data;
      this.global.emit(frame.event, data, frame.user_id !== undefined ? { user_id: frame.user_id } : undefined);
    }
  }
}

function safeParseData(text: string): any {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export type { ConnectionState as State };
export default Switchboard;
