-- Credential life cycle: a disabled account can neither log in nor use its
-- sessions and tokens; a token may expire (NULL: never).
ALTER TABLE accounts ADD COLUMN disabled BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
CREATE INDEX api_tokens_by_expiry ON api_tokens (expires_at);
