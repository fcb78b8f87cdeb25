// The plan ladder, and which plan each app is on. Paid plans come from the billing page.
import { useId, useState } from 'preact/hooks';
import { api, type Schemas, unwrap } from '../api/client';
import { ErrorMessage, formatNumber, Loaded, StatusMessage, useAction, useResource } from '../components';
import { Link } from '../router';

/** An app's plan, with a choice among the free plans (paid ones need billing: a 402). */
function AppPlan({ app, plans, onChanged }: { app: Schemas['AppView']; plans: Schemas['Plan'][]; onChanged: () => void }) {
  const id = useId();
  const [chosen, setChosen] = useState(app.plan);
  const [note, setNote] = useState<string>();
  const free = plans.filter((plan) => plan.price_cents === 0);
  const change = useAction(async () => {
    await unwrap(api.PUT('/v1/apps/{app_id}/plan', { params: { path: { app_id: app.app_id } }, body: { plan: chosen } }));
    setNote(`${app.name} is on ${plans.find((plan) => plan.id === chosen)?.display_name ?? chosen} now.`);
    onChanged();
  });
  const current = plans.find((plan) => plan.id === app.plan)?.display_name ?? app.plan;
  return (
    <form class="inline" onSubmit={(event) => (event.preventDefault(), change.run())}>
      <p>
        <Link href={`/applications/${app.app_id}`}>{app.name}</Link>: {current}
      </p>
      {free.length > 1 && (
        <>
          <div class="field">
            <label for={id}>Free plan for {app.name}</label>
            <select id={id} value={chosen} onChange={(event) => setChosen(event.currentTarget.value)}>
              {free.map((plan) => (
                <option key={plan.id} value={plan.id}>
                  {plan.display_name}
                </option>
              ))}
            </select>
          </div>
          <button type="submit" disabled={change.pending || chosen === app.plan}>
            Change plan
          </button>
        </>
      )}
      <ErrorMessage message={change.error} />
      <StatusMessage message={note} />
    </form>
  );
}

export function Plans() {
  const data = useResource(async () => {
    const [plans, apps] = await Promise.all([unwrap(api.GET('/v1/plans')), unwrap(api.GET('/v1/apps'))]);
    return { plans, apps };
  }, []);
  return (
    <section>
      <h1>Plans</h1>
      <p>Free plans can be chosen for each app at once; a paid plan is the account's, for every app, from <Link href="/billing">billing</Link>.</p>
      <Loaded resource={data} what="plans">
        {({ plans, apps }) => (
          <>
            <h2>Your apps</h2>
            {apps.length === 0 ? (
              <p class="empty">No apps yet.</p>
            ) : (
              <ul class="plain">
                {apps.map((app) => (
                  <li key={app.app_id}>
                    <AppPlan app={app} plans={plans} onChanged={data.reload} />
                  </li>
                ))}
              </ul>
            )}
            <h2>The ladder</h2>
            <div class="table-wrap">
              <table>
                <caption class="visually-hidden">Plans and their limits</caption>
                <thead>
                  <tr>
                    <th scope="col">Plan</th>
                    <th scope="col">Price a month</th>
                    <th scope="col">Connections</th>
                    <th scope="col">Messages a day</th>
                    <th scope="col">Message size</th>
                    <th scope="col">Webhooks</th>
                  </tr>
                </thead>
                <tbody>
                  {[...plans]
                    .sort((a, b) => a.price_cents - b.price_cents)
                    .map((plan) => (
                      <tr key={plan.id}>
                        <th scope="row">{plan.display_name}</th>
                        <td>{plan.price_cents === 0 ? 'free' : `$${(plan.price_cents / 100).toFixed(2)}`}</td>
                        <td>{formatNumber(plan.max_connections)}</td>
                        <td>{formatNumber(plan.messages_per_day)}</td>
                        <td>{formatNumber(Math.round(plan.max_message_bytes / 1024))} KiB</td>
                        <td>{plan.webhooks_allowed ? 'yes' : 'no'}</td>
                      </tr>
                    ))}
                </tbody>
              </table>
            </div>
          </>
        )}
      </Loaded>
    </section>
  );
}
