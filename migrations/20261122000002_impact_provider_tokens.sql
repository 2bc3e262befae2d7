-- OAuth access tokens per company and provider, so a restart or a second
-- replica reuses a valid token instead of fetching a new one. The token is
-- encrypted by the service (AES-256-GCM under TOKEN_ENCRYPTION_KEY): the
-- database never sees it in clear.
CREATE TABLE impact_provider_tokens (
    company_id             uuid        NOT NULL,
    provider               text        NOT NULL CHECK (provider IN ('benevity', 'goodera', 'workday')),
    -- Which credential issued the token (a digest of token URL and client
    -- id): a rotated client never picks up its predecessor's token.
    credential_fingerprint text        NOT NULL,
    -- 12-byte nonce followed by the ciphertext and its tag.
    encrypted_token        bytea       NOT NULL,
    expires_at             timestamptz NOT NULL,
    updated_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (company_id, provider)
);
