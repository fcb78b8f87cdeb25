// The billing page: the account's plan, this period's usage against what the plan includes,
// the projected bill, the invoices, and the actions (upgrade through Stripe Checkout, change
// plan, cancel at the period's end, the Stripe portal for the payment method). The plan
// changes only when Stripe's webhook confirms; coming back from Checkout, the page waits
// for that and says so.
import { useEffect, useState } from 'preact/hooks';
import { api, type Schemas, unwrap } from '../api/client';
import { ConfirmAction, ErrorMessage, formatNumber, Loaded, StatusMessage, useAction, useResource } from '../components';
import { Link } from '../router';

type Summary = Schemas['BillingSummary'];
type Plan = Schemas['Plan'];

/** How often, and how many times, the page re-reads the summary while Stripe confirms. */
const CONFIRM_POLL_MS = 2000;
const CONFIRM_POLLS = 60;

function dollars(cents: number): string {
  return `$${(cents / 100).toFixed(2)}`;
}

function day(iso: string | null | undefined): string {
  return iso ? new Date(iso).toLocaleDateString('en', { year: 'numeric', month: 'long', day: 'numeric' }) : '';
}

function planName(plans: Plan[], id: string | null | undefined): string {
  return plans.find((plan) => plan.id === id)?.display_name ?? id ?? '';
}

/** Sends the browser to a Stripe page (Checkout, the portal) the server made for us. */
function goTo(url: string) {
  location.assign(url);
}

function PaymentBanner({ summary }: { summary: Summary }) {
  if (summary.downgraded) {
    return (
      <p class="warning" role="alert">
        A payment failed and the grace period ended on {day(summary.grace_ends_at)}: your apps run on the free plan's limits until the payment comes. Update the payment method to restore them.
      </p>
    );
  }
  if (summary.status === 'past_due' || summary.status === 'unpaid') {
    return (
      <p class="warning" role="alert">
        A payment failed on {day(summary.past_due_since)}. Your apps keep their plan until {day(summary.grace_ends_at)}; then they drop to the free plan's limits until the payment comes. Update the payment method to pay it.
      </p>
    );
  }
  return null;
}

function CurrentPlan({ summary, plans }: { summary: Summary; plans: Plan[] }) {
  const free = plans.find((plan) => plan.price_cents === 0);
  const plan = plans.find((candidate) => candidate.id === summary.plan) ?? free;
  return (
    <div class="card">
      <h2>Your plan</h2>
      <p>
        <strong data-testid="current-plan">{plan?.display_name ?? 'Free'}</strong>
        {plan && plan.price_cents > 0 ? `, ${dollars(plan.price_cents)} a month` : ', free'}
        {summary.status && summary.plan ? ` (${summary.status.replace('_', ' ')})` : ''}
      </p>
      {summary.plan && summary.current_period_end && (
        <p>{summary.cancel_at_period_end ? `Cancelled: it ends on ${day(summary.current_period_end)}, then your apps move to the free plan.` : `Renews on ${day(summary.current_period_end)}.`}</p>
      )}
      {summary.scheduled_plan && (
        <p>
          Moves to {planName(plans, summary.scheduled_plan)} on {day(summary.current_period_end)}.
        </p>
      )}
      <p class="muted">The plan is your account's: every app runs on it, new apps too.</p>
    </div>
  );
}

function UsageAndBill({ summary, plans }: { summary: Summary; plans: Plan[] }) {
  const plan = plans.find((candidate) => candidate.id === summary.plan) ?? plans.find((candidate) => candidate.price_cents === 0);
  const usage = summary.usage;
  const overage = summary.projected_cents - (summary.plan ? (plan?.price_cents ?? 0) : 0);
  return (
    <div class="card">
      <h2>This period</h2>
      <p class="muted">Since {day(usage.since)}, every app of the account.</p>
      <dl class="facts">
        <dt>Messages</dt>
        <dd>
          {formatNumber(usage.messages)}
          {plan && ` (${formatNumber(plan.messages_per_day)} a day included)`}
        </dd>
        <dt>Peak connections</dt>
        <dd>
          {formatNumber(usage.peak_connections)}
          {plan && ` of ${formatNumber(plan.max_connections)} included`}
        </dd>
        {summary.plan && (
          <>
            <dt>Beyond the plan</dt>
            <dd>
              {formatNumber(usage.overage_messages)} messages, {formatNumber(usage.overage_connections)} connections
            </dd>
          </>
        )}
        <dt>Projected bill</dt>
        <dd data-testid="projected-bill">
          {dollars(summary.projected_cents)}
          {summary.plan && plan ? ` (${dollars(plan.price_cents)} for the plan + ${dollars(Math.max(0, overage))} of overage)` : ''}
        </dd>
      </dl>
    </div>
  );
}

