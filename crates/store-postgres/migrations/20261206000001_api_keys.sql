-- API keys (issue 18): what a key may do, and the SHA-256 of its secret, which is never
-- stored. A request finds its key by that hash, hence the unique index.

CREATE TABLE api_keys (
    id           uuid        PRIMARY KEY,
    name         text        NOT NULL CHECK (length(name) BETWEEN 1 AND 400),
    role         text        NOT NULL CHECK (role IN ('admin', 'purchases')),
    shown_prefix text        NOT NULL,
    secret_hash  text        NOT NULL UNIQUE CHECK (secret_hash ~ '^[0-9a-f]{64}$'),
    created_at   timestamptz NOT NULL,
    last_used_at timestamptz,
    revoked_at   timestamptz
);
