-- References on the purchase path, checked once per statement instead of once per row.
--
-- A foreign key checks every row it writes with a query of its own and a share lock on the
-- row it refers to. A reservation batch of 63 purchases ran 252 of them (plan and
-- subscription of each audit entry and subscription, the subscription of each key), two
-- thirds of the batch's time by auto_explain, inside the transaction that holds the hot
-- plan row. Here each writing statement checks all its new rows with one query over its
-- transition table, a primary-key probe per row (the functions plan once per connection,
-- with sequential scans off, so that a plan made while the tables were tiny never scans
-- them whole later; planning at every call cost more than the foreign keys). The share
-- locks were there so that a referred-to row cannot go away before the commit; instead,
-- plans and subscriptions are never deleted and their ids never change (the triggers
-- below refuse it), so a check that passes stays true. The guarantee is the foreign
-- keys': no row refers to a plan or subscription that does not exist. `recovery_tasks`
-- keeps its foreign key: it is not written per purchase.

ALTER TABLE subscriptions DROP CONSTRAINT subscriptions_plan_id_fkey;
ALTER TABLE audit_entries DROP CONSTRAINT audit_entries_plan_id_fkey;
ALTER TABLE audit_entries DROP CONSTRAINT audit_entries_subscription_id_fkey;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_recovery_subscription_id_fkey;

-- What is referred to stays: no delete, no truncate, no new id. The audit log is
-- append-only, and a subscription keeps its plan.
CREATE FUNCTION seatkeeper_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% of % is refused: %', TG_OP, TG_TABLE_NAME, TG_ARGV[0]
        USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER plans_stay BEFORE DELETE OR TRUNCATE OR UPDATE OF id ON plans
    FOR EACH STATEMENT EXECUTE FUNCTION seatkeeper_refuse_change('plans are referred to and never removed');
CREATE TRIGGER subscriptions_stay BEFORE DELETE OR TRUNCATE OR UPDATE OF id, plan_id ON subscriptions
    FOR EACH STATEMENT EXECUTE FUNCTION seatkeeper_refuse_change('subscriptions are referred to and never removed, nor moved to another plan');
CREATE TRIGGER audit_entries_append_only BEFORE DELETE OR TRUNCATE OR UPDATE ON audit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION seatkeeper_refuse_change('the audit log is append-only');

-- The referring rows a statement wrote, each checked against what it names.
CREATE FUNCTION seatkeeper_check_subscription_plans() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM written w WHERE (SELECT 1 FROM plans p WHERE p.id = w.plan_id) IS NULL) THEN
        RAISE EXCEPTION 'a subscription refers to a plan that does not exist'
            USING ERRCODE = 'foreign_key_violation', TABLE = 'subscriptions', COLUMN = 'plan_id';
    END IF;
    RETURN NULL;
END
$$ SET plan_cache_mode = force_generic_plan SET enable_seqscan = off;

CREATE FUNCTION seatkeeper_check_audit_references() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM written w WHERE (SELECT 1 FROM plans p WHERE p.id = w.plan_id) IS NULL) THEN
        RAISE EXCEPTION 'an audit entry refers to a plan that does not exist'
            USING ERRCODE = 'foreign_key_violation', TABLE = 'audit_entries', COLUMN = 'plan_id';
    END IF;
    IF EXISTS (SELECT 1 FROM written w WHERE w.subscription_id IS NOT NULL
               AND (SELECT 1 FROM subscriptions s WHERE s.id = w.subscription_id) IS NULL) THEN
        RAISE EXCEPTION 'an audit entry refers to a subscription that does not exist'
            USING ERRCODE = 'foreign_key_violation', TABLE = 'audit_entries', COLUMN = 'subscription_id';
    END IF;
    RETURN NULL;
END
$$ SET plan_cache_mode = force_generic_plan SET enable_seqscan = off;

CREATE FUNCTION seatkeeper_check_key_recovery() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM written w WHERE w.recovery_subscription_id IS NOT NULL
               AND (SELECT 1 FROM subscriptions s WHERE s.id = w.recovery_subscription_id) IS NULL) THEN
        RAISE EXCEPTION 'an idempotency key refers to a subscription that does not exist'
            USING ERRCODE = 'foreign_key_violation', TABLE = 'idempotency_keys', COLUMN = 'recovery_subscription_id';
    END IF;
    RETURN NULL;
END
$$ SET plan_cache_mode = force_generic_plan SET enable_seqscan = off;

CREATE TRIGGER subscriptions_plan_exists AFTER INSERT ON subscriptions
    REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION seatkeeper_check_subscription_plans();
CREATE TRIGGER audit_entries_references_exist AFTER INSERT ON audit_entries
    REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION seatkeeper_check_audit_references();
-- A trigger with a transition table takes one event: inserts and updates separately.
CREATE TRIGGER idempotency_keys_recovery_exists_on_insert AFTER INSERT ON idempotency_keys
    REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION seatkeeper_check_key_recovery();
CREATE TRIGGER idempotency_keys_recovery_exists_on_update AFTER UPDATE ON idempotency_keys
    REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION seatkeeper_check_key_recovery();
