// One app: rename, disable, delete; its keys; snippets; settings; webhooks.
import { useState } from 'preact/hooks';
import { api, ApiError, type Schemas, unwrap } from '../api/client';
import { ConfirmAction, ErrorMessage, Field, Loaded, StatusMessage, useAction, useResource } from '../components';
import { Link, navigate } from '../router';
import { Keys } from './keys';
import { Settings, Webhooks } from './app-settings';

export type AppView = Schemas['AppView'];

export function loadApp(appId: string) {
  return unwrap(api.GET('/v1/apps/{app_id}', { params: { path: { app_id: appId } } }));
}

/** The page's heading and tabs; an app of another account is simply not found. */
export function AppHeader({ app, current }: { app: AppView; current: 'overview' | 'usage' | 'console' }) {
  const base = `/applications/${app.app_id}`;
  return (
    <>
      <p class="crumbs">
        <Link href="/applications">Apps</Link> / {app.name}
      </p>
      <h1>
        {app.name} {!app.enabled && <span class="badge">disabled</span>}
      </h1>
      <nav class="tabs" aria-label="App sections">
        <Link href={base} aria-current={current === 'overview' ? 'page' : undefined}>
          Keys and settings
        </Link>
        <Link href={`${base}/usage`} aria-current={current === 'usage' ? 'page' : undefined}>
          Usage
        </Link>
        <Link href={`${base}/console`} aria-current={current === 'console' ? 'page' : undefined}>
          Debug console
        </Link>
      </nav>
    </>
  );
}

/** Loads the app, then renders `children(app, reload)`, or the not-found / error state. */
export function WithApp({ appId, children }: { appId: string; children: (app: AppView, reload: () => void) => preact.ComponentChildren }) {
  const app = useResource(() => loadApp(appId), [appId]);
  if (app.error instanceof ApiError && app.error.status === 404) {
    return (
      <section>
        <h1>App not found</h1>
        <p role="alert">There is no app {appId} in your account.</p>
        <Link href="/applications">Back to your apps</Link>
      </section>
    );
  }
  return (
    <Loaded resource={app} what="the app">
      {(data) => children(data, app.reload)}
    </Loaded>
  );
}

export function AppDetail({ appId }: { appId: string }) {
  return (
    <WithApp appId={appId}>
      {(app, reload) => (
        <section>
          <AppHeader app={app} current="overview" />
          <Keys app={app} />
          <Settings app={app} onSaved={reload} />
          <Webhooks app={app} />
          <Manage app={app} onSaved={reload} />
        </section>
      )}
    </WithApp>
  );
}

function Manage({ app, onSaved }: { app: AppView; onSaved: () => void }) {
  const [name, setName] = useState(app.name);
  const [note, setNote] = useState<string>();
  const patch = (body: Schemas['AppChanges']) => unwrap(api.PATCH('/v1/apps/{app_id}', { params: { path: { app_id: app.app_id } }, body }));
  const rename = useAction(async () => {
    await patch({ name });
    setNote(`Renamed to ${name}.`);
    onSaved();
  });
  const toggle = useAction(async () => {
    await patch({ enabled: !app.enabled });
    setNote(app.enabled ? 'App disabled: its connections are closed and new ones refused.' : 'App enabled.');
    onSaved();
  });
  const remove = useAction(async () => {
    await unwrap(api.DELETE('/v1/apps/{app_id}', { params: { path: { app_id: app.app_id } } }));
    navigate('/applications', { replace: true });
  });
  return (
    <section class="card">
      <h2>Manage</h2>
      <form class="inline" onSubmit={(event) => (event.preventDefault(), rename.run())}>
        <Field label="App name" required maxLength={100} value={name} onInput={(event) => setName(event.currentTarget.value)} />
        <button type="submit" disabled={rename.pending || name === app.name}>
          Rename
        </button>
      </form>
      <p>
        <button type="button" onClick={() => toggle.run()} disabled={toggle.pending}>
          {app.enabled ? 'Disable app' : 'Enable app'}
        </button>
      </p>
      <ConfirmAction
        label="Delete app"
        confirmLabel={`Delete ${app.name} permanently`}
        warning={`Deleting ${app.name} closes its connections, refuses its keys and cannot be undone.`}
        pending={remove.pending}
        onConfirm={() => remove.run()}
      />
      <ErrorMessage message={rename.error ?? toggle.error ?? remove.error} />
      <StatusMessage message={note} />
    </section>
  );
}
