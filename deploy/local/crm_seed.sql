-- Seed profiles u-1 .. u-400 (idempotent). There are deliberately no rows for u-401 and above,
-- so tests can look up an unknown user. Segments cycle vip, regular, new (u-1 is vip).
INSERT INTO crm_profiles (user_id, email, phone, first_name, segment, country)
SELECT 'u-' || n,
       'user' || n || '@example.com',
       '+1555' || lpad(n::text, 7, '0'),
       (ARRAY['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara'])[1 + (n - 1) % 5],
       (ARRAY['vip', 'regular', 'new'])[1 + (n - 1) % 3],
       (ARRAY['US', 'GB', 'DE', 'FR', 'BR', 'JP', 'IN'])[1 + (n - 1) % 7]
FROM generate_series(1, 400) AS n
ON CONFLICT (user_id) DO NOTHING;
