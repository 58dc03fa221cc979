-- Checkout sessions: a seat held for one customer while they pay, and the ids of the
-- payment provider's webhook events already handled.
--
-- A session row holds every field of the domain's `StoredCheckoutSession`; the CHECKs
-- below mirror what `CheckoutSession::restore` requires of a status, so a row the store
-- could not read back is refused when written. Sessions are written one transaction at a
-- time (never in batches), under their plan row's lock when a seat moves.

CREATE TABLE checkout_sessions (
    id                    uuid        PRIMARY KEY,
    plan_id               uuid        NOT NULL,
    customer_id           text        NOT NULL,
    -- The subscription a completion creates; it names the hold in the audit log from the
    -- start, before (and whether or not) the subscription exists.
    subscription_id       uuid        NOT NULL UNIQUE,
    idempotency_key       text        NOT NULL,
    fingerprint           text        NOT NULL,
    amount                bigint      NOT NULL CHECK (amount BETWEEN 0 AND 99999999),
    currency              text        NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    status                text        NOT NULL CHECK (status IN ('open', 'complete', 'expired')),
    payment_intent_id     text,
    client_secret         text,
    payment_error         text,
    intent_closed         boolean     NOT NULL,
    late_payment_id       text,
    late_payment_refunded boolean,
    created_at            timestamptz NOT NULL,
    expires_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL,
    ended_at              timestamptz,
    expiry                text        CHECK (expiry IN ('timeout', 'request')),
    -- When the worker looks at the session next; NULL: never again (purgeable once old).
    check_at              timestamptz,
    -- One session per (customer, key): a retried opening finds the first one.
    CONSTRAINT checkout_sessions_one_per_key UNIQUE (customer_id, idempotency_key),
    CONSTRAINT intent_is_whole CHECK ((payment_intent_id IS NULL) = (client_secret IS NULL)),
    CONSTRAINT late_payment_is_whole CHECK ((late_payment_id IS NULL) = (late_payment_refunded IS NULL)),
    CONSTRAINT expires_after_creation CHECK (expires_at > created_at),
    CONSTRAINT open_has_not_ended CHECK (status <> 'open'
        OR (ended_at IS NULL AND expiry IS NULL AND late_payment_id IS NULL AND check_at IS NOT NULL)),
    CONSTRAINT ended_has_ended_at CHECK (status = 'open' OR ended_at IS NOT NULL),
    CONSTRAINT complete_is_paid CHECK (status <> 'complete'
        OR (expiry IS NULL AND late_payment_id IS NULL AND payment_intent_id IS NOT NULL)),
    CONSTRAINT expired_has_cause CHECK (status <> 'expired' OR expiry IS NOT NULL)
);

-- The worker's due sessions, earliest first (`ORDER BY check_at, id`).
CREATE INDEX checkout_sessions_due ON checkout_sessions (check_at, id) WHERE check_at IS NOT NULL;
-- A customer's open sessions on a plan (opening), and a plan's held seats (stats).
CREATE INDEX checkout_sessions_open ON checkout_sessions (plan_id, customer_id, id) WHERE status = 'open';
-- The purge: sessions with nothing left to check, by the time they ended.
CREATE INDEX checkout_sessions_ended ON checkout_sessions (ended_at) WHERE check_at IS NULL;

CREATE TABLE webhook_events (
    id          text        PRIMARY KEY,
    kind        text        NOT NULL,
    received_at timestamptz NOT NULL
);

-- The purge of old event ids.
CREATE INDEX webhook_events_by_age ON webhook_events (received_at);

-- References, checked once per statement as in 20261128000001_statement_references.sql.
--
-- A session names a plan that exists (plans are never removed), and it never moves to
-- another plan nor changes the subscription id its audit entries name. A session itself
-- may be deleted (the purge), so nothing refers to it by foreign key.
CREATE FUNCTION seatkeeper_check_checkout_plans() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM written w WHERE (SELECT 1 FROM plans p WHERE p.id = w.plan_id) IS NULL) THEN
        RAISE EXCEPTION 'a checkout session refers to a plan that does not exist'
            USING ERRCODE = 'foreign_key_violation', TABLE = 'checkout_sessions', COLUMN = 'plan_id';
    END IF;
    RETURN NULL;
END
$$ SET plan_cache_mode = force_generic_plan SET enable_seqscan = off;

CREATE TRIGGER checkout_sessions_plan_exists AFTER INSERT ON checkout_sessions
    REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION seatkeeper_check_checkout_plans();
CREATE TRIGGER checkout_sessions_stay_on_their_plan BEFORE UPDATE OF id, plan_id, subscription_id ON checkout_sessions
    FOR EACH STATEMENT EXECUTE FUNCTION seatkeeper_refuse_change('a checkout session keeps its id, plan and subscription id');

-- An audit entry names a subscription, or the checkout session that holds a seat for
-- the subscription it may become: `seat_held`, `hold_expired` and a late refund name a
-- subscription that does not exist (yet, or ever). Both are probed by their unique keys
-- (`subscriptions.id`, `checkout_sessions.subscription_id`).
--
-- The check holds at write time only: a purge later deletes ended sessions, and the
-- entries of a session that never completed then name a subscription id found nowhere
-- but in the audit log (which keeps the plan, the action and the reason). Plans and
-- subscriptions still never go away.
CREATE OR REPLACE FUNCTION seatkeeper_check_audit_references() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM written w WHERE (SELECT 1 FROM plans p WHERE p.id = w.plan_id) IS NULL) THEN
        RAISE EXCEPTION 'an audit entry refers to a plan that does not exist'
            USING ERRCODE = 'foreign_key_violation', TABLE = 'audit_entries', COLUMN = 'plan_id';
    END IF;
    IF EXISTS (SELECT 1 FROM written w WHERE w.subscription_id IS NOT NULL
               AND (SELECT 1 FROM subscriptions s WHERE s.id = w.subscription_id) IS NULL
               AND (SELECT 1 FROM checkout_sessions cs WHERE cs.subscription_id = w.subscription_id) IS NULL) THEN
        RAISE EXCEPTION 'an audit entry refers to a subscription (or checkout session) that does not exist'
            USING ERRCODE = 'foreign_key_violation', TABLE = 'audit_entries', COLUMN = 'subscription_id';
    END IF;
    RETURN NULL;
END
$$ SET plan_cache_mode = force_generic_plan SET enable_seqscan = off;
