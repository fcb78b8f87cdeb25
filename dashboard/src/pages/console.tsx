// The debug console: the app's live event stream (filters, pause), a form that publishes a
// test event, and the log of recent refusals, so a developer sees why a client is refused.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, unwrap } from '../api/client';
import { ErrorMessage, Field, Loaded, StatusMessage, useAction, useResource } from '../components';
import { type ConsoleEvent, openFeed } from '../live';
import { publishTestEvent } from '../publish';
import { AppHeader, type AppView, WithApp } from './app-detail';

/** The stream keeps the newest entries only, so a busy app cannot grow the page without end. */
const MAX_ENTRIES = 500;

const TYPES = ['connection_opened', 'connection_closed', 'subscribed', 'unsubscribed', 'api_publish', 'client_event', 'webhook_sent', 'refusal'];

/** The fields of an entry worth a glance, beside its type, channel and event. */
function details(entry: ConsoleEvent): string {
  const skip = new Set(['type', 'received_ms', 'time_ms', 'channel', 'event']);
  return Object.entries(entry)
    .filter(([key, value]) => !skip.has(key) && value !== null && value !== undefined)
    .map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`)
    .join(' ');
}

export function Console({ appId }: { appId: string }) {
  return (
    <WithApp appId={appId}>
      {(app) => (
        <section>
          <AppHeader app={app} current="console" />
          <PublishForm app={app} />
          <Stream appId={app.app_id} />
          <Refusals appId={app.app_id} />
        </section>
      )}
    </WithApp>
  );
}

function Stream({ appId }: { appId: string }) {
  const [entries, setEntries] = useState<ConsoleEvent[]>([]);
  const [dropped, setDropped] = useState(0);
  const [state, setState] = useState<string>('connecting');
  const [paused, setPaused] = useState(false);
  const [channelFilter, setChannelFilter] = useState('');
  const [typeFilter, setTypeFilter] = useState('');
  const held = useRef<ConsoleEvent[]>([]);
  const pausedRef = useRef(false);
  pausedRef.current = paused;
  useEffect(
    () =>
      openFeed(appId, {
        onState: setState,
        onConsole: (batch, droppedBefore) => {
          const newestFirst = [...batch].reverse();
          if (droppedBefore) setDropped((count) => count + droppedBefore);
          if (pausedRef.current) {
            held.current = [...newestFirst, ...held.current].slice(0, MAX_ENTRIES);
          } else {
            setEntries((now) => [...newestFirst, ...now].slice(0, MAX_ENTRIES));
          }
        },
      }),
    [appId],
  );
  const resume = () => {
    setEntries((now) => [...held.current, ...now].slice(0, MAX_ENTRIES));
    held.current = [];
    setPaused(false);
  };
  const shown = entries.filter((entry) => (!typeFilter || entry.type === typeFilter) && (!channelFilter || (entry.channel ?? '').includes(channelFilter)));
  return (
    <section class="card">
      <h2>Live events</h2>
      <div class="inline">
        <Field label="Channel contains" value={channelFilter} onInput={(event) => setChannelFilter(event.currentTarget.value)} />
        <div class="field">
          <label for="console-type">Type</label>
          <select id="console-type" value={typeFilter} onChange={(event) => setTypeFilter(event.currentTarget.value)}>
            <option value="">All types</option>
            {TYPES.map((type) => (
              <option key={type} value={type}>
                {type}
              </option>
            ))}
          </select>
        </div>
        <button type="button" aria-pressed={paused} onClick={() => (paused ? resume() : setPaused(true))}>
          {paused ? 'Resume' : 'Pause'}
        </button>
      </div>
      <p class="muted" role="status">
        Feed {state}
        {paused ? `, paused (${held.current.length} held)` : ''}
        {dropped ? `; ${dropped} events dropped by the server (too many at once)` : ''}
      </p>
      {state === 'failed' && <p role="alert">The live event stream could not connect: reload the page to try again.</p>}
      {shown.length === 0 ? (
        <p class="empty">No events yet{typeFilter || channelFilter ? ' matching the filters' : ''}.</p>
      ) : (
        <ol class="stream" aria-label="Events, newest first">
          {shown.map((entry, index) => (
            <li key={`${entry.received_ms}-${index}`} data-type={entry.type}>
              <span class="muted">{new Date(entry.time_ms ?? entry.received_ms).toLocaleTimeString()}</span> <strong>{entry.type}</strong> {entry.channel && <code>{entry.channel}</code>}{' '}
              {entry.event && <code>{entry.event}</code>} <span class="muted">{details(entry)}</span>
            </li>
          ))}
        </ol>
      )}
    </section>
  );
}

function PublishForm({ app }: { app: AppView }) {
  const [channel, setChannel] = useState('my-channel');
  const [name, setName] = useState('my-event');
  const [data, setData] = useState('{"message":"hello"}');
  const [note, setNote] = useState<string>();
  const publish = useAction(async () => {
    setNote(undefined);
    const path = { app_id: app.app_id };
    const keys = await unwrap(api.GET('/v1/apps/{app_id}/keys', { params: { path } }));
    const live = keys.find((entry) => !entry.revoked_at);
    if (!live) throw new Error('This app has no live key to sign with.');
    const { secret } = await unwrap(api.GET('/v1/apps/{app_id}/keys/{key}/secret', { params: { path: { ...path, key: live.key } } }));
    await publishTestEvent(app.app_id, live.key, secret, { channel, name, data });
    setNote(`Published ${name} on ${channel}.`);
  });
  return (
    <section class="card">
      <h2>Publish a test event</h2>
      <form onSubmit={(event) => (event.preventDefault(), publish.run())}>
        <div class="inline">
          <Field label="Channel" required maxLength={200} value={channel} onInput={(event) => setChannel(event.currentTarget.value)} />
          <Field label="Event name" required maxLength={200} value={name} onInput={(event) => setName(event.currentTarget.value)} />
        </div>
        <div class="field">
          <label for="publish-data">Data</label>
          <textarea id="publish-data" rows={3} value={data} onInput={(event) => setData(event.currentTarget.value)} />
        </div>
        <ErrorMessage message={publish.error} />
        <StatusMessage message={note} />
        <button type="submit" class="primary" disabled={publish.pending}>
          Publish
        </button>
      </form>
    </section>
  );
}

function Refusals({ appId }: { appId: string }) {
  const refusals = useResource(async () => {
    const log = await unwrap(api.GET('/v1/apps/{app_id}/refusals', { params: { path: { app_id: appId } } }));
    return log.refusals.slice().reverse();
  }, [appId]);
  return (
    <section class="card">
      <h2>Recent refusals</h2>
      <p class="muted">The last 100 refusals seen by the server that answers this page, newest first.</p>
      <button type="button" onClick={refusals.reload}>
        Refresh refusals
      </button>
      <Loaded resource={refusals} what="refusals" isEmpty={(list) => list.length === 0} empty={<p>No refusals: every client got in.</p>}>
        {(list) => (
          <div class="table-wrap refusals">
            <table>
              <caption class="visually-hidden">Recent refusals on this node, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">When</th>
                  <th scope="col">What</th>
                  <th scope="col">Code</th>
                  <th scope="col">Reason</th>
                  <th scope="col">Channel</th>
                </tr>
              </thead>
              <tbody>
                {list.map((refusal, index) => (
                  <tr key={`${refusal.time_ms}-${index}`}>
                    <td>{new Date(refusal.time_ms).toLocaleString()}</td>
                    <td>{refusal.source}</td>
                    <td>{refusal.code ?? refusal.status ?? ''}</td>
                    <td>{refusal.reason}</td>
                    <td>{refusal.channel ? <code>{refusal.channel}</code> : ''}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Loaded>
    </section>
  );
}
