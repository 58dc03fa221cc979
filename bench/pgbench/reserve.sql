-- The least a purchase's reserve phase does, as one pgbench transaction: the guarded
-- decrement of a plan row (the hot row when plans = 1), one subscription insert, one
-- audit insert, in one transaction with one commit. The schema is the server's own
-- (bench/pgbench.sh applies crates/store-postgres/migrations), so the same constraints,
-- reference checks and indexes apply. Run with `-D plans=N`; plan n has the id
-- 00000000-0000-0000-0000-<n as 12 digits>.
\set p random(1, :plans)
BEGIN;
UPDATE plans SET seats_left = seats_left - 1, seq = seq + 1
  WHERE id = ('00000000-0000-0000-0000-' || lpad(:p::text, 12, '0'))::uuid
    AND status = 'active' AND seats_left > 0
  RETURNING seq, seats_left \gset
INSERT INTO subscriptions (id, plan_id, customer_id, status, payment_method, unit_amount, currency, "interval",
                           idempotency_key, created_at, updated_at)
  VALUES (gen_random_uuid(), ('00000000-0000-0000-0000-' || lpad(:p::text, 12, '0'))::uuid,
          'cus_pgbench_' || :client_id::text, 'incomplete', 'pm_card_visa', 1500, 'usd', 'month',
          'k' || random(), now(), now())
  RETURNING id AS sub_id \gset
INSERT INTO audit_entries (plan_id, seq, id, at, action, subscription_id, actor, trace_id,
                           seats_left_before, seats_left_after)
  VALUES (('00000000-0000-0000-0000-' || lpad(:p::text, 12, '0'))::uuid, CAST(:seq AS bigint), gen_random_uuid(), now(),
          'seat_reserved', CAST(:sub_id AS uuid), 'customer/cus_pgbench', 'pgbench', CAST(:seats_left AS integer) + 1, CAST(:seats_left AS integer));
END;
