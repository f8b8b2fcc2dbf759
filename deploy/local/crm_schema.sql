-- CRM profiles the enrichment step looks up by user_id. Loaded on every `postgres.sh start`
-- and by the test fixtures: keep it idempotent.
CREATE TABLE IF NOT EXISTS crm_profiles (
    user_id    text PRIMARY KEY,
    email      text,
    phone      text,
    first_name text,
    segment    text,
    country    text,
    updated_at timestamptz DEFAULT now()
);
