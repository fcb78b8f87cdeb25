import type { Authorizer, ChannelAuthorizationData } from './auth';
import { safeParse } from './connection';
import { applyDeltaFrame, DELTA_EVENT, type DeltaBase, type DeltaFormat } from './delta';
import { Dispatcher, type EventCallback, type EventMetadata, type GlobalCallback } from './events';
import { PositionTracker, type ChannelPosition } from './position';
import type { Frame, SubscriptionParams } from './transports/types';

/** Event name → payload type, for typed `bind` and `trigger`. */
export type EventMap = Record<string, any>;

export interface Member<Info = any> {
  id: string;
  info: Info;
}

/** `switchboard:resume_failed` data: the missed events could not be replayed. */
export interface ResumeFailed {
  epoch: string | null;
  oldest_available: number | null;
  reason: 'epoch_changed' | 'outside_window' | 'too_many_to_replay' | 'unavailable' | string;
}

export interface SubscriptionError {
  type: string;
  error: string;
  status: number;
}

/** Events every channel may emit, besides the app's own. */
export interface ChannelEvents {
  'pusher:subscription_succeeded': any;
  'pusher:subscription_error': SubscriptionError;
  'pusher:member_added': Member;
  'pusher:member_removed': Member;
  'switchboard:resume_failed': ResumeFailed;
}

/** Per-subscription options. */
export interface SubscribeOptions {
  /**
   * Ask for delta updates: the edge may send an event as a delta against the channel's
   * previous event. Applied and verified here; any mismatch resubscribes from the last good
   * serial and gets full events.
   */
  delta?: DeltaFormat;
}

/** What a channel needs from its client. */
export interface ChannelHost {
  socketId(): string | null;
  send(frame: Frame): boolean;
  authorize: Authorizer;
}

/** A presence channel's members, as pusher-js exposes them. */
export class Members<Info = any> {
  members: Record<string, Info> = {};
  count = 0;
  myID: string | null = null;
  me: Member<Info> | null = null;

  get(id: string): Member<Info> | null {
    return Object.prototype.hasOwnProperty.call(this.members, id) ? { id, info: this.members[id] } : null;
  }

  each(callback: (member: Member<Info>) => void): void {
    for (const id of Object.keys(this.members)) callback({ id, info: this.members[id] });
  }

  /** @internal */
  _reset(presence: { hash?: Record<string, Info> } | undefined): void {
    this.members = { ...(presence && presence.hash) };
    this.count = Object.keys(this.members).length;
    this.me = this.myID === null ? null : this.get(this.myID);
  }

  /** @internal Returns the member when it is new. */
  _add(id: string, info: Info): Member<Info> | null {
    const isNew = !this.get(id);
    this.members[id] = info;
    if (isNew) this.count++;
    return isNew ? { id, info } : null;
  }

  /** @internal Returns the member when it was there. */
  _remove(id: string): Member<Info> | null {
    const member = this.get(id);
    if (member) {
      delete this.members[id];
      this.count--;
    }
    return member;
  }
}

/**
 * A channel. `bind` / `unbind` / `trigger` as in pusher-js, typed by `Events`; frames carry a
 * serial, and a frame at or below the last serial seen (same epoch) is a duplicate and dropped.
 */
export class Channel<Events extends EventMap = EventMap> {
  subscribed = false;
  subscriptionPending = false;
  /** Present on presence channels. */
  readonly members: Members;
  /** Presence channels: the app's STUN/TURN servers for this member (`RTCIceServer`s), as
   * the server announced them on subscribing; null when it announced none. */
  iceServers: any[] | null = null;
  private dispatcher = new Dispatcher();
  private tracker = new PositionTracker();
  private auth: (ChannelAuthorizationData & { socketId: string }) | null = null;
  private sentOn: string | null = null;
  private attemptOn: string | null = null;
  private cancelled = false;
  /** The last event delivered since the subscription was confirmed (delta channels only). */
  private base: DeltaBase | null = null;
  /** A delta could not be applied: deltas are dropped until the resubscribe is confirmed. */
  private resyncing = false;
  /** Deltas that could not be applied (each answered by a resubscribe). */
  deltaMismatches = 0;

