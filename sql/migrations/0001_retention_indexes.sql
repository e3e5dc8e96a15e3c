-- 1.1.0: indexes the retention purges read by age alone (DESIGN §7.15 migration 0001).
-- Stripe retries a webhook for three days; processed events older than that are purged by age.
CREATE INDEX processed_stripe_events_processed_at_idx ON processed_stripe_events (processed_at);

-- NOTIF-5 deletes notifications older than 30 days for every user at once; notifications_user_idx
-- leads with user_id, so an age cut across all users needs its own index.
CREATE INDEX notifications_created_idx ON notifications (created_at);
