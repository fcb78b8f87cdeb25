-- Issue 11: a paid plan changed inside the subscription. A downgrade waits for the period's
-- end (a Stripe subscription schedule); until the webhook says it happened, this is the plan
-- the account moves to then (NULL: no change pending). Shown on the billing page.
ALTER TABLE billing_accounts ADD COLUMN scheduled_plan_id TEXT REFERENCES plans (id);
