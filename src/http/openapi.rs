//! The OpenAPI 3.1 contract, generated from the handlers' annotations and
//! the response types: `GET /openapi.json`, a browsable UI at `/docs` (its
//! assets compiled into the binary), and `impact-in openapi`, which prints
//! it (`docs/openapi.json` is that output; a test keeps them equal).

use axum::Router;
use serde_json::json;
use utoipa::{
    Modify, OpenApi,
    openapi::{
        RefOr, Schema,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};
use utoipa_swagger_ui::SwaggerUi;

use crate::app::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Impact-In",
        description = "Delivers CSR impact data to Benevity, Goodera and Workday. Errors are RFC 9457 problem+json; every `type` is listed in docs/api.md.",
    ),
    paths(
        super::discovery,
        super::deliveries::list,
        super::deliveries::create,
        super::deliveries::show,
        super::replay::replay_one,
        super::replay::bulk_replay,
        super::replay::retry_all_failed,
        super::stats::show,
        super::sla::status,
        super::sla::weekly_report,
        super::sla::delivery_timeline,
        super::sla::daily_figures,
        super::session::show,
        super::webhooks::receive_global,
        super::webhooks::receive_for_company,
        super::webhooks::health,
        super::webhooks::list,
        super::health::summary,
        super::health::liveness,
        super::health::readiness,
        super::health::startup,
        super::metrics::scrape,
        super::ingest::ingest_one,
        super::ingest::ingest_all,
        super::ingest::list_runs,
        super::ingest::show_run,
        super::ingest::list_records,
        super::ingest::integrations_health,
        super::ingest::integration_health,
        super::credentials::store,
        super::credentials::show,
        super::credentials::remove,
        super::schedules::create,
        super::schedules::list,
        super::schedules::show,
        super::schedules::update,
        super::schedules::remove,
        super::schedules::run_now,
        super::schedules::preview,
        super::schedules::stats,
        super::bus::show_rules,
        super::bus::put_rules,
        super::bus::list_rejected,
    ),
    modifiers(&Security, &Examples),
    tags(
        (name = "deliveries", description = "The delivery log"),
        (name = "replay", description = "Operator replays"),
        (name = "sla", description = "The delivery SLA per platform (docs/sla.md)"),
        (name = "session", description = "Who the caller is (the delivery console's header)"),
        (name = "webhooks", description = "Provider webhooks in (signed, no bearer token)"),
        (name = "ingest", description = "Records pulled from the source systems, personal data redacted"),
        (name = "schedules", description = "Per-company export schedules (docs/scheduling.md)"),
        (name = "bus", description = "Report-ready events from NATS JetStream: delivery rules and rejected messages (docs/bus.md)"),
        (name = "credentials", description = "A company's credential vault: values in, never out"),
        (name = "health", description = "Kubernetes probes"),
        (name = "operations", description = "Metrics"),
    )
)]
pub struct ApiDoc;

/// Bearer JWTs of the cockpit, and ops API keys (sent the same way).
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("HS256/RS256/ES256 JWT with companyIds and roles"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "opsKey",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An ops API key from OPS_API_KEYS: every company"))
                    .build(),
            ),
        );
    }
}

/// The example report of docs/payloads.md (also the tests' fixture).
const EXAMPLE_REPORT: &str = include_str!("../../tests/fixtures/impact_report.json");

/// Examples for the request bodies, so "Try it out" in `/docs` starts from
/// a request the service accepts (a test sends each one).
struct Examples;

impl Modify for Examples {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let report: serde_json::Value =
            serde_json::from_str(EXAMPLE_REPORT).expect("the example report is JSON");
        let company = report["companyId"].clone();
        if let Some(components) = openapi.components.as_mut()
            && let Some(RefOr::T(Schema::Object(schema))) =
                components.schemas.get_mut("ImpactReport")
        {
            schema.examples = vec![report.clone()];
        }
        for (path, example) in [
            (
                "/v1/impact-in/deliveries",
                json!({
                    "companyId": company,
                    "provider": "benevity",
                    "deliveryId": "0193a1c2-9b0f-7c2e-a1b2-c3d4e5f60718",
                    "payload": report,
                }),
            ),
            (
                "/v1/impact-in/deliveries/bulk-replay",
                json!({"ids": ["0193a1c2-9b0f-7c2e-a1b2-c3d4e5f60718"]}),
            ),
            (
                "/v1/impact-in/deliveries/retry-all-failed",
                json!({"companyId": company, "provider": "goodera", "since": "2026-01-01"}),
            ),
        ] {
            let body = openapi
                .paths
                .paths
                .get_mut(path)
                .and_then(|item| item.post.as_mut())
                .and_then(|operation| operation.request_body.as_mut())
                .and_then(|body| match body {
                    RefOr::T(body) => body.content.get_mut("application/json"),
                    RefOr::Ref(_) => None,
                });
            match body {
                Some(RefOr::T(content)) => content.example = Some(example),
                _ => panic!("{path}: no JSON request body to give an example to"),
            }
        }
    }
}

/// The spec as `impact-in openapi` prints it and `docs/openapi.json` holds.
pub fn spec_json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the spec serialises")
}

pub fn routes() -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
}

#[cfg(test)]
mod tests {
    /// The committed contract is the generated one: change the code, then
    /// `cargo run -- openapi > docs/openapi.json`.
    #[test]
    fn docs_openapi_json_is_the_generated_spec() {
        let committed = include_str!("../../docs/openapi.json");
        assert!(
            committed.trim_end() == super::spec_json(),
            "docs/openapi.json is outdated: run `cargo run -- openapi > docs/openapi.json`"
        );
    }

    fn spec() -> serde_json::Value {
        serde_json::from_str(&super::spec_json()).unwrap()
    }

    /// Tools that follow links (schemathesis's stateful phase, client
    /// generators) resolve operations by id: two `show`s sent it to the
    /// wrong route.
    #[test]
    fn operation_ids_are_unique() {
        let spec = spec();
        let mut ids: Vec<&str> = spec["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .filter_map(|operation| operation["operationId"].as_str())
            .collect();
        let all = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), all, "duplicate operationIds among {ids:?}");
    }

    /// The `cursor` parameters say the shape the parser accepts.
    #[test]
    fn cursor_parameters_carry_the_parsers_pattern() {
        let spec = spec();
        let mut seen = 0;
        for item in spec["paths"].as_object().unwrap().values() {
            for operation in item.as_object().unwrap().values() {
                for parameter in operation["parameters"].as_array().into_iter().flatten() {
                    if parameter["name"] == "cursor" {
                        assert_eq!(parameter["schema"]["pattern"], crate::cursor::PATTERN);
                        seen += 1;
                    }
                }
            }
        }
        assert_eq!(
            seen, 6,
            "the delivery list, the webhook events, ingest runs and records, schedules, the bus's rejected messages"
        );
    }
}
