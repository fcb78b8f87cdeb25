// The debug console: the app's live event stream (filters, pause), a form that publishes a
// test event, and the log of recent refusals, so a developer sees why a client is refused.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, serverHasPath, unwrap } from '../api/client';
import { call, PENDING, type Refusal } from '../api/pending';
import { ErrorMessage, Field, formatTime, Loaded, StatusMessage, useAction, useResource } from '../components';
import { type ConsoleEvent, openFeed } from '../live';
import { publishTestEvent } from '../publish';
import { AppHeader, type AppView, WithApp } from './app-detail';

/** The stream keeps the newest entries only, so a busy app cannot grow the page without end. */
const MAX_ENTRIES = 500;

const TYPES = ['connection_opened', 'connection_closed', 'subscribed', 'unsubscribed', 'api_message', 'client_event', 'webhook_sent', 'refusal'];

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
        onConsole: (entry) => {
          if (pausedRef.current) {
            held.current = [entry, ...held.current].slice(0, MAX_ENTRIES);
          } else {
            setEntries((now) => [entry, ...now].slice(0, MAX_ENTRIES));
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
      {state === 'not-available' ? (
        <p class="notice" role="status">
          The live event stream is not available on this server yet.
        </p>
      ) : (
        <>
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
          </p>
          {shown.length === 0 ? (
            <p class="empty">No events yet{typeFilter || channelFilter ? ' matching the filters' : ''}.</p>
          ) : (
            <ol class="stream" aria-label="Events, newest first">
              {shown.map((entry, index) => (
                <li key={`${entry.time}-${index}`} data-type={entry.type}>
                  <span class="muted">{formatTime(entry.time)}</span> <strong>{entry.type}</strong> {entry.channel && <code>{entry.channel}</code>} {entry.event && <code>{entry.event}</code>}{' '}
                  {entry.code !== undefined && <span>code {entry.code}</span>} {entry.reason && <span>{entry.reason}</span>}
                  {entry.data !== undefined && <code class="data">{typeof entry.data === 'string' ? entry.data : JSON.stringify(entry.data)}</code>}
                </li>
              ))}
            </ol>
          )}
        </>
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
  const path = PENDING.refusals.replace('{app_id}', encodeURIComponent(appId));
  const refusals = useResource(async () => ((await serverHasPath(PENDING.refusals)) ? call<Refusal[]>('GET', path) : null), [appId]);
  return (
    <section class="card">
      <h2>Recent refusals</h2>
      {refusals.data === null ? (
        <p class="notice" role="status">
          The refusal log is not available on this server yet.
        </p>
      ) : (
        <>
          <button type="button" onClick={refusals.reload}>
            Refresh refusals
          </button>
          <Loaded resource={refusals} what="refusals" isEmpty={(list) => !list || list.length === 0} empty={<p>No refusals: every client got in.</p>}>
            {(list) => (
              <div class="table-wrap">
                <table>
                  <caption class="visually-hidden">Recent refusals, newest first</caption>
                  <thead>
                    <tr>
                      <th scope="col">When</th>
                      <th scope="col">Code</th>
                      <th scope="col">Reason</th>
                      <th scope="col">What</th>
                    </tr>
                  </thead>
                  <tbody>
                    {(list ?? []).map((refusal, index) => (
                      <tr key={`${refusal.time}-${index}`}>
                        <td>{formatTime(refusal.time)}</td>
                        <td>{refusal.code}</td>
                        <td>{refusal.reason}</td>
                        <td>
                          {refusal.kind ?? ''} {refusal.channel ? <code>{refusal.channel}</code> : null}
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            )}
          </Loaded>
        </>
      )}
    </section>
  );
}