function PlanChoices({ summary, plans, onChanged }: { summary: Summary; plans: Plan[]; onChanged: (summary?: Summary) => void }) {
  const [note, setNote] = useState<string>();
  const paid = plans.filter((plan) => plan.price_cents > 0).sort((a, b) => a.price_cents - b.price_cents);
  const subscribed = summary.plan !== null && summary.plan !== undefined && !summary.downgraded;
  const current = plans.find((plan) => plan.id === summary.plan);
  const checkout = useAction(async (plan: Plan) => {
    goTo((await unwrap(api.POST('/v1/billing/checkout', { body: { plan: plan.id } }))).url);
  });
  const change = useAction(async (plan: Plan) => {
    const next = await unwrap(api.POST('/v1/billing/change-plan', { body: { plan: plan.id } }));
    const upgrade = current !== undefined && plan.price_cents > current.price_cents;
    setNote(upgrade ? `Moving to ${plan.display_name}: it applies as soon as Stripe confirms the payment.` : next.scheduled_plan ? `${plan.display_name} starts on ${day(next.current_period_end)}.` : `You stay on ${plan.display_name}.`);
    onChanged(next);
  });
  const pending = checkout.pending || change.pending;
  return (
    <div class="card">
      <h2>{subscribed ? 'Change plan' : 'Upgrade'}</h2>
      <p class="muted">
        {subscribed ? 'A dearer plan applies at once (the difference for the rest of the period is invoiced now); a cheaper one at the end of the period.' : 'You pay on Stripe’s page; the plan applies to every app once Stripe confirms the payment.'} See <Link href="/plans">the plans</Link> for their limits.
      </p>
      <ul class="plain choices">
        {paid.map((plan) => {
          const isCurrent = subscribed && plan.id === summary.plan;
          const waiting = summary.scheduled_plan === plan.id;
          return (
            <li key={plan.id}>
              <span>
                {plan.display_name}, {dollars(plan.price_cents)} a month: {formatNumber(plan.max_connections)} connections, {formatNumber(plan.messages_per_day)} messages a day
              </span>
              {isCurrent ? (
                summary.scheduled_plan ? (
                  <button type="button" disabled={pending} onClick={() => change.run(plan)}>
                    Stay on {plan.display_name}
                  </button>
                ) : (
                  <span class="muted"> (your plan)</span>
                )
              ) : subscribed ? (
                <button type="button" disabled={pending || waiting} onClick={() => change.run(plan)}>
                  {waiting ? `${plan.display_name} from ${day(summary.current_period_end)}` : `Switch to ${plan.display_name}`}
                </button>
              ) : (
                <button type="button" class="primary" disabled={pending} onClick={() => checkout.run(plan)}>
                  Upgrade to {plan.display_name}
                </button>
              )}
            </li>
          );
        })}
      </ul>
      <ErrorMessage message={checkout.error ?? change.error} />
      <StatusMessage message={note} />
    </div>
  );
}

function SubscriptionActions({ summary, onChanged }: { summary: Summary; onChanged: (summary?: Summary) => void }) {
  const portal = useAction(async () => goTo((await unwrap(api.POST('/v1/billing/portal'))).url));
  const cancel = useAction(async (cancel: boolean) => onChanged(await unwrap(api.POST('/v1/billing/cancel', { body: { cancel } }))));
  const hasCustomer = summary.status !== null && summary.status !== undefined;
  if (!hasCustomer) return null;
  const live = summary.status !== 'canceled' && summary.status !== 'incomplete_expired';
  return (
    <div class="card">
      <h2>Payment and subscription</h2>
      <div class="inline">
        <button type="button" disabled={portal.pending} onClick={() => portal.run()}>
          Manage payment method
        </button>
        {live &&
          (summary.cancel_at_period_end ? (
            <button type="button" disabled={cancel.pending} onClick={() => cancel.run(false)}>
              Keep the subscription
            </button>
          ) : (
            <ConfirmAction label="Cancel subscription" confirmLabel="Cancel at the end of the period" warning={`Your apps keep the plan until ${day(summary.current_period_end)}, then move to the free plan's limits.`} pending={cancel.pending} onConfirm={() => cancel.run(true)} />
          ))}
      </div>
      <ErrorMessage message={portal.error ?? cancel.error} />
    </div>
  );
}

