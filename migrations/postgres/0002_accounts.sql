-- Console and API accounts. Passwords are Argon2id PHC strings; session and
-- API tokens are kept only as blake3 hashes of the secret.
CREATE TABLE accounts (
    name           TEXT PRIMARY KEY,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL,           -- admin | operator | viewer
    created_at     BIGINT NOT NULL
);

CREATE TABLE sessions (
    token_hash  TEXT PRIMARY KEY,
    account     TEXT NOT NULL REFERENCES accounts(name),
    expires_at  BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    token_hash  TEXT PRIMARY KEY,
    account     TEXT NOT NULL REFERENCES accounts(name),
    label       TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
