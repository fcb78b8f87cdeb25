// Usage: charts per minute, hour or day over a chosen range; today against the plan's limits
// (warning at 80%, as Pusher gives); the live view (connections now, messages in the last
// minute), pushed every second over the system app.
import { useEffect, useMemo, useState } from 'preact/hooks';
import { api, type Schemas, unwrap } from '../api/client';
import { TimeChart } from '../chart';
import { Field, formatNumber, Loaded, useResource } from '../components';
import { type LiveStats, openFeed } from '../live';
import { AppHeader, type AppView, WithApp } from './app-detail';

type Resolution = Schemas['Resolution'];

/** Ranges offered, each with the resolution that keeps it within the API's point limit. */
const RANGES: { id: string; label: string; seconds: number; resolution: Resolution }[] = [
  { id: '1h', label: 'Last hour, per minute', seconds: 3600, resolution: 'minute' },
  { id: '24h', label: 'Last 24 hours, per hour', seconds: 86400, resolution: 'hour' },
  { id: '7d', label: 'Last 7 days, per hour', seconds: 7 * 86400, resolution: 'hour' },
  { id: '30d', label: 'Last 30 days, per day', seconds: 30 * 86400, resolution: 'day' },
];

export function Usage({ appId }: { appId: string }) {
  return (
    <WithApp appId={appId}>
      {(app) => (
        <section>
          <AppHeader app={app} current="usage" />
          <LiveView appId={app.app_id} />
          <Today app={app} />
          <History appId={app.app_id} />
        </section>
      )}
    </WithApp>
  );
}

function LiveView({ appId }: { appId: string }) {
  const [stats, setStats] = useState<LiveStats>();
  const [state, setState] = useState<string>('connecting');
  useEffect(() => openFeed(appId, { onLive: setStats, onState: setState }), [appId]);
  return (
    <section class="card" aria-labelledby="live-heading">
      <h2 id="live-heading">Live</h2>
      <dl class="stats">
        <div>
          <dt>Connections now</dt>
          <dd data-testid="live-connections">{stats ? formatNumber(stats.connections) : '–'}</dd>
        </div>
        <div>
          <dt>Messages in the last minute</dt>
          <dd data-testid="live-messages">{stats ? formatNumber(stats.messages_last_minute) : '–'}</dd>
        </div>
        <div>
          <dt>Messages today</dt>
          <dd>{stats ? formatNumber(stats.messages_today) : '–'}</dd>
        </div>
      </dl>
      {/* The figures change every second: only the feed's state is announced, not each figure. */}
      <p class="muted" role="status">
        {state === 'listening' ? 'Updating every second.' : state === 'failed' ? '' : `Live feed ${state}…`}
      </p>
      {state === 'failed' && <p role="alert">The live feed could not connect: reload the page to try again.</p>}
    </section>
  );
}

function startOfUtcDay(now = new Date()): Date {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()));
}

function Today({ app }: { app: AppView }) {
  const path = { app_id: app.app_id };
  const data = useResource(async () => {
    const [plan, usage] = await Promise.all([
      unwrap(api.GET('/v1/apps/{app_id}/plan', { params: { path } })),
      unwrap(api.GET('/v1/apps/{app_id}/usage', { params: { path, query: { resolution: 'day', from: startOfUtcDay().toISOString() } } })),
    ]);
    return { plan, today: usage.points[0] };
  }, [app.app_id]);
  return (
    <section class="card">
      <h2>Today (UTC) against your plan</h2>
      <Loaded resource={data} what="today's usage">
        {({ plan, today }) => (
          <ul class="meters">
            <Meter label="Messages" used={today?.messages ?? 0} limit={plan.messages_per_day} />
            <Meter label="Peak connections" used={today?.peak_connections ?? 0} limit={plan.max_connections} />
          </ul>
        )}
      </Loaded>
    </section>
  );
}

