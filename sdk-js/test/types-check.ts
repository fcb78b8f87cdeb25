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
