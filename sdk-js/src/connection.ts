import { backoffDelay, closeAction, type BackoffOptions } from './backoff';
import { Dispatcher } from './events';
import { forgetTransport, rememberTransport, rememberedTransport } from './storage';
import { longPollingTransport, pollingTransport, sseTransport } from './transports/http';
import type { CarrierContext, CloseInfo, Frame, SubscriptionParams, Transport, TransportFactory, TransportName } from './transports/types';
import { webSocketTransport } from './transports/websocket';

export type ConnectionState = 'initialized' | 'connecting' | 'connected' | 'unavailable' | 'disconnected';

export const TRANSPORTS: Record<TransportName, TransportFactory> = {
  ws: webSocketTransport,
  sse: sseTransport,
  long_polling: longPollingTransport,
  polling: pollingTransport,
};

export interface ConnectionConfig {
  wsUrl: string;
  httpBase: string;
  transports: TransportName[];
  backoff: BackoffOptions;
  /** How long a carrier may take to deliver `connection_established` before the next is tried. */
  connectTimeoutMs: number;
  /** Silence after which we ping (the server's `activity_timeout` when lower). */
  activityTimeoutMs: number;
  pongTimeoutMs: number;
  pollingIntervalMs: number;
  /** How long a working transport is remembered (0: not at all). */
  rememberMs: number;
}

export interface ConnectionHandlers {
  /** A channel-level or unknown frame. */
  frame(frame: Frame): void;
  /** Connected; `newSession` when the socket id changed, so every channel must subscribe again. */
  connected(newSession: boolean): void;
  /** Subscriptions the HTTP carriers carry on each downstream request. */
  subs(): SubscriptionParams[];
}

/**
 * The connection: probes transports in order (starting from the one remembered), keeps one
 * carrier up, pings on silence, and reconnects after a drop as the close code asks.
 * Emits `state_change` ({previous, current}), each state's name, `connected`, `error` and
 * `message` (every frame), as pusher-js's connection does.
 */
export class Connection extends Dispatcher {
  state: ConnectionState = 'initialized';
  socket_id: string | null = null;
  private carrier: Transport | null = null;
  private index = 0;
  private established = false;
  private connectedAt = 0;
  private attempt = 0;
  private stopped = true;
  private context: CarrierContext;
  private timers: Record<'retry' | 'connect' | 'activity' | 'pong', ReturnType<typeof setTimeout> | undefined> = {
    retry: undefined,
    connect: undefined,
    activity: undefined,
    pong: undefined,
  };
  private activityMs: number;

  constructor(
    private config: ConnectionConfig,
    private handlers: ConnectionHandlers,
  ) {
    super();
    this.activityMs = config.activityTimeoutMs;
    this.context = {
      wsUrl: config.wsUrl,
      httpBase: config.httpBase,
      subs: () => handlers.subs(),
      pollingIntervalMs: config.pollingIntervalMs,
    };
  }

  /** The carrier in use (`ws`, `sse`, `long_polling`, `polling`), null while none is up. */
  get transport(): TransportName | null {
    return this.carrier && this.established ? this.carrier.name : null;
  }

  connect(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.attempt = 0;
    this.setState('connecting');
    this.open(this.startIndex());
  }

  disconnect(): void {
    this.stopped = true;
    this.closeCarrier();
    this.clear('retry');
    this.context.session = this.context.cursor = undefined;
    this.socket_id = null;
    this.setState('disconnected');
  }

  /** Sends a frame on the current carrier; false when not connected (as pusher-js). */
  send(frame: Frame): boolean {
    return !!this.carrier && this.established && this.carrier.send(frame);
  }

  private startIndex(): number {
    const remembered = this.config.rememberMs ? rememberedTransport(this.config.wsUrl) : null;
    const index = remembered ? this.config.transports.indexOf(remembered as TransportName) : -1;
    return index < 0 ? 0 : index;
  }

  /** Opens the first transport at or after `index` that this environment supports. */
  private open(index: number): void {
    this.clear('retry');
    const names = this.config.transports;
    for (; index < names.length; index++) {
      const factory = TRANSPORTS[names[index]];
      if (!factory) continue;
      let carrier: Transport | null = null;
      const resumingSession = this.context.session;
      const hooks = {
        onopen: () => {
          // An HTTP carrier reopened on a session the server still holds: the session goes on.
          if (carrier === this.carrier && resumingSession && this.context.session === resumingSession && carrier!.name !== 'ws') {
            this.establish(resumingSession);
          }
        },
        onframe: (frame: Frame) => carrier === this.carrier && this.receive(frame),
        onclose: (info: CloseInfo) => carrier === this.carrier && this.dropped(info),
      };
      this.established = false;
      // A WebSocket always starts a new session; the HTTP carriers name the one they continue.
      if (names[index] === 'ws') this.context.session = this.context.cursor = undefined;
      carrier = factory(this.context, hooks);
      if (!carrier) continue;
      this.carrier = carrier;
      this.index = index;
      this.timers.connect = setTimeout(() => {
        this.closeCarrier();
        this.dropped({ reason: 'connect timeout' });
      }, this.config.connectTimeoutMs);
      return;
    }
    // Every transport failed: forget what was remembered, wait, then probe from the top again.
    forgetTransport(this.config.wsUrl);
    this.setState('unavailable');
    this.retry(0, backoffDelay(this.attempt++, this.config.backoff));
  }

