/**
 * WebRTC over a Switchboard presence channel: the members present are the peers one can call;
 * offers, answers and trickled ICE candidates travel as client events addressed to one member
 * (`Channel.triggerTo`: the server delivers them to that member's connections only, with
 * serials, so they are replayed after a reconnect). STUN/TURN servers come from the app's
 * settings, announced with the presence subscription (`Channel.iceServers`).
 *
 * A separate entry point (`@switchboard/js/webrtc`), so the core bundle carries none of it.
 */
import type { Channel, Member } from '../channel';
import { Dispatcher } from '../events';
import { Call } from './call';
import { Signaller, type Signal } from './signaller';

export { Call } from './call';
export type { CallEvents, EndReason } from './call';
export { Signaller } from './signaller';
export type { Signal } from './signaller';

export interface WebRTCOptions {
  /** The client event carrying signals; default `client-webrtc-signal`. */
  event?: string;
  /** A data channel both sides open on every call (negotiated, id 0), e.g. `'chat'`. */
  dataChannel?: string;
  /** Merged over `{ iceServers: channel.iceServers }`. */
  rtcConfiguration?: RTCConfiguration;
  /** Signals sent per second at most; default 8, under the plan's client-event rate. */
  signalsPerSecond?: number;
}

export interface WebRTCEvents {
  /** A peer calls: `call.answer(stream)` or `call.hangUp()`. */
  incoming: Call;
  /** The members one can call changed. */
  peers: Member[];
}

/** Calls between the members of one presence channel; at most one call per peer. */
export class WebRTC {
  private events = new Dispatcher();
  private active = new Map<string, Call>();
  private signaller: Signaller;
  private event: string;

  constructor(
    readonly channel: Channel,
    private options: WebRTCOptions = {},
  ) {
    if (channel.name.indexOf('presence-') !== 0) throw new Error('WebRTC needs a presence channel');
    this.event = options.event || 'client-webrtc-signal';
    this.signaller = new Signaller(channel, this.event, options.signalsPerSecond || 8);
    channel.bind(this.event, (signal: Signal, metadata?: { user_id?: string }) => {
      if (metadata && metadata.user_id !== undefined) this.onSignal(String(metadata.user_id), signal);
    });
    const peersChanged = () => this.events.emit('peers', this.peers());
    channel.bind('pusher:subscription_succeeded', peersChanged);
    channel.bind('pusher:member_added', peersChanged);
    channel.bind('pusher:member_removed', peersChanged);
  }

  /** This member's user id on the channel. */
  get me(): string | null {
    return this.channel.members.myID;
  }

  /** The other members present, whom one can call. */
  peers(): Member[] {
    const peers: Member[] = [];
    this.channel.members.each((member) => {
      if (member.id !== this.me) peers.push(member);
    });
    return peers;
  }

  /** Calls `userId`, sending `stream`'s tracks; the call that already exists with them, if any. */
  call(userId: string, stream?: MediaStream): Call {
    const existing = this.active.get(userId);
    if (existing) return existing;
    const call = this.newCall(userId, 'outgoing');
    if (stream) call.addStream(stream);
    return call;
  }

  /** The calls going on (and ringing). */
  calls(): Call[] {
    return Array.from(this.active.values());
  }

  callWith(userId: string): Call | undefined {
    return this.active.get(userId);
  }

  hangUpAll(): void {
    for (const call of this.calls()) call.hangUp();
  }

  bind<K extends keyof WebRTCEvents>(event: K, callback: (data: WebRTCEvents[K]) => void): this {
    this.events.bind(event, callback);
    return this;
  }

  unbind<K extends keyof WebRTCEvents>(event?: K, callback?: (data: WebRTCEvents[K]) => void): this {
    this.events.unbind(event, callback);
    return this;
  }

  private newCall(peer: string, direction: 'outgoing' | 'incoming'): Call {
    const me = this.me || '';
    const configuration: RTCConfiguration = {
      iceServers: this.channel.iceServers || [],
      ...this.options.rtcConfiguration,
    };
    const call = new Call(
      peer,
      // Deterministic on both sides: the lower user id yields in glare.
      me < peer,
      direction,
      configuration,
      this.options.dataChannel ?? null,
      (signal) => this.signaller.send(peer, signal),
      (ended) => {
        if (this.active.get(peer) === ended) this.active.delete(peer);
        this.signaller.drop(peer);
      },
    );
    this.active.set(peer, call);
    return call;
  }

  private onSignal(from: string, signal: Signal): void {
    if (!signal || typeof signal !== 'object' || from === this.me) return;
    let call = this.active.get(from);
    if (!call) {
      // Only an offer starts a call; stray candidates or a bye of an ended call are dropped.
      if (signal.kind !== 'description' || !signal.description || signal.description.type !== 'offer') return;
      call = this.newCall(from, 'incoming');
      call._signal(signal);
      this.events.emit('incoming', call);
      return;
    }
    call._signal(signal);
  }
}

export default WebRTC;