  constructor(
    readonly name: string,
    private host: ChannelHost,
    private options: SubscribeOptions = {},
  ) {
    this.members = new Members();
  }

  /** @internal A later `subscribe(name, options)` may change the options. */
  _setOptions(options: SubscribeOptions | undefined): void {
    if (options && options.delta !== this.options.delta) {
      this.options = { ...options };
      this.attemptOn = null;
    }
  }

  /** The last serial and epoch seen: what the next subscribe resumes from. */
  get position(): ChannelPosition | null {
    return this.tracker.current;
  }

  bind<K extends keyof Events & string>(event: K, callback: (data: Events[K], metadata?: EventMetadata) => void): this;
  bind<K extends keyof ChannelEvents>(event: K, callback: (data: ChannelEvents[K], metadata?: EventMetadata) => void): this;
  bind(event: string, callback: EventCallback): this;
  bind(event: string, callback: EventCallback): this {
    this.dispatcher.bind(event, callback);
    return this;
  }

  unbind(event?: string, callback?: EventCallback<any>): this {
    this.dispatcher.unbind(event, callback);
    return this;
  }

  bind_global(callback: GlobalCallback): this {
    this.dispatcher.bind_global(callback);
    return this;
  }

  unbind_global(callback?: GlobalCallback): this {
    this.dispatcher.unbind_global(callback);
    return this;
  }

  unbind_all(): this {
    this.dispatcher.unbind().unbind_global();
    return this;
  }

  /** Sends a client event (`client-…`, private and presence channels); false if it could not be sent. */
  trigger<K extends keyof Events & string>(event: K, data?: Events[K]): boolean {
    if (event.indexOf('client-') !== 0) throw new Error(`event '${event}' does not start with 'client-'`);
    if (!this.subscribed) return false;
    return this.host.send({ event, channel: this.name, data });
  }

  /** Sends a client event to one member of this presence channel only (every connection of
   * `userId`, no one else; Switchboard's extension); false if it could not be sent. */
  triggerTo<K extends keyof Events & string>(userId: string, event: K, data?: Events[K]): boolean {
    if (event.indexOf('client-') !== 0) throw new Error(`event '${event}' does not start with 'client-'`);
    if (!this.subscribed) return false;
    return this.host.send({ event, channel: this.name, data, to: userId });
  }

  /** @internal What the HTTP carriers name on each request; null until a subscribe was sent. */
  _params(): SubscriptionParams | null {
    if (!this.sentOn || this.cancelled) return null;
    const params: SubscriptionParams = { channel: this.name };
    if (this.auth) {
      params.auth = this.auth.auth;
      if (this.auth.channel_data !== undefined) params.channel_data = this.auth.channel_data;
    }
    if (this.options.delta) params.delta = this.options.delta;
    return params;
  }

  /** @internal Subscribe on the current session (again), resuming from the last serial seen. */
  async _subscribe(): Promise<void> {
    const socketId = this.host.socketId();
    // Once per session: an HTTP carrier that continues its session keeps its subscriptions.
    if (!socketId || this.cancelled || this.attemptOn === socketId) return;
    this.attemptOn = socketId;
    this.subscribed = false;
    this.subscriptionPending = true;
    this.sentOn = null;
    const data: Record<string, unknown> = { channel: this.name };
    if (this.needsAuth()) {
      if (!this.auth || this.auth.socketId !== socketId) {
        try {
          this.auth = { ...(await this.host.authorize(socketId, this.name)), socketId };
        } catch (error: any) {
          if (this.host.socketId() !== socketId) return;
          this.subscriptionPending = false;
          this.emit('pusher:subscription_error', { type: 'AuthError', error: String(error && error.message), status: (error && error.status) || 0 });
          return;
        }
        // Reconnected while the auth was in flight: the new session subscribes on its own.
        if (this.host.socketId() !== socketId || this.cancelled) return;
      }
      data.auth = this.auth.auth;
      if (this.auth.channel_data !== undefined) data.channel_data = this.auth.channel_data;
      if (this.name.indexOf('presence-') === 0 && this.auth.channel_data) {
        this.members.myID = String(safeParse(this.auth.channel_data).user_id);
      }
    }
    const resume = this.tracker.resume();
    if (resume) data.resume = resume;
    if (this.options.delta) data.delta = this.options.delta;
    // The edge starts every subscription with a full event: no delta applies to an older base.
    this.base = null;
    if (this.host.send({ event: 'pusher:subscribe', data })) this.sentOn = socketId;
    else this.attemptOn = null;
  }

