-- The credential vault: a company's own credentials for a provider (API
-- keys, OAuth clients, Workday accounts), read before the
-- {PROVIDER}_{TENANT}_{NAME} and {PROVIDER}_{NAME} variables. Each value is
-- sealed by the service (AES-256-GCM under TOKEN_ENCRYPTION_KEY, bound to
-- company, provider and name): the database never sees one in clear.
CREATE TABLE integration_credentials (
    company_id   uuid        NOT NULL,
    provider     text        NOT NULL CHECK (provider IN ('benevity', 'goodera', 'workday')),
    -- The variable's name without prefixes: API_KEY, CLIENT_SECRET, ...
    name         text        NOT NULL CHECK (name ~ '^[A-Z][A-Z_]*$'),
    -- 12-byte nonce followed by the ciphertext and its tag.
    sealed_value bytea       NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (company_id, provider, name)
);
