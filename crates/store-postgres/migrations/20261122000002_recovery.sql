-- Recovery: leases on the reconciler's work, late-charge checks, and what it searches by.

CREATE TABLE recovery_tasks (
    subscription_id uuid        PRIMARY KEY REFERENCES subscriptions (id),
    phase           text        NOT NULL CHECK (phase IN ('complete', 'verify')),
    lease_owner     uuid,
    lease_until     timestamptz,
    verify_after    timestamptz,
    CONSTRAINT lease_is_whole CHECK ((lease_owner IS NULL) = (lease_until IS NULL)),
    CONSTRAINT verify_has_a_time CHECK (phase = 'complete' OR verify_after IS NOT NULL)
);

-- Due late-charge checks.
CREATE INDEX recovery_tasks_due ON recovery_tasks (verify_after) WHERE phase = 'verify';
-- Stale incomplete purchases.
CREATE INDEX subscriptions_incomplete_by_age ON subscriptions (updated_at) WHERE status = 'incomplete';
-- A late charge is refunded, and audited, once.
CREATE UNIQUE INDEX audit_entries_one_refund_per_subscription
    ON audit_entries (subscription_id) WHERE action = 'payment_refunded';
