-- Whether the key's current state has been appended to the outbox for the api-keys topic.
-- Every change since this migration publishes in its own transaction; keys made before it are
-- published once, at the next start.
ALTER TABLE api_keys ADD COLUMN published INTEGER NOT NULL DEFAULT 0;
