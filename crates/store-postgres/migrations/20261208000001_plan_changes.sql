-- Announces every committed change of a plan row (a sale, a hold or its end, a
-- cancellation, a capacity or status change: each moves the row's seats or seq) on the
-- channel `seatkeeper_plan_changed`, with the plan's id as the payload. NOTIFY is sent at
-- commit and deduplicated within a transaction: a batch that moves a plan many times
-- announces it once. Listeners (the PlanFeed) read the plan to learn how it changed.
CREATE FUNCTION seatkeeper_announce_plan_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('seatkeeper_plan_changed', NEW.id::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER plans_announce_change
    AFTER INSERT OR UPDATE ON plans
    FOR EACH ROW EXECUTE FUNCTION seatkeeper_announce_plan_change();