  private receive(frame: Frame): void {
    this.clear('pong');
    this.armActivity();
    const data = typeof frame.data === 'string' ? safeParse(frame.data) : frame.data;
    switch (frame.event) {
      case 'pusher:connection_established':
        if (data && typeof data.activity_timeout === 'number') {
          this.activityMs = Math.min(this.config.activityTimeoutMs, data.activity_timeout * 1000);
        }
        this.context.session = data && data.socket_id;
        this.establish(this.context.session!);
        return;
      case 'pusher:ping':
        this.send({ event: 'pusher:pong', data: {} });
        return;
      case 'pusher:pong':
        return;
      case 'pusher:error':
        this.emit('error', { type: 'PusherError', data });
        // A refusal or a request to back off or come back: act on it as on the close code.
        if (data && typeof data.code === 'number' && data.code >= 4000 && data.code < 4300) {
          this.closeCarrier();
          this.dropped({ code: data.code, reason: data.message });
        }
        return;
    }
    this.emit('message', { ...frame, data });
    this.handlers.frame(frame);
  }

  private establish(socketId: string): void {
    const newSession = socketId !== this.socket_id;
    this.clear('connect');
    this.established = true;
    this.connectedAt = Date.now();
    this.socket_id = socketId;
    if (this.config.rememberMs) rememberTransport(this.config.wsUrl, this.carrier!.name, this.config.rememberMs);
    const wasConnected = this.state === 'connected';
    this.setState('connected');
    if (!wasConnected) this.emit('connected');
    this.handlers.connected(newSession);
  }

  /** The carrier ended, or failed to start (then the next transport is tried). */
  private dropped(info: CloseInfo): void {
    this.carrier = null;
    this.clear('connect');
    this.clear('activity');
    this.clear('pong');
    if (this.stopped) return;
    const wasEstablished = this.established;
    this.established = false;
    if (info.reopen) return this.open(this.index);
    const action = closeAction(info.code);
    if (action === 'stop') {
      this.stopped = true;
      this.context.session = this.context.cursor = undefined;
      this.socket_id = null;
      this.emit('error', { type: 'PusherError', data: { code: info.code, message: info.reason } });
      this.setState('disconnected');
      return;
    }
    if (!wasEstablished && action === 'reconnect') {
      // A probe failed (or timed out): the next transport, without waiting.
      return this.open(this.index + 1);
    }
    if (this.state === 'connected') this.setState('connecting');
    if (wasEstablished && Date.now() - this.connectedAt > 5000) this.attempt = 0;
    const delay =
      action === 'reconnect_now' || (action === 'reconnect' && this.attempt === 0)
        ? 0
        : backoffDelay(this.attempt, this.config.backoff);
    this.attempt++;
    this.retry(this.index, delay);
  }

  private retry(index: number, delay: number): void {
    this.clear('retry');
    this.timers.retry = setTimeout(() => this.open(index), delay);
  }

  private armActivity(): void {
    this.clear('activity');
    if (!this.carrier || this.carrier.name !== 'ws') return;
    this.timers.activity = setTimeout(() => {
      this.send({ event: 'pusher:ping', data: {} });
      this.timers.pong = setTimeout(() => {
        // No answer: the carrier is dead even if the socket does not know it yet.
        this.closeCarrier();
        this.dropped({ code: 4201, reason: 'pong timeout' });
      }, this.config.pongTimeoutMs);
    }, this.activityMs);
  }

  private closeCarrier(): void {
    const carrier = this.carrier;
    this.carrier = null;
    for (const name of ['connect', 'activity', 'pong'] as const) this.clear(name);
    if (carrier) carrier.close();
  }

  private clear(name: keyof Connection['timers']): void {
    clearTimeout(this.timers[name]);
    this.timers[name] = undefined;
  }

  private setState(state: ConnectionState): void {
    const previous = this.state;
    if (previous === state) return;
    this.state = state;
    this.emit('state_change', { previous, current: state });
    this.emit(state);
  }
}

export function safeParse(text: string): any {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
