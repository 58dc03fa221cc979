-- Seatkeeper's schema. The database enforces what it can: seat bounds, one record per
-- idempotency key and customer, references, and the known vocabularies.

CREATE TABLE plans (
    id          uuid        PRIMARY KEY,
    name        text        NOT NULL CHECK (length(name) BETWEEN 1 AND 400),
    capacity    integer     NOT NULL CHECK (capacity BETWEEN 1 AND 1000000),
    seats_left  integer     NOT NULL,
    unit_amount bigint      NOT NULL CHECK (unit_amount BETWEEN 0 AND 99999999),
    currency    text        NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    "interval"  text        NOT NULL CHECK ("interval" IN ('month', 'year')),
    status      text        NOT NULL CHECK (status IN ('active', 'archived')),
    created_at  timestamptz NOT NULL,
    -- Bumped with every audit entry of the plan: the audit log's total order.
    seq         bigint      NOT NULL CHECK (seq >= 1),
    CONSTRAINT seats_left_within_capacity CHECK (seats_left BETWEEN 0 AND capacity)
);

CREATE TABLE subscriptions (
    id                   uuid        PRIMARY KEY,
    plan_id              uuid        NOT NULL REFERENCES plans (id),
    customer_id          text        NOT NULL,
    status               text        NOT NULL
        CHECK (status IN ('incomplete', 'active', 'incomplete_expired', 'canceled')),
    payment_method       text        NOT NULL,
    payment_id           text,
    unit_amount          bigint      NOT NULL,
    currency             text        NOT NULL,
    "interval"           text        NOT NULL,
    idempotency_key      text,
    current_period_start timestamptz,
    current_period_end   timestamptz,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    canceled_at          timestamptz,
    failure_reason       text,
    CONSTRAINT active_has_payment CHECK (status NOT IN ('active', 'canceled') OR payment_id IS NOT NULL)
);

-- GET /api/customers/{id}/subscriptions, ordered by id.
CREATE INDEX subscriptions_by_customer ON subscriptions (customer_id, id);
-- Plan stats (counts by status) and the reconciler's search for old incomplete ones.
CREATE INDEX subscriptions_by_plan_status ON subscriptions (plan_id, status);

CREATE TABLE audit_entries (
    plan_id           uuid        NOT NULL REFERENCES plans (id),
    seq               bigint      NOT NULL,
    id                uuid        NOT NULL UNIQUE,
    at                timestamptz NOT NULL,
    action            text        NOT NULL,
    subscription_id   uuid        REFERENCES subscriptions (id),
    actor             text        NOT NULL,
    trace_id          text        NOT NULL,
    seats_left_before integer     NOT NULL,
    seats_left_after  integer     NOT NULL,
    reason            text,
    -- The plan's log, in the order changes took effect.
    PRIMARY KEY (plan_id, seq)
);

CREATE TABLE idempotency_keys (
    scope                    text        NOT NULL,
    key                      text        NOT NULL,
    fingerprint              text        NOT NULL,
    state                    text        NOT NULL CHECK (state IN ('open', 'finished')),
    lock_owner               uuid,
    lock_until               timestamptz,
    recovery_subscription_id uuid        REFERENCES subscriptions (id),
    outcome                  jsonb,
    outcome_request_id       text,
    finished_at              timestamptz,
    created_at               timestamptz NOT NULL,
    expires_at               timestamptz NOT NULL,
    PRIMARY KEY (scope, key),
    CONSTRAINT finished_has_outcome CHECK (state = 'open' OR (outcome IS NOT NULL AND outcome_request_id IS NOT NULL)),
    CONSTRAINT lock_is_whole CHECK ((lock_owner IS NULL) = (lock_until IS NULL))
);

-- The expiry sweep.
CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);
