-- Where a key came from: 'api' (POST /v1/api-keys, POST /v1/merchants), 'config'
-- (core.admin_key) or 'file' (the admin key generated into <data_dir>/admin.key). A configured
-- admin key replaces the earlier configured and generated ones, which stop working.
ALTER TABLE api_keys ADD COLUMN origin TEXT NOT NULL DEFAULT 'api';
-- Before this migration admin keys were only ever installed from the configuration or the
-- admin.key file (or, rarely, made through the API): count them all as the operator's, so
-- the next admin key installed at start-up replaces every older one.
UPDATE api_keys SET origin = 'config' WHERE role = 'admin';