  /** @internal */
  _unsubscribe(): void {
    this.cancelled = true;
    if (this.sentOn) this.host.send({ event: 'pusher:unsubscribe', data: { channel: this.name } });
    this.subscribed = this.subscriptionPending = false;
    this.sentOn = this.attemptOn = null;
  }

  /** @internal The connection dropped: the next session subscribes again. */
  _disconnected(): void {
    this.subscribed = false;
    this.subscriptionPending = false;
  }

  /**
   * @internal A frame for this channel. Returns the frame as delivered (a delta rebuilt into
   * its event), or null for a delta that was dropped.
   */
  _handle(frame: Frame): Frame | null {
    if (frame.event === DELTA_EVENT) {
      const rebuilt = this.rebuild(frame);
      if (!rebuilt) return null;
      frame = rebuilt;
    }
    this.deliver(frame);
    return frame;
  }

  /** A delta's event, or null: a duplicate, one arriving while resyncing, or a mismatch. */
  private rebuild(frame: Frame): Frame | null {
    const seen = this.tracker.current;
    const duplicate = seen && seen.epoch === frame.epoch && typeof frame.serial === 'number' && frame.serial <= seen.serial;
    if (duplicate || this.resyncing) return null;
    const rebuilt = applyDeltaFrame(this.base, frame);
    if (rebuilt) return rebuilt;
    // A missed or wrong base: never deliver a guess; resume from the last good serial,
    // which the edge answers with full events.
    this.deltaMismatches++;
    this.resyncing = true;
    this.base = null;
    this.attemptOn = null;
    void this._subscribe();
    return null;
  }

  private deliver(frame: Frame): void {
    const data = typeof frame.data === 'string' ? safeParse(frame.data) : frame.data;
    switch (frame.event) {
      case 'pusher_internal:subscription_succeeded':
        this.subscribed = true;
        this.subscriptionPending = false;
        this.resyncing = false;
        this.base = null;
        this.tracker.subscribed(data && data.serial, data && data.epoch);
        if (this.name.indexOf('presence-') === 0) {
          this.iceServers = (data && data.ice_servers) || null;
          this.members._reset(data && data.presence);
          return this.emit('pusher:subscription_succeeded', this.members);
        }
        return this.emit('pusher:subscription_succeeded', data);
      case 'pusher:subscription_error':
        this.subscriptionPending = false;
        return this.emit(frame.event, data);
      case 'pusher_internal:member_added': {
        const member = this.members._add(String(data.user_id), data.user_info);
        return member ? this.emit('pusher:member_added', member) : undefined;
      }
      case 'pusher_internal:member_removed': {
        const member = this.members._remove(String(data.user_id));
        return member ? this.emit('pusher:member_removed', member) : undefined;
      }
    }
    if (!this.tracker.accept(frame.serial, frame.epoch)) return;
    if (this.options.delta && typeof frame.data === 'string' && typeof frame.serial === 'number' && typeof frame.epoch === 'string') {
      this.base = { serial: frame.serial, epoch: frame.epoch, data: frame.data };
    }
    const event = frame.event.indexOf('pusher_internal:') === 0 ? 'pusher:' + frame.event.slice(16) : frame.event;
    this.emit(event, data, frame.user_id !== undefined ? { user_id: frame.user_id } : undefined);
  }

  private needsAuth(): boolean {
    return this.name.indexOf('private-') === 0 || this.name.indexOf('presence-') === 0;
  }

  private emit(event: string, data?: any, metadata?: EventMetadata): void {
    this.dispatcher.emit(event, data, metadata);
  }
}