function Meter({ label, used, limit }: { label: string; used: number; limit: number }) {
  const share = limit > 0 ? used / limit : 0;
  const warn = share >= 0.8;
  return (
    <li>
      <label>
        {label}: {formatNumber(used)} of {formatNumber(limit)} ({Math.round(share * 100)}%)
        <meter min={0} max={limit} value={used} high={limit * 0.8} optimum={0} />
      </label>
      {warn && (
        <p class="warning" role="alert">
          {label} are at {Math.round(share * 100)}% of the plan's daily limit.
        </p>
      )}
    </li>
  );
}

/** `YYYY-MM-DD` of the UTC day `offsetDays` from today. */
function utcDay(offsetDays: number): string {
  return new Date(startOfUtcDay().getTime() + offsetDays * 86400_000).toISOString().slice(0, 10);
}

/** A custom range covers whole UTC days, `to` included. */
function customRange(fromDay: string, toDay: string): { from: string; to: string } {
  const to = new Date(Date.parse(`${toDay}T00:00:00Z`) + 86400_000);
  return { from: `${fromDay}T00:00:00Z`, to: to.toISOString() };
}

function History({ appId }: { appId: string }) {
  const [rangeId, setRangeId] = useState('1h');
  const [fromDay, setFromDay] = useState(utcDay(-6));
  const [toDay, setToDay] = useState(utcDay(0));
  const [resolution, setResolution] = useState<Resolution>('day');
  const isCustom = rangeId === 'custom';
  const usage = useResource(() => {
    let query: { resolution: Resolution; from: string; to: string };
    if (isCustom) {
      if (!fromDay || !toDay || fromDay > toDay) return Promise.reject(new Error('choose a first day on or before the last day'));
      query = { resolution, ...customRange(fromDay, toDay) };
    } else {
      const range = RANGES.find((entry) => entry.id === rangeId) ?? RANGES[0];
      const to = new Date();
      query = { resolution: range.resolution, from: new Date(to.getTime() - range.seconds * 1000).toISOString(), to: to.toISOString() };
    }
    return unwrap(api.GET('/v1/apps/{app_id}/usage', { params: { path: { app_id: appId }, query } }));
  }, [appId, rangeId, ...(isCustom ? [fromDay, toDay, resolution] : [])]);
  return (
    <section class="card">
      <h2>History</h2>
      <div class="inline">
        <div class="field">
          <label for="usage-range">Range</label>
          <select id="usage-range" value={rangeId} onChange={(event) => setRangeId(event.currentTarget.value)}>
            {RANGES.map((entry) => (
              <option key={entry.id} value={entry.id}>
                {entry.label}
              </option>
            ))}
            <option value="custom">Days of my choice (UTC)</option>
          </select>
        </div>
        {isCustom && (
          <>
            <Field label="First day" type="date" required value={fromDay} max={toDay} onInput={(event) => setFromDay(event.currentTarget.value)} />
            <Field label="Last day" type="date" required value={toDay} min={fromDay} onInput={(event) => setToDay(event.currentTarget.value)} />
            <div class="field">
              <label for="usage-resolution">Per</label>
              <select id="usage-resolution" value={resolution} onChange={(event) => setResolution(event.currentTarget.value as Resolution)}>
                <option value="minute">minute</option>
                <option value="hour">hour</option>
                <option value="day">day</option>
              </select>
            </div>
          </>
        )}
      </div>
      <Loaded resource={usage} what="usage" isEmpty={(series) => series.points.length === 0} empty={<p>No usage in this range yet: connect a client or publish an event.</p>}>
        {(series) => <Charts points={series.points} />}
      </Loaded>
    </section>
  );
}

function Charts({ points }: { points: Schemas['UsagePoint'][] }) {
  const { times, peak, published } = useMemo(
    () => ({
      times: points.map((point) => Date.parse(point.time) / 1000),
      peak: [{ label: 'Peak connections', values: points.map((point) => point.peak_connections), color: '#1b6ac9' }],
      published: [
        { label: 'Published', values: points.map((point) => point.messages_published), color: '#2f7d32' },
        { label: 'Delivered', values: points.map((point) => point.messages_delivered), color: '#b35900' },
      ],
    }),
    [points],
  );
  return (
    <>
      <TimeChart title="Peak concurrent connections" times={times} series={peak} />
      <TimeChart title="Messages published and delivered" times={times} series={published} />
    </>
  );
}