function Invoices({ invoices }: { invoices: Schemas['InvoiceSummary'][] }) {
  return (
    <div class="card">
      <h2>Invoices</h2>
      {invoices.length === 0 ? (
        <p class="empty">No invoices yet.</p>
      ) : (
        <div class="table-wrap">
          <table>
            <caption class="visually-hidden">Invoices, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Date</th>
                <th scope="col">Amount</th>
                <th scope="col">Status</th>
                <th scope="col">Links</th>
              </tr>
            </thead>
            <tbody>
              {invoices.map((invoice) => (
                <tr key={invoice.id}>
                  <th scope="row">{day(invoice.created)}</th>
                  <td>
                    {dollars(invoice.amount_due)} {invoice.currency.toUpperCase()}
                  </td>
                  <td>{invoice.status ?? ''}</td>
                  <td>
                    {invoice.hosted_invoice_url && (
                      <a href={invoice.hosted_invoice_url} target="_blank" rel="noopener noreferrer">
                        View<span class="visually-hidden"> invoice of {day(invoice.created)}</span>
                      </a>
                    )}{' '}
                    {invoice.invoice_pdf && (
                      <a href={invoice.invoice_pdf} target="_blank" rel="noopener noreferrer">
                        PDF<span class="visually-hidden"> of the invoice of {day(invoice.created)}</span>
                      </a>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}

export function Billing({ checkout }: { checkout: string | null }) {
  const [shown, setShown] = useState<Summary>();
  const data = useResource(async () => {
    const [summary, plans] = await Promise.all([unwrap(api.GET('/v1/billing')), unwrap(api.GET('/v1/plans'))]);
    setShown(summary);
    return { plans };
  }, []);
  // Back from Checkout: the plan changes when Stripe's webhook arrives, not now; re-read the
  // summary until it does (or give up and say so).
  const awaitingWebhook = checkout === 'success' && shown !== undefined && !shown.plan;
  const [polls, setPolls] = useState(0);
  useEffect(() => {
    if (!awaitingWebhook || polls >= CONFIRM_POLLS) return;
    const timer = setTimeout(async () => {
      const next = await unwrap(api.GET('/v1/billing')).catch(() => undefined);
      if (next) setShown(next);
      setPolls((count) => count + 1);
    }, CONFIRM_POLL_MS);
    return () => clearTimeout(timer);
  }, [awaitingWebhook, polls]);
  return (
    <section>
      <h1>Billing</h1>
      <Loaded resource={data} what="billing">
        {({ plans }) =>
          !shown ? null : !shown.enabled ? (
            <div class="card">
              <p>Billing is not set up on this deployment: plans are set by the operator. Free plans can be chosen on <Link href="/plans">the plans page</Link>.</p>
            </div>
          ) : (
            <>
              <PaymentBanner summary={shown} />
              {checkout === 'success' && (
                <StatusMessage message={shown.plan ? `Stripe confirmed the payment: your apps are on ${planName(plans, shown.plan)}.` : polls >= CONFIRM_POLLS ? 'Stripe has not confirmed the payment yet. Reload this page in a while.' : 'Thank you: waiting for Stripe to confirm the payment…'} />
              )}
              {checkout === 'cancel' && <StatusMessage message="Checkout was cancelled: nothing was charged." />}
              <CurrentPlan summary={shown} plans={plans} />
              <UsageAndBill summary={shown} plans={plans} />
              <PlanChoices summary={shown} plans={plans} onChanged={(next) => (next ? setShown(next) : data.reload())} />
              <SubscriptionActions summary={shown} onChanged={(next) => (next ? setShown(next) : data.reload())} />
              <Invoices invoices={shown.invoices} />
            </>
          )
        }
      </Loaded>
    </section>
  );
}
