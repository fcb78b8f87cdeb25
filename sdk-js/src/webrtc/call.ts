import { Dispatcher } from '../events';
import type { Signal } from './signaller';

/** Why a call ended. */
export type EndReason = 'hangup' | 'remote-hangup' | 'failed';

/** A call's events, typed. */
export interface CallEvents {
  /** A remote track arrived; `streams[0]` is what a `<video>` plays. */
  track: RTCTrackEvent;
  /** The peer opened a data channel (the `dataChannel` option's channel is not announced:
   * both sides make it, see `Call.dataChannel`). */
  datachannel: RTCDataChannel;
  /** `RTCPeerConnection.connectionState` changed. */
  state: RTCPeerConnectionState;
  ended: EndReason;
}

/** Signals an unanswered incoming call keeps; a peer that sends more is not calling sanely. */
const MAX_PENDING = 256;

/**
 * One call with one peer: its `RTCPeerConnection`, negotiated with the "perfect negotiation"
 * pattern (the polite side rolls back its own offer when both offer at once; the impolite side
 * ignores the other's), so glare and renegotiation (adding a stream, a data channel) need
 * nothing from the app.
 */
export class Call {
  readonly connection: RTCPeerConnection;
  /** The negotiated data channel named by the `dataChannel` option (id 0 on both sides). */
  dataChannel: RTCDataChannel | null = null;
  readonly remoteStreams: MediaStream[] = [];
  /** `ringing` until an incoming call is answered; `ended` after a hang-up or failure. */
  state: 'ringing' | 'active' | 'ended';
  private events = new Dispatcher();
  private makingOffer = false;
  private ignoreOffer = false;
  private pending: Signal[] = [];
  private work: Promise<void> = Promise.resolve();

  /** @internal Made by `WebRTC.call` and by an incoming offer. */
  constructor(
    readonly peer: string,
    readonly polite: boolean,
    readonly direction: 'outgoing' | 'incoming',
    configuration: RTCConfiguration,
    dataChannelLabel: string | null,
    private send: (signal: Signal) => void,
    private forget: (call: Call) => void,
  ) {
    this.state = direction === 'incoming' ? 'ringing' : 'active';
    const pc = (this.connection = new RTCPeerConnection(configuration));
    pc.onnegotiationneeded = async () => {
      if (this.state !== 'active') return;
      try {
        this.makingOffer = true;
        await pc.setLocalDescription();
        this.send({ kind: 'description', description: pc.localDescription!.toJSON() });
      } catch {
        this.end('failed', false);
      } finally {
        this.makingOffer = false;
      }
    };
    pc.onicecandidate = ({ candidate }) => {
      if (candidate) this.send({ kind: 'candidates', candidates: [candidate.toJSON()] });
    };
    pc.ontrack = (event) => {
      for (const stream of event.streams) if (this.remoteStreams.indexOf(stream) < 0) this.remoteStreams.push(stream);
      this.events.emit('track', event);
    };
    pc.ondatachannel = ({ channel }) => this.events.emit('datachannel', channel);
    pc.onconnectionstatechange = () => {
      this.events.emit('state', pc.connectionState);
      if (pc.connectionState === 'failed') this.end('failed', true);
    };
    // Made now on both sides, so it is there for the app from the start. On a ringing call the
    // negotiation it asks for is ignored (above); the answer covers it.
    if (dataChannelLabel !== null) {
      this.dataChannel = pc.createDataChannel(dataChannelLabel, { negotiated: true, id: 0 });
    }
  }

  bind<K extends keyof CallEvents>(event: K, callback: (data: CallEvents[K]) => void): this {
    this.events.bind(event, callback);
    return this;
  }

  unbind<K extends keyof CallEvents>(event?: K, callback?: (data: CallEvents[K]) => void): this {
    this.events.unbind(event, callback);
    return this;
  }

  /** Answers an incoming call, sending `stream`'s tracks (none: receive only). */
  answer(stream?: MediaStream): void {
    if (this.state !== 'ringing') return;
    this.state = 'active';
    const [offer, ...rest] = this.pending;
    this.pending = [];
    // The tracks join the offer's transceivers before the answer, so no second offer follows.
    this.queue(offer, () => {
      if (stream) this.addStream(stream);
    });
    for (const signal of rest) this.queue(signal);
  }

  /** Sends a stream's tracks; renegotiates if the call is up. */
  addStream(stream: MediaStream): void {
    for (const track of stream.getTracks()) this.connection.addTrack(track, stream);
  }

  /** Another data channel (renegotiates); the peer gets a `datachannel` event. */
  createDataChannel(label: string, init?: RTCDataChannelInit): RTCDataChannel {
    return this.connection.createDataChannel(label, init);
  }

  hangUp(): void {
    this.end('hangup', true);
  }

  /** @internal A signal from the peer, handled in order. */
  _signal(signal: Signal): void {
    if (this.state === 'ended') return;
    if (signal.kind === 'bye') return this.end('remote-hangup', false);
    if (this.state === 'ringing') {
      if (this.pending.length < MAX_PENDING) this.pending.push(signal);
      return;
    }
    this.queue(signal);
  }

  private queue(signal: Signal | undefined, beforeAnswer?: () => void): void {
    if (!signal) return;
    this.work = this.work
      .then(() => this.handle(signal, beforeAnswer))
      .catch(() => this.end('failed', true));
  }

  private async handle(signal: Signal, beforeAnswer?: () => void): Promise<void> {
    if (this.state === 'ended') return;
    const pc = this.connection;
    if (signal.kind === 'description') {
      const description = signal.description;
      const collision = description.type === 'offer' && (this.makingOffer || pc.signalingState !== 'stable');
      this.ignoreOffer = !this.polite && collision;
      if (this.ignoreOffer) return;
      await pc.setRemoteDescription(description); // an offer in glare rolls ours back
      if (description.type === 'offer') {
        if (beforeAnswer) beforeAnswer();
        await pc.setLocalDescription();
        this.send({ kind: 'description', description: pc.localDescription!.toJSON() });
      }
    } else if (signal.kind === 'candidates') {
      for (const candidate of signal.candidates) {
        try {
          await pc.addIceCandidate(candidate);
        } catch (error) {
          // Candidates of an offer we ignored belong to no description of ours.
          if (!this.ignoreOffer) throw error;
        }
      }
    }
  }

  private end(reason: EndReason, tellPeer: boolean): void {
    if (this.state === 'ended') return;
    this.state = 'ended';
    if (tellPeer) this.send({ kind: 'bye' });
    this.connection.close();
    this.forget(this);
    this.events.emit('ended', reason);
  }
}
