-- Seed catalogue (from the design document's curl examples). Idempotent: re-running it never
-- resets stock that orders have already consumed.
insert into products (sku, name, price, currency, stock_qty) values
  ('TSHIRT-BLK-M', 'T-shirt, black, M', 19.99, 'USD', 100000),
  ('TSHIRT-GRY-S', 'T-shirt, grey, S', 19.99, 'USD', 5),
  ('HOODIE-NVY-L', 'Hoodie, navy, L', 49.00, 'USD', 500),
  ('MUG-WHT', 'Mug, white', 9.50, 'USD', 1000)
on conflict (sku) do nothing;
