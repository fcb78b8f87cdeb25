// Compiled by the build (tsc --noEmit): the typed event API accepts and rejects what it should.
import { Switchboard, type Member, type ResumeFailed } from '../src/index';

interface ChatEvents {
  message: { text: string; at: number };
  'client-typing': { who: string };
}

const sb = new Switchboard('key', { host: 'localhost', port: 6001, useTLS: false, transports: ['ws', 'sse'] });
const chat = sb.subscribe<ChatEvents>('presence-chat');
chat.bind('message', (data) => {
  const text: string = data.text;
  const at: number = data.at;
  void text, at;
});
chat.bind('pusher:member_added', (member: Member) => void member.id);
chat.bind('switchboard:resume_failed', (failure: ResumeFailed) => void failure.reason);
chat.trigger('client-typing', { who: 'me' });
// @ts-expect-error: the payload type is checked
chat.trigger('client-typing', { who: 1 });
sb.connection.bind('state_change', (change: { previous: string; current: string }) => void change.current);
const count: number = chat.members.count;
void count;
// @ts-expect-error: unknown transport names are rejected
new Switchboard('key', { transports: ['carrier-pigeon'] });
// The WebRTC entry point: typed events on calls, addressed client events typed like trigger.
import WebRTC, { type EndReason } from '../src/webrtc/index';
const rtc = new WebRTC(chat, { dataChannel: 'chat' });
rtc.bind('incoming', (call) => call.answer());
rtc.bind('peers', (peers: Member[]) => void peers.length);
const call = rtc.call('bob');
call.bind('ended', (reason: EndReason) => void reason);
call.bind('state', (state: RTCPeerConnectionState) => void state);
// @ts-expect-error: unknown call events are rejected
call.bind('ringing', () => undefined);
chat.triggerTo('bob', 'client-typing', { who: 'me' });
// @ts-expect-error: an addressed payload is checked too
chat.triggerTo('bob', 'client-typing', { who: 1 });
