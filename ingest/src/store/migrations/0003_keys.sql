-- Where a key came from: 'api' (POST /v1/api-keys, POST /v1/merchants), 'config'
-- (core.admin_key) or 'file' (the admin key generated into <data_dir>/admin.key). A configured
-- admin key replaces the earlier configured and generated ones, which stop working.
ALTER TABLE api_keys ADD COLUMN origin TEXT NOT NULL DEFAULT 'api';
