//! The fixed development credentials of the sandbox (the table in
//! `docs/connectors.md`). `SandboxConfig::default()` accepts exactly these.

pub const BENEVITY_API_KEY: &str = "sandbox-benevity-api-key";
pub const BENEVITY_SIGNATURE_SECRET: &str = "sandbox-benevity-signature-secret";
pub const BENEVITY_CLIENT_ID: &str = "sandbox-benevity-client";
pub const BENEVITY_CLIENT_SECRET: &str = "sandbox-benevity-client-secret";
/// The tenant whose records the ingest routes serve.
pub const BENEVITY_TENANT_ID: &str = "sandbox-benevity-tenant";

pub const GOODERA_CLIENT_ID: &str = "sandbox-goodera-client";
pub const GOODERA_CLIENT_SECRET: &str = "sandbox-goodera-client-secret";
pub const GOODERA_API_KEY: &str = "sandbox-goodera-api-key";
/// The project whose records the ingest routes serve.
pub const GOODERA_PROJECT_ID: &str = "sandbox-goodera-project";

pub const WORKDAY_TENANT_ID: &str = "sandbox";
pub const WORKDAY_CLIENT_ID: &str = "sandbox-workday-client";
pub const WORKDAY_CLIENT_SECRET: &str = "sandbox-workday-client-secret";
pub const WORKDAY_REFRESH_TOKEN: &str = "sandbox-workday-refresh-token";
pub const WORKDAY_USERNAME: &str = "sandbox-integration";
pub const WORKDAY_PASSWORD: &str = "sandbox-workday-password";

/// What the internal services (Kintell, Upskilling, Buddy, Mentorship) and
/// the impact platform's metrics accept as `Authorization: Bearer`.
pub const INTERNAL_API_KEY: &str = "sandbox-internal-api-key";

/// What the sandbox signs its webhooks with (Benevity's scheme keys HMAC
/// with the text; Goodera and Workday use Standard Webhooks `whsec_` keys).
pub const BENEVITY_WEBHOOK_SECRET: &str = "sandbox-benevity-webhook-secret";
/// `whsec_` + base64 of `sandbox-goodera-webhook-key-0001`.
pub const GOODERA_WEBHOOK_SECRET: &str = "whsec_c2FuZGJveC1nb29kZXJhLXdlYmhvb2sta2V5LTAwMDE=";
/// `whsec_` + base64 of `sandbox-workday-webhook-key-0001`.
pub const WORKDAY_WEBHOOK_SECRET: &str = "whsec_c2FuZGJveC13b3JrZGF5LXdlYmhvb2sta2V5LTAwMDE=";

/// The path of the sandbox's Slack incoming webhook; any team, bot and
/// token are accepted, these are the documented ones.
pub const SLACK_WEBHOOK_PATH: &str = "/slack/services/TSANDBOX/BSANDBOX/sandbox";
/// The routing key given to the sandbox's PagerDuty, 32 characters like a
/// real integration key; any non-blank key is accepted.
pub const PAGERDUTY_INTEGRATION_KEY: &str = "sandboxpagerdutyintegrationkey01";

/// The variables that point impact-in at a sandbox serving at `base_url`
/// (no trailing slash), in `.env` order.
pub fn env_vars(base_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("BENEVITY_API_URL", base_url.to_owned()),
        ("BENEVITY_API_KEY", BENEVITY_API_KEY.into()),
        (
            "BENEVITY_SIGNATURE_SECRET",
            BENEVITY_SIGNATURE_SECRET.into(),
        ),
        ("BENEVITY_TOKEN_URL", format!("{base_url}/oauth2/token")),
        ("BENEVITY_CLIENT_ID", BENEVITY_CLIENT_ID.into()),
        ("BENEVITY_CLIENT_SECRET", BENEVITY_CLIENT_SECRET.into()),
        ("BENEVITY_TENANT_ID", BENEVITY_TENANT_ID.into()),
        ("BENEVITY_WEBHOOK_SECRET", BENEVITY_WEBHOOK_SECRET.into()),
        ("GOODERA_API_URL", base_url.to_owned()),
        ("GOODERA_TOKEN_URL", format!("{base_url}/oauth/token")),
        ("GOODERA_CLIENT_ID", GOODERA_CLIENT_ID.into()),
        ("GOODERA_CLIENT_SECRET", GOODERA_CLIENT_SECRET.into()),
        ("GOODERA_API_KEY", GOODERA_API_KEY.into()),
        ("GOODERA_PROJECT_ID", GOODERA_PROJECT_ID.into()),
        ("GOODERA_WEBHOOK_SECRET", GOODERA_WEBHOOK_SECRET.into()),
        ("WORKDAY_API_URL", base_url.to_owned()),
        ("WORKDAY_TENANT_ID", WORKDAY_TENANT_ID.into()),
        (
            "WORKDAY_TOKEN_URL",
            format!("{base_url}/ccx/oauth2/{WORKDAY_TENANT_ID}/token"),
        ),
        ("WORKDAY_CLIENT_ID", WORKDAY_CLIENT_ID.into()),
        ("WORKDAY_CLIENT_SECRET", WORKDAY_CLIENT_SECRET.into()),
        ("WORKDAY_REFRESH_TOKEN", WORKDAY_REFRESH_TOKEN.into()),
        ("WORKDAY_USERNAME", WORKDAY_USERNAME.into()),
        ("WORKDAY_PASSWORD", WORKDAY_PASSWORD.into()),
        ("WORKDAY_WEBHOOK_SECRET", WORKDAY_WEBHOOK_SECRET.into()),
        ("INTERNAL_API_KEY", INTERNAL_API_KEY.into()),
        ("KINTELL_CONNECTOR_URL", format!("{base_url}/kintell")),
        ("UPSKILLING_CONNECTOR_URL", format!("{base_url}/upskilling")),
        ("BUDDY_CONNECTOR_URL", format!("{base_url}/buddy")),
        ("MENTORSHIP_SERVICE_URL", format!("{base_url}/mentorship")),
        ("IMPACT_METRICS_URL", format!("{base_url}/impact-platform")),
        (
            "SLACK_WEBHOOK_URL",
            format!("{base_url}{SLACK_WEBHOOK_PATH}"),
        ),
        (
            "PAGERDUTY_INTEGRATION_KEY",
            PAGERDUTY_INTEGRATION_KEY.into(),
        ),
        (
            "PAGERDUTY_EVENTS_URL",
            format!("{base_url}/pagerduty/v2/enqueue"),
        ),
    ]
}
