//! The provider sandbox over real HTTP: credentials and signatures, tokens,
//! Goodera's rate limit, schema validation, SOAP, de-duplication, the
//! control API's faults, and the ingest sources' paging, changes and
//! malformed records. Signatures are computed here independently.

use std::{
    collections::HashSet,
    error::Error as _,
    process::Stdio,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use hmac::{Hmac, KeyInit, Mac};
use impact_in::sandbox::{
    Sandbox, SandboxConfig, credentials,
    ingest::{self, Stream},
};
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;
use strum::VariantArray;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::common::sandbox_api;

const COMPANY: &str = "6f1c2a8e-0d5b-4a39-9b0e-2f7d0c1e5a44";
const SOAP_REQUEST_XPATH: &str = "/soapenv:Envelope/soapenv:Body/wd:Submit_Impact_Report_Request";

async fn sandbox() -> Sandbox {
    Sandbox::start(SandboxConfig::default())
        .await
        .expect("the sandbox starts")
}

fn sign(secret: &str, message: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn benevity_body(key: &str) -> Value {
    json!({
        "schema_version": "1.0",
        "delivery_id": key,
        "company_id": COMPANY,
        "reporting_period": { "start_date": "2026-01-01", "end_date": "2026-03-31" },
        "metrics": {
            "volunteer_hours": 1250.5,
            "volunteer_count": 84,
            "participant_count": 312,
            "session_count": 96,
            "sroi_ratio": 3.4,
            "vis_score": null
        },
        "donations": [{ "amount_minor": 1250000, "currency": "EUR" }],
        "outcomes": [{ "dimension": "integration", "score": 0.72 }],
        "programs": [{
            "name": "R&D", "volunteer_hours": 400.0, "participant_count": 120,
            "donations": [{ "amount_minor": 0, "currency": "EUR" }]
        }]
    })
}

fn goodera_body(key: &str) -> Value {
    json!({
        "version": "2.1",
        "idempotency_key": key,
        "organization_id": COMPANY,
        "period": { "from": "2026-01-01", "to": "2026-03-31" },
        "volunteering": { "hours": 1250.5, "volunteers": 84, "participants": 312, "sessions": 96 },
        "donations": [{ "amount_minor": 1250000, "currency": "EUR" }],
        "impact_dimensions": [
            { "dimension_name": "integration", "score": 0.72, "scale": "normalized_0_1" }
        ],
        "sroi_ratio": null,
        "vis_score": 78.5,
        "programs": [{ "program_name": "R&D", "hours": 400.0, "participants": 120, "donations": [] }]
    })
}

fn workday_body(key: &str) -> Value {
    json!({
        "schemaVersion": "3.0",
        "externalReferenceId": key,
        "organizationReference": COMPANY,
        "reportingPeriod": { "startDate": "2026-01-01", "endDate": "2026-03-31" },
        "volunteerHours": 1250.5,
        "volunteerCount": 84,
        "participantCount": 312,
        "sessionCount": 96,
        "donations": [{ "amountMinor": 1250000, "currency": "EUR" }],
        "outcomeScores": [{ "dimension": "integration", "score": 0.72 }],
        "sroiRatio": 3.4,
        "visScore": 78.5,
        "programs": [
            { "programName": "R&D", "volunteerHours": 400.0, "participantCount": 120, "donations": [] }
        ]
    })
}

/// A Benevity delivery in API-key mode, signed over exactly `body`.
fn benevity_request(http: &Client, sandbox: &Sandbox, key: &str, body: &[u8]) -> RequestBuilder {
    http.post(format!("{}/v1/impact-reports", sandbox.url()))
        .header("Content-Type", "application/json")
        .header("X-Idempotency-Key", key)
        .header("X-API-Key", credentials::BENEVITY_API_KEY)
        .header(
            "X-Benevity-Signature",
            sign(credentials::BENEVITY_SIGNATURE_SECRET, body),
        )
        .body(body.to_vec())
}

fn goodera_request(http: &Client, sandbox: &Sandbox, key: &str) -> RequestBuilder {
    http.post(format!("{}/v2/impact-data", sandbox.url()))
        .header("Idempotency-Key", key)
        .json(&goodera_body(key))
}

async fn token(
    http: &Client,
    url: String,
    (id, secret): (&str, &str),
    form: &[(&str, &str)],
) -> Response {
    http.post(url)
        .basic_auth(id, Some(secret))
        .form(form)
        .send()
        .await
        .unwrap()
}

async fn access_token(response: Response) -> String {
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

async fn json_of(response: Response) -> Value {
    response.json().await.unwrap()
}

/// The Workday SOAP request of `docs/connectors.md`, with `report` as the
/// content of `wd:Submit_Impact_Report_Request`.
fn soap_envelope(username: &str, password: &str, report: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
                  xmlns:wd="urn:com.workday/bsvc">
  <soapenv:Header>
    <wsse:Security soapenv:mustUnderstand="1"
        xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
        xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd">
      <wsse:UsernameToken wsu:Id="UsernameToken-1">
        <wsse:Username>{username}</wsse:Username>
        <wsse:Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText">{password}</wsse:Password>
      </wsse:UsernameToken>
    </wsse:Security>
  </soapenv:Header>
  <soapenv:Body>
    <wd:Submit_Impact_Report_Request wd:version="v3.0">{report}</wd:Submit_Impact_Report_Request>
  </soapenv:Body>
</soapenv:Envelope>"#
    )
}

fn soap_report(key: &str) -> String {
    format!(
        r#"
      <wd:External_Reference_ID>{key}</wd:External_Reference_ID>
      <wd:Organization_Reference>{COMPANY}</wd:Organization_Reference>
      <wd:Reporting_Period>
        <wd:Start_Date>2026-01-01</wd:Start_Date>
        <wd:End_Date>2026-03-31</wd:End_Date>
      </wd:Reporting_Period>
      <wd:Volunteer_Hours>1250.5</wd:Volunteer_Hours>
      <wd:Volunteer_Count>84</wd:Volunteer_Count>
      <wd:Participant_Count>312</wd:Participant_Count>
      <wd:Session_Count>96</wd:Session_Count>
      <wd:Donation><wd:Amount_Minor>1250000</wd:Amount_Minor><wd:Currency>EUR</wd:Currency></wd:Donation>
      <wd:Outcome_Score><wd:Dimension>integration</wd:Dimension><wd:Score>0.72</wd:Score></wd:Outcome_Score>
      <wd:SROI_Ratio>3.4</wd:SROI_Ratio>
      <wd:VIS_Score>78.5</wd:VIS_Score>
      <wd:Program>
        <wd:Program_Name>R&amp;D &lt;Europe&gt; ]]&gt;</wd:Program_Name>
        <wd:Volunteer_Hours>400</wd:Volunteer_Hours>
        <wd:Participant_Count>120</wd:Participant_Count>
        <wd:Donation><wd:Amount_Minor>0</wd:Amount_Minor><wd:Currency>EUR</wd:Currency></wd:Donation>
      </wd:Program>
    "#
    )
}

fn sandbox_user() -> String {
    format!(
        "{}@{}",
        credentials::WORKDAY_USERNAME,
        credentials::WORKDAY_TENANT_ID
    )
}

async fn post_soap(http: &Client, sandbox: &Sandbox, envelope: String) -> (StatusCode, String) {
    let response = http
        .post(format!(
            "{}/ccx/service/sandbox/CSR_Impact/v3.0",
            sandbox.url()
        ))
        .header("Content-Type", "text/xml; charset=UTF-8")
        .header("SOAPAction", "\"Submit_Impact_Report\"")
        .body(envelope)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

/// The unescaped text of the first `<tag>` (no attributes) in `xml`.
fn element_text(xml: &str, tag: &str) -> Option<String> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(
        quick_xml::escape::unescape(&xml[start..end])
            .ok()?
            .into_owned(),
    )
}

#[tokio::test]
async fn benevity_accepts_an_api_key_with_a_signature_over_the_exact_bytes() {
    let sandbox = sandbox().await;
    let http = Client::new();
    // Unusual but valid spacing: the signature covers these bytes, not a
    // re-serialisation.
    let body = serde_json::to_vec_pretty(&benevity_body("d-1")).unwrap();

    let response = benevity_request(&http, &sandbox, "d-1", &body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let answer = json_of(response).await;
    let id = answer["id"].as_str().unwrap();
    assert!(id.starts_with("bnv_"), "{answer}");
    assert_eq!(answer["status"], "accepted");
    assert_eq!(answer["delivery_id"], "d-1");

    let received = sandbox_api::received(&sandbox, "").await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["provider"], "benevity");
    assert_eq!(received[0]["idempotencyKey"], "d-1");
    assert_eq!(received[0]["timesReceived"], 1);
    assert_eq!(received[0]["reference"], id);
    assert_eq!(received[0]["body"], benevity_body("d-1"));
}

#[tokio::test]
async fn benevity_refuses_wrong_or_missing_signatures_and_unknown_keys() {
    let sandbox = sandbox().await;
    let http = Client::new();
    let body = serde_json::to_vec(&benevity_body("d-1")).unwrap();
    let url = format!("{}/v1/impact-reports", sandbox.url());

    let cases = [
        (
            "signed with another secret",
            http.post(&url)
                .header("X-API-Key", credentials::BENEVITY_API_KEY)
                .header("X-Benevity-Signature", sign("not-the-secret", &body)),
            "invalid_signature",
        ),
        (
            "signed over other bytes",
            http.post(&url)
                .header("X-API-Key", credentials::BENEVITY_API_KEY)
                .header(
                    "X-Benevity-Signature",
                    sign(credentials::BENEVITY_SIGNATURE_SECRET, b"{}"),
                ),
            "invalid_signature",
        ),
        (
            "not signed",
            http.post(&url)
                .header("X-API-Key", credentials::BENEVITY_API_KEY),
            "invalid_signature",
        ),
        (
            "unknown key",
            http.post(&url).header("X-API-Key", "guessed").header(
                "X-Benevity-Signature",
                sign(credentials::BENEVITY_SIGNATURE_SECRET, &body),
            ),
            "invalid_api_key",
        ),
        ("no credentials", http.post(&url), "invalid_api_key"),
    ];
    for (case, request, error) in cases {
        let response = request
            .header("Content-Type", "application/json")
            .header("X-Idempotency-Key", "d-1")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
        let answer = json_of(response).await;
        assert_eq!(answer["error"], error, "{case}");
        assert!(answer["error_description"].is_string(), "{case}");
    }

    assert!(sandbox_api::received(&sandbox, "").await.is_empty());
    let stats = sandbox_api::read(&sandbox, "stats").await;
    assert_eq!(stats["requests"]["benevity"], 5, "rejected requests count");
}

#[tokio::test]
async fn benevity_timestamped_signatures_cover_timestamp_dot_body() {
    let sandbox = sandbox().await;
    let http = Client::new();
    let body = serde_json::to_vec(&benevity_body("d-ts")).unwrap();
    let timestamp = unix_now().to_string();
    let stamped = [timestamp.as_bytes(), b".", &body].concat();
    let send = |timestamp: String, signature: String| {
        http.post(format!("{}/v1/impact-reports", sandbox.url()))
            .header("Content-Type", "application/json")
            .header("X-Idempotency-Key", "d-ts")
            .header("X-API-Key", credentials::BENEVITY_API_KEY)
            .header("X-Benevity-Timestamp", timestamp)
            .header("X-Benevity-Signature", signature)
            .body(body.clone())
            .send()
    };
    let secret = credentials::BENEVITY_SIGNATURE_SECRET;

    let other_time = (unix_now() - 1).to_string();
    let refused = send(other_time, sign(secret, &stamped)).await.unwrap();
    assert_eq!(
        refused.status(),
        StatusCode::UNAUTHORIZED,
        "timestamp is signed"
    );
    let refused = send(timestamp.clone(), sign(secret, &body)).await.unwrap();
    assert_eq!(
        refused.status(),
        StatusCode::UNAUTHORIZED,
        "with a timestamp, the body alone is not what is signed"
    );
    let stale = (unix_now() - 3600).to_string();
    let stale_stamped = [stale.as_bytes(), b".", &body].concat();
    let refused = send(stale, sign(secret, &stale_stamped)).await.unwrap();
    assert_eq!(
        refused.status(),
        StatusCode::UNAUTHORIZED,
        "stale timestamp"
    );
    assert_eq!(json_of(refused).await["error"], "invalid_signature");

    let accepted = send(timestamp, sign(secret, &stamped)).await.unwrap();
    assert_eq!(accepted.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn benevity_accepts_an_additional_tenant_key_with_its_own_secret() {
    let config = SandboxConfig::default().with_benevity_api_key("tenant-key", "tenant-secret");
    let sandbox = Sandbox::start(config).await.unwrap();
    let http = Client::new();
    let body = serde_json::to_vec(&benevity_body("d-t")).unwrap();
    let send = |secret: &str| {
        http.post(format!("{}/v1/impact-reports", sandbox.url()))
            .header("Content-Type", "application/json")
            .header("X-Idempotency-Key", "d-t")
            .header("X-API-Key", "tenant-key")
            .header("X-Benevity-Signature", sign(secret, &body))
            .body(body.clone())
            .send()
    };

    let refused = send(credentials::BENEVITY_SIGNATURE_SECRET).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        send("tenant-secret").await.unwrap().status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn tokens_are_issued_used_and_expired() {
    let sandbox = sandbox().await;
    let http = Client::new();
    let client = (
        credentials::BENEVITY_CLIENT_ID,
        credentials::BENEVITY_CLIENT_SECRET,
    );
    let response = token(
        &http,
        format!("{}/oauth2/token", sandbox.url()),
        client,
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let issued = json_of(response).await;
    assert_eq!(issued["token_type"], "Bearer");
    assert_eq!(issued["expires_in"], 3600);
    let bearer = issued["access_token"].as_str().unwrap().to_owned();
    assert!(bearer.len() >= 32);

    let body = serde_json::to_vec(&benevity_body("d-oauth")).unwrap();
    let deliver = |signature: Option<String>| {
        let request = http
            .post(format!("{}/v1/impact-reports", sandbox.url()))
            .bearer_auth(&bearer)
            .header("Content-Type", "application/json")
            .header("X-Idempotency-Key", "d-oauth")
            .body(body.clone());
        match signature {
            Some(signature) => request.header("X-Benevity-Signature", signature),
            None => request,
        }
        .send()
    };

    let bad_signature = deliver(Some(sign("wrong", &body))).await.unwrap();
    assert_eq!(bad_signature.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(bad_signature).await["error"], "invalid_signature");
    let good_signature = sign(credentials::BENEVITY_SIGNATURE_SECRET, &body);
    assert_eq!(
        deliver(Some(good_signature)).await.unwrap().status(),
        StatusCode::CREATED
    );
    // No API key and no signature: the bearer token alone authenticates.
    assert_eq!(deliver(None).await.unwrap().status(), StatusCode::CREATED);

    assert_eq!(
        sandbox_api::control(&sandbox, "tokens/expire", json!({})).await,
        StatusCode::NO_CONTENT
    );
    let expired = deliver(None).await.unwrap();
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        expired.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );
    let answer = json_of(expired).await;
    assert_eq!(answer["error"], "invalid_token");
    assert_eq!(answer["error_description"], "the access token expired");

    let unknown = http
        .post(format!("{}/v1/impact-reports", sandbox.url()))
        .bearer_auth("made-up")
        .header("X-Idempotency-Key", "d-oauth")
        .json(&benevity_body("d-oauth"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        unknown.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );

    let stats = sandbox_api::read(&sandbox, "stats").await;
    assert_eq!(stats["tokensIssued"]["benevity"], 1);
    assert_eq!(stats["requests"]["benevity"], 5);
}

#[tokio::test(start_paused = true)]
async fn tokens_expire_after_expires_in_on_the_tokio_clock() {
    let sandbox = sandbox().await;
    let http = Client::new();
    let bearer = access_token(
        token(
            &http,
            format!("{}/ccx/oauth2/sandbox/token", sandbox.url()),
            (
                credentials::WORKDAY_CLIENT_ID,
                credentials::WORKDAY_CLIENT_SECRET,
            ),
            &[("grant_type", "client_credentials")],
        )
        .await,
    )
    .await;
    let deliver = |key: &'static str| {
        http.post(format!(
            "{}/ccx/api/csr/v3/sandbox/impactReports",
            sandbox.url()
        ))
        .bearer_auth(&bearer)
        .json(&workday_body(key))
        .send()
    };

    tokio::time::advance(Duration::from_secs(3599)).await;
    assert_eq!(deliver("w-1").await.unwrap().status(), StatusCode::CREATED);
    tokio::time::advance(Duration::from_secs(1)).await;
    let expired = deliver("w-2").await.unwrap();
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        json_of(expired).await["error_description"],
        "the access token expired"
    );
}

#[tokio::test]
async fn token_endpoints_answer_rfc_6749_errors() {
    let sandbox = sandbox().await;
    let http = Client::new();
    let url = format!("{}/oauth/token", sandbox.url());
    let goodera = (
        credentials::GOODERA_CLIENT_ID,
        credentials::GOODERA_CLIENT_SECRET,
    );

    let wrong_secret = token(
        &http,
        url.clone(),
        (credentials::GOODERA_CLIENT_ID, "wrong"),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(wrong_secret.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong_secret.headers().contains_key("www-authenticate"));
    assert_eq!(json_of(wrong_secret).await["error"], "invalid_client");

    // Another provider's client is unknown here.
    let foreign = token(
        &http,
        url.clone(),
        (
            credentials::BENEVITY_CLIENT_ID,
            credentials::BENEVITY_CLIENT_SECRET,
        ),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(json_of(foreign).await["error"], "invalid_client");

    let unsupported = token(
        &http,
        url.clone(),
        goodera,
        &[("grant_type", "refresh_token"), ("refresh_token", "x")],
    )
    .await;
    assert_eq!(unsupported.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        json_of(unsupported).await["error"],
        "unsupported_grant_type"
    );

    let no_grant = token(&http, url.clone(), goodera, &[("scope", "x")]).await;
    assert_eq!(no_grant.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(no_grant).await["error"], "invalid_request");

    let as_json = http
        .post(&url)
        .basic_auth(goodera.0, Some(goodera.1))
        .json(&json!({ "grant_type": "client_credentials" }))
        .send()
        .await
        .unwrap();
    assert_eq!(as_json.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(as_json).await["error"], "invalid_request");

    // Credentials in the form are accepted too.
    let in_form = http
        .post(&url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", goodera.0),
            ("client_secret", goodera.1),
        ])
        .send()
        .await
        .unwrap();
    let bearer = access_token(in_form).await;
    let delivered = goodera_request(&http, &sandbox, "g-1")
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(delivered.status(), StatusCode::CREATED);

    let stats = sandbox_api::read(&sandbox, "stats").await;
    assert_eq!(
        stats["tokensIssued"]["goodera"], 1,
        "only issued tokens count"
    );
    assert_eq!(
        stats["requests"]["goodera"], 1,
        "token requests are not API requests"
    );
}

#[tokio::test]
async fn workday_refresh_token_grant_and_tenant_bound_tokens() {
    let config = SandboxConfig::default().with_workday_tenant("acme");
    let sandbox = Sandbox::start(config).await.unwrap();
    let http = Client::new();
    let client = (
        credentials::WORKDAY_CLIENT_ID,
        credentials::WORKDAY_CLIENT_SECRET,
    );
    let token_url = |tenant: &str| format!("{}/ccx/oauth2/{tenant}/token", sandbox.url());
    let reports_url =
        |tenant: &str| format!("{}/ccx/api/csr/v3/{tenant}/impactReports", sandbox.url());

    let invalid = token(
        &http,
        token_url("sandbox"),
        client,
        &[("grant_type", "refresh_token"), ("refresh_token", "stolen")],
    )
    .await;
    assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(invalid).await["error"], "invalid_grant");

    let refreshed = token(
        &http,
        token_url("sandbox"),
        client,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", credentials::WORKDAY_REFRESH_TOKEN),
        ],
    )
    .await;
    let bearer = access_token(refreshed).await;
    let response = http
        .post(reports_url("sandbox"))
        .bearer_auth(&bearer)
        .json(&workday_body("w-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let answer = json_of(response).await;
    assert!(answer["id"].as_str().unwrap().starts_with("wd_"));
    assert_eq!(answer["externalReferenceId"], "w-1");

    let client_credentials = token(
        &http,
        token_url("sandbox"),
        client,
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(client_credentials.status(), StatusCode::OK);

    let other_tenant = http
        .post(reports_url("acme"))
        .bearer_auth(&bearer)
        .json(&workday_body("w-2"))
        .send()
        .await
        .unwrap();
    assert_eq!(other_tenant.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(other_tenant).await["error"], "invalid_token");

    let unknown_tenant = http
        .post(reports_url("nobody"))
        .bearer_auth(&bearer)
        .json(&workday_body("w-3"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_tenant.status(), StatusCode::NOT_FOUND);

    let no_token = http
        .post(reports_url("sandbox"))
        .json(&workday_body("w-4"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), StatusCode::UNAUTHORIZED);

    let stats = sandbox_api::read(&sandbox, "stats").await;
    assert_eq!(stats["tokensIssued"]["workday"], 2);
}

#[tokio::test]
async fn goodera_refuses_the_101st_request_of_a_minute_per_client() {
    let sandbox = sandbox().await;
    let http = Client::new();
    let before = unix_now();
    for n in 1..=100u32 {
        let response = goodera_request(&http, &sandbox, &format!("g-{n}"))
            .header("x-api-key", credentials::GOODERA_API_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED, "request {n}");
        assert_eq!(response.headers()["x-ratelimit-limit"], "100");
        assert_eq!(
            response.headers()["x-ratelimit-remaining"],
            (100 - n).to_string().as_str()
        );
    }

    let refused = goodera_request(&http, &sandbox, "g-101")
        .header("x-api-key", credentials::GOODERA_API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let header = |name: &str| -> u64 { refused.headers()[name].to_str().unwrap().parse().unwrap() };
    let retry_after = header("retry-after");
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(header("x-ratelimit-limit"), 100);
    assert_eq!(header("x-ratelimit-remaining"), 0);
    let reset = header("x-ratelimit-reset");
    assert!(
        reset > before && reset <= unix_now() + 61,
        "X-RateLimit-Reset {reset} is the epoch second the window closes"
    );
    let answer = json_of(refused).await;
    assert!(answer["error"].is_string() && answer["error_description"].is_string());

    // Another client has its own budget.
    let bearer = access_token(
        token(
            &http,
            format!("{}/oauth/token", sandbox.url()),
            (
                credentials::GOODERA_CLIENT_ID,
                credentials::GOODERA_CLIENT_SECRET,
            ),
            &[("grant_type", "client_credentials")],
        )
        .await,
    )
    .await;
    let other = goodera_request(&http, &sandbox, "g-other")
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::CREATED);
    assert_eq!(other.headers()["x-ratelimit-remaining"], "99");

    assert_eq!(sandbox_api::received(&sandbox, "").await.len(), 101);
}

#[tokio::test]
async fn bodies_off_the_schema_are_refused_with_422_naming_the_field() {
    let sandbox = sandbox().await;
    let http = Client::new();

    let mut goodera = goodera_body("g-1");
    goodera["impact_dimensions"][0]["scale"] = json!("percent");
    let response = http
        .post(format!("{}/v2/impact-data", sandbox.url()))
        .header("x-api-key", credentials::GOODERA_API_KEY)
        .header("Idempotency-Key", "g-1")
        .json(&goodera)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let answer = json_of(response).await;
    assert_eq!(answer["error"], "invalid_payload");
    assert_eq!(answer["field"], "impact_dimensions[0].scale");
    assert_eq!(
        answer["error_description"],
        "impact_dimensions[0].scale: must be \"normalized_0_1\""
    );

    let benevity_cases = [
        (
            "metrics.volunteer_count",
            json!(84.5),
            "/metrics/volunteer_count",
        ),
        ("outcomes[0].score", json!(1.2), "/outcomes/0/score"),
        (
            "donations[0].currency",
            json!("eur"),
            "/donations/0/currency",
        ),
        (
            "donations[0].amount_minor",
            json!(-1),
            "/donations/0/amount_minor",
        ),
        (
            "reporting_period.end_date",
            json!("2025-12-31"),
            "/reporting_period/end_date",
        ),
        ("schema_version", json!("1.1"), "/schema_version"),
        ("delivery_id", json!("another-key"), "/delivery_id"),
        ("metrics.vis_score", json!("78"), "/metrics/vis_score"),
        ("programs[0].donations", json!({}), "/programs/0/donations"),
    ];
    for (field, value, pointer) in benevity_cases {
        let mut body = benevity_body("d-1");
        *body.pointer_mut(pointer).unwrap() = value;
        let bytes = serde_json::to_vec(&body).unwrap();
        let response = benevity_request(&http, &sandbox, "d-1", &bytes)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field}"
        );
        assert_eq!(json_of(response).await["field"], field);
    }

    let mut missing = benevity_body("d-1");
    missing["metrics"]
        .as_object_mut()
        .unwrap()
        .remove("sroi_ratio");
    let bytes = serde_json::to_vec(&missing).unwrap();
    let response = benevity_request(&http, &sandbox, "d-1", &bytes)
        .send()
        .await
        .unwrap();
    let answer = json_of(response).await;
    assert_eq!(answer["field"], "metrics.sroi_ratio");
    assert_eq!(
        answer["error_description"],
        "metrics.sroi_ratio: is required"
    );

    let mut unknown = workday_body("w-1");
    unknown["programmes"] = json!([]);
    let bearer = access_token(
        token(
            &http,
            format!("{}/ccx/oauth2/sandbox/token", sandbox.url()),
            (
                credentials::WORKDAY_CLIENT_ID,
                credentials::WORKDAY_CLIENT_SECRET,
            ),
            &[("grant_type", "client_credentials")],
        )
        .await,
    )
    .await;
    let response = http
        .post(format!(
            "{}/ccx/api/csr/v3/sandbox/impactReports",
            sandbox.url()
        ))
        .bearer_auth(bearer)
        .json(&unknown)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json_of(response).await["field"], "programmes");

    assert!(
        sandbox_api::received(&sandbox, "").await.is_empty(),
        "refused bodies are not recorded"
    );
}

#[tokio::test]
async fn soap_envelope_with_good_credentials_is_accepted_and_unescaped() {
    let sandbox = sandbox().await;
    let http = Client::new();
    let envelope = soap_envelope(
        &sandbox_user(),
        credentials::WORKDAY_PASSWORD,
        &soap_report("s-1"),
    );

    let (status, answer) = post_soap(&http, &sandbox, envelope.clone()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let reference = element_text(&answer, "wd:Impact_Report_Reference").unwrap();
    let reference = reference.as_str();
    assert!(reference.starts_with("wd_"), "{answer}");
    assert!(answer.contains("<wd:Submit_Impact_Report_Response"));

    let received = sandbox_api::received(&sandbox, "").await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["provider"], "workday");
    assert_eq!(received[0]["idempotencyKey"], "s-1");
    assert_eq!(received[0]["reference"], reference);
    assert_eq!(received[0]["body"], envelope, "SOAP bodies are kept raw");

    // Namespaces count, not prefixes.
    let other_prefixes = envelope
        .replace("soapenv:", "s:")
        .replace("xmlns:soapenv", "xmlns:s")
        .replace("wsse:", "sec:")
        .replace("xmlns:wsse", "xmlns:sec")
        .replace("s-1<", "s-2<");
    let (status, answer) = post_soap(&http, &sandbox, other_prefixes).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

#[tokio::test]
async fn soap_bad_credentials_answer_an_authentication_fault() {
    let sandbox = sandbox().await;
    let http = Client::new();
    let report = soap_report("s-1");
    let good = soap_envelope(&sandbox_user(), credentials::WORKDAY_PASSWORD, &report);
    let cases = [
        (
            "wrong password",
            soap_envelope(&sandbox_user(), "guessed", &report),
        ),
        (
            "user without tenant",
            soap_envelope(
                credentials::WORKDAY_USERNAME,
                credentials::WORKDAY_PASSWORD,
                &report,
            ),
        ),
        (
            "user of another tenant",
            soap_envelope(
                &format!("{}@acme", credentials::WORKDAY_USERNAME),
                credentials::WORKDAY_PASSWORD,
                &report,
            ),
        ),
        (
            "digest password",
            good.replace("#PasswordText", "#PasswordDigest"),
        ),
        (
            "mustUnderstand missing",
            good.replace(r#" soapenv:mustUnderstand="1""#, ""),
        ),
        (
            "no WS-Security header in the WS-Security namespace",
            good.replace("oasis-200401-wss-wssecurity-secext-1.0.xsd", "wsse")
                .replace(r#" soapenv:mustUnderstand="1""#, ""),
        ),
    ];
    for (case, envelope) in cases {
        let (status, fault) = post_soap(&http, &sandbox, envelope).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{case}");
        assert_eq!(
            element_text(&fault, "faultcode").as_deref(),
            Some("soapenv:Client.authenticationError"),
            "{case}: {fault}"
        );
        assert!(fault.contains("<soapenv:Fault>"), "{case}");
    }

    // A header block in an unknown namespace that must be understood.
    let foreign_security = good.replace("oasis-200401-wss-wssecurity-secext-1.0.xsd", "wsse");
    let (_, fault) = post_soap(&http, &sandbox, foreign_security).await;
    assert_eq!(
        element_text(&fault, "faultcode").as_deref(),
        Some("soapenv:MustUnderstand")
    );

    let soap12 = good.replace(
        "http://schemas.xmlsoap.org/soap/envelope/",
        "http://www.w3.org/2003/05/soap-envelope",
    );
    let (_, fault) = post_soap(&http, &sandbox, soap12).await;
    assert_eq!(
        element_text(&fault, "faultcode").as_deref(),
        Some("soapenv:VersionMismatch")
    );
    assert!(sandbox_api::received(&sandbox, "").await.is_empty());
}

#[tokio::test]
async fn soap_invalid_data_answers_a_validation_fault_with_message_and_xpath() {
    let sandbox = sandbox().await;
    let http = Client::new();
    let report = soap_report("s-1");
    let cases = [
        (
            report.replace("<wd:Session_Count>96</wd:Session_Count>", ""),
            "/wd:Session_Count",
            "wd:Session_Count is required",
        ),
        (
            report.replace("1250.5", "lots"),
            "/wd:Volunteer_Hours",
            "must be a decimal number",
        ),
        (
            report.replace("<wd:Score>0.72</wd:Score>", "<wd:Score>1.5</wd:Score>"),
            "/wd:Outcome_Score[1]/wd:Score",
            "must be a number between 0 and 1",
        ),
        (
            report.replace("2026-01-01", "2026-06-01"),
            "/wd:Reporting_Period/wd:End_Date",
            "must not be before wd:Start_Date",
        ),
        (
            report.replacen(
                "<wd:Currency>EUR</wd:Currency>",
                "<wd:Currency>eur</wd:Currency>",
                1,
            ),
            "/wd:Donation[1]/wd:Currency",
            "must be three upper-case letters (ISO 4217)",
        ),
        (
            report.replace(
                "<wd:Amount_Minor>0</wd:Amount_Minor>",
                "<wd:Amount_Minor>1.5</wd:Amount_Minor>",
            ),
            "/wd:Program[1]/wd:Donation[1]/wd:Amount_Minor",
            "must be an integer >= 0",
        ),
    ];
    for (report, xpath, message) in cases {
        let envelope = soap_envelope(&sandbox_user(), credentials::WORKDAY_PASSWORD, &report);
        let (status, fault) = post_soap(&http, &sandbox, envelope).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{xpath}");
        assert_eq!(
            element_text(&fault, "faultcode").as_deref(),
            Some("soapenv:Client.validationError"),
            "{fault}"
        );
        assert_eq!(
            element_text(&fault, "faultstring").as_deref(),
            Some("Validation error occurred")
        );
        assert!(fault.contains("<wd:Validation_Fault><wd:Validation_Error>"));
        assert_eq!(
            element_text(&fault, "wd:Xpath").as_deref(),
            Some(format!("{SOAP_REQUEST_XPATH}{xpath}").as_str())
        );
        assert_eq!(element_text(&fault, "wd:Message").as_deref(), Some(message));
    }

    let out_of_order = report.replace(
        "<wd:SROI_Ratio>3.4</wd:SROI_Ratio>\n      <wd:VIS_Score>78.5</wd:VIS_Score>",
        "<wd:VIS_Score>78.5</wd:VIS_Score><wd:SROI_Ratio>3.4</wd:SROI_Ratio>",
    );
    let envelope = soap_envelope(
        &sandbox_user(),
        credentials::WORKDAY_PASSWORD,
        &out_of_order,
    );
    let (_, fault) = post_soap(&http, &sandbox, envelope).await;
    assert_eq!(
        element_text(&fault, "faultcode").as_deref(),
        Some("soapenv:Client.validationError"),
        "an XSD sequence is ordered: {fault}"
    );
    assert!(sandbox_api::received(&sandbox, "").await.is_empty());
}

#[tokio::test]
async fn a_repeated_idempotency_key_answers_the_original_response() {
    let sandbox = sandbox().await;
    let http = Client::new();
    let body = serde_json::to_vec(&benevity_body("d-1")).unwrap();

    let first = benevity_request(&http, &sandbox, "d-1", &body)
        .send()
        .await
        .unwrap();
    let first_status = first.status();
    let first_body = first.text().await.unwrap();
    let repeat = benevity_request(&http, &sandbox, "d-1", &body)
        .send()
        .await
        .unwrap();
    assert_eq!(repeat.status(), first_status);
    assert_eq!(repeat.text().await.unwrap(), first_body);

    // SOAP repeats are recognised by wd:External_Reference_ID.
    let envelope = soap_envelope(
        &sandbox_user(),
        credentials::WORKDAY_PASSWORD,
        &soap_report("d-1"),
    );
    let (_, first_soap) = post_soap(&http, &sandbox, envelope.clone()).await;
    let (status, repeat_soap) = post_soap(&http, &sandbox, envelope).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(repeat_soap, first_soap);

    let received = sandbox_api::received(&sandbox, "").await;
    assert_eq!(received.len(), 2, "one per provider: {received:?}");
    assert_eq!(received[0]["provider"], "benevity");
    assert_eq!(received[0]["timesReceived"], 2);
    assert_eq!(received[1]["provider"], "workday");
    assert_eq!(received[1]["timesReceived"], 2);
    // Stats count the repeats as requests, and each key once as a delivery.
    let counters = sandbox_api::read(&sandbox, "stats").await;
    assert_eq!(counters["requests"]["benevity"], 2);
    assert_eq!(counters["deliveries"]["benevity"], 1);
    assert_eq!(counters["deliveries"]["workday"], 1);

    let only_workday = http
        .get(format!(
            "{}/_sandbox/received?provider=workday",
            sandbox.url()
        ))
        .send()
        .await
        .unwrap();
    let only_workday = json_of(only_workday).await;
    assert_eq!(only_workday.as_array().unwrap().len(), 1);
    assert_eq!(
        sandbox_api::read(&sandbox, "stats").await["requests"]["benevity"],
        2
    );
}

#[tokio::test]
async fn queued_faults_answer_their_status_then_the_provider_recovers() {
    let sandbox = sandbox().await;
    let http = Client::new();
    let status = sandbox_api::control(
        &sandbox,
        "faults",
        json!({ "provider": "goodera", "count": 2, "status": 503, "retryAfterSecs": 7 }),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Token requests are not API requests: faults leave them alone.
    let bearer = access_token(
        token(
            &http,
            format!("{}/oauth/token", sandbox.url()),
            (
                credentials::GOODERA_CLIENT_ID,
                credentials::GOODERA_CLIENT_SECRET,
            ),
            &[("grant_type", "client_credentials")],
        )
        .await,
    )
    .await;
    for attempt in 1..=2 {
        let response = goodera_request(&http, &sandbox, "g-1")
            .bearer_auth(&bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "attempt {attempt}"
        );
        assert_eq!(response.headers()["retry-after"], "7");
        assert_eq!(json_of(response).await["error"], "sandbox_fault");
    }
    let third = goodera_request(&http, &sandbox, "g-1")
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), StatusCode::CREATED);

    // Another provider was never affected.
    let body = serde_json::to_vec(&benevity_body("d-1")).unwrap();
    let benevity = benevity_request(&http, &sandbox, "d-1", &body)
        .send()
        .await
        .unwrap();
    assert_eq!(benevity.status(), StatusCode::CREATED);

    let received = sandbox_api::received(&sandbox, "").await;
    assert_eq!(received.len(), 2);
    assert_eq!(received[0]["timesReceived"], 1, "faults are not received");
    assert_eq!(
        sandbox_api::read(&sandbox, "stats").await["requests"]["goodera"],
        3
    );
}

#[tokio::test]
async fn a_queued_drop_closes_the_connection_without_a_response() {
    let sandbox = sandbox().await;
    let http = Client::new();
    let status = sandbox_api::control(
        &sandbox,
        "drops",
        json!({ "provider": "benevity", "count": 1 }),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let body = serde_json::to_vec(&benevity_body("d-1")).unwrap();

    let dropped = benevity_request(&http, &sandbox, "d-1", &body)
        .send()
        .await
        .expect_err("no response");
    assert!(!dropped.is_timeout(), "{dropped:?}");
    assert!(dropped.status().is_none());
    let mut chain = dropped.to_string();
    let mut source = dropped.source();
    while let Some(cause) = source {
        chain.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    assert!(
        chain.contains("connection closed before message completed"),
        "{chain}"
    );

    let next = benevity_request(&http, &sandbox, "d-1", &body)
        .send()
        .await
        .unwrap();
    assert_eq!(next.status(), StatusCode::CREATED);
    let received = sandbox_api::received(&sandbox, "").await;
    assert_eq!(
        received[0]["timesReceived"], 1,
        "the dropped request is not received"
    );
    assert_eq!(
        sandbox_api::read(&sandbox, "stats").await["requests"]["benevity"],
        2
    );
}

#[tokio::test(start_paused = true)]
async fn latency_delays_every_api_response() {
    let sandbox = sandbox().await;
    let http = Client::new();
    let status = sandbox_api::control(
        &sandbox,
        "latency",
        json!({ "provider": "goodera", "ms": 2500 }),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let started = tokio::time::Instant::now();
    let response = goodera_request(&http, &sandbox, "g-1")
        .header("x-api-key", credentials::GOODERA_API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(started.elapsed() >= Duration::from_millis(2500));

    let started = tokio::time::Instant::now();
    let stats = sandbox_api::read(&sandbox, "stats").await;
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "the control API is not delayed"
    );
    assert_eq!(stats["requests"]["goodera"], 1);
}

#[tokio::test]
async fn reset_forgets_faults_latency_deliveries_and_counters_but_not_tokens() {
    let sandbox = sandbox().await;
    let http = Client::new();
    let bearer = access_token(
        token(
            &http,
            format!("{}/oauth/token", sandbox.url()),
            (
                credentials::GOODERA_CLIENT_ID,
                credentials::GOODERA_CLIENT_SECRET,
            ),
            &[("grant_type", "client_credentials")],
        )
        .await,
    )
    .await;
    let delivered = goodera_request(&http, &sandbox, "g-1")
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(delivered.status(), StatusCode::CREATED);
    let fault = json!({ "provider": "goodera", "count": 5, "status": 500 });
    assert_eq!(
        sandbox_api::control(&sandbox, "faults", fault).await,
        StatusCode::NO_CONTENT
    );
    let drop = json!({ "provider": "goodera", "count": 1 });
    assert_eq!(
        sandbox_api::control(&sandbox, "drops", drop).await,
        StatusCode::NO_CONTENT
    );

    assert_eq!(
        sandbox_api::control(&sandbox, "reset", json!({})).await,
        StatusCode::NO_CONTENT
    );
    assert!(sandbox_api::received(&sandbox, "").await.is_empty());
    let counters = sandbox_api::read(&sandbox, "stats").await;
    assert_eq!(
        counters,
        json!({
            "tokensIssued": { "benevity": 0, "goodera": 0, "workday": 0 },
            "requests": { "benevity": 0, "goodera": 0, "workday": 0 },
            "deliveries": { "benevity": 0, "goodera": 0, "workday": 0 },
            "ingestRequests": {
                "benevity-volunteers": 0, "benevity-donations": 0,
                "goodera-volunteers": 0, "goodera-donations": 0,
                "workday-directory": 0, "kintell-enrollments": 0,
                "upskilling-enrollments": 0, "buddy-data": 0,
                "mentorship-placements": 0
            },
            "metricsRequests": 0,
            "alertRequests": { "slack": 0, "pagerduty": 0 }
        })
    );

    let after = goodera_request(&http, &sandbox, "g-1")
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(
        after.status(),
        StatusCode::CREATED,
        "no fault left; token still valid"
    );
    assert_eq!(
        after.headers()["x-ratelimit-remaining"],
        "99",
        "a fresh window"
    );
    assert_eq!(
        sandbox_api::received(&sandbox, "").await[0]["timesReceived"],
        1
    );
}

#[tokio::test]
async fn injected_answers_redirect_give_a_chosen_body_or_break_off() {
    let sandbox = sandbox().await;
    // The sandbox's own redirect is what is under test: not followed here.
    let http = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let proxy_page = "<html><body>Forwarded by the proxy</body></html>";
    for fault in [
        json!({ "provider": "benevity", "count": 1, "status": 307,
                "location": "http://elsewhere.test/collect" }),
        json!({ "provider": "benevity", "count": 1, "status": 200,
                "body": proxy_page, "contentType": "text/html" }),
        json!({ "provider": "benevity", "count": 1, "status": 200,
                "body": "{\"id\":\"bnv_1\"}", "cutOff": true }),
    ] {
        assert_eq!(
            sandbox_api::control(&sandbox, "faults", fault).await,
            StatusCode::NO_CONTENT
        );
    }
    let body = serde_json::to_vec(&benevity_body("d-1")).unwrap();
    let send = || benevity_request(&http, &sandbox, "d-1", &body).send();

    let redirect = send().await.unwrap();
    assert_eq!(redirect.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        redirect.headers()["location"],
        "http://elsewhere.test/collect"
    );
    assert_eq!(json_of(redirect).await["error"], "sandbox_fault");

    let page = send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["content-type"], "text/html");
    assert_eq!(page.text().await.unwrap(), proxy_page);

    // The head arrives; the body stops after its first half.
    let mut broken = send().await.unwrap();
    assert_eq!(broken.status(), StatusCode::OK);
    assert_eq!(
        broken.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    let mut read = Vec::new();
    let failure = loop {
        match broken.chunk().await {
            Ok(Some(chunk)) => read.extend_from_slice(&chunk),
            Ok(None) => panic!("the body completed: {read:?}"),
            Err(err) => break err,
        }
    };
    assert_eq!(read, b"{\"id\":\"", "{failure}");

    let accepted = send().await.unwrap();
    assert_eq!(accepted.status(), StatusCode::CREATED, "faults are used up");
    let received = sandbox_api::received(&sandbox, "").await;
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0]["timesReceived"], 1,
        "injected answers, 2xx ones too, are not received"
    );
    assert_eq!(
        sandbox_api::read(&sandbox, "stats").await["requests"]["benevity"],
        4
    );
}

#[tokio::test]
async fn token_endpoint_faults_hit_the_token_endpoint_only() {
    let sandbox = sandbox().await;
    let http = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let workday_token = format!(
        "{}/ccx/oauth2/{}/token",
        sandbox.url(),
        credentials::WORKDAY_TENANT_ID
    );
    let client = (
        credentials::WORKDAY_CLIENT_ID,
        credentials::WORKDAY_CLIENT_SECRET,
    );
    let grant = [("grant_type", "client_credentials")];
    for (route, fault) in [
        (
            "faults",
            json!({ "provider": "workday", "endpoint": "token", "count": 1, "status": 308,
                    "location": "http://elsewhere.test/token" }),
        ),
        (
            "faults",
            json!({ "provider": "workday", "endpoint": "token", "count": 1, "status": 200,
                    "body": "<html>Sign in</html>", "contentType": "text/html" }),
        ),
        (
            "drops",
            json!({ "provider": "workday", "endpoint": "token", "count": 1 }),
        ),
    ] {
        assert_eq!(
            sandbox_api::control(&sandbox, route, fault).await,
            StatusCode::NO_CONTENT
        );
    }
    // API requests do not take token faults.
    let rest = http
        .post(format!(
            "{}/ccx/api/csr/v3/{}/impactReports",
            sandbox.url(),
            credentials::WORKDAY_TENANT_ID
        ))
        .json(&workday_body("w-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), StatusCode::UNAUTHORIZED);

    let redirect = token(&http, workday_token.clone(), client, &grant).await;
    assert_eq!(redirect.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        redirect.headers()["location"],
        "http://elsewhere.test/token"
    );
    let page = token(&http, workday_token.clone(), client, &grant).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.text().await.unwrap(), "<html>Sign in</html>");
    let dropped = http
        .post(&workday_token)
        .basic_auth(client.0, Some(client.1))
        .form(&grant)
        .send()
        .await;
    assert!(dropped.unwrap_err().status().is_none());
    access_token(token(&http, workday_token, client, &grant).await).await;

    let counters = sandbox_api::read(&sandbox, "stats").await;
    assert_eq!(counters["tokensIssued"]["workday"], 1);
    assert_eq!(
        counters["requests"]["workday"], 1,
        "token requests are not API requests"
    );
}

#[tokio::test]
async fn the_control_api_refuses_malformed_requests() {
    let sandbox = sandbox().await;
    let http = Client::new();
    let cases = [
        (
            "faults",
            json!({ "provider": "acme", "count": 1, "status": 503 }),
        ),
        (
            "faults",
            json!({ "provider": "goodera", "count": 1, "status": 200 }),
        ),
        (
            "faults",
            json!({ "provider": "goodera", "count": 1, "status": 503, "retry": 1 }),
        ),
        (
            "faults",
            json!({ "provider": "goodera", "count": 1, "status": 199, "body": "" }),
        ),
        (
            "faults",
            json!({ "provider": "goodera", "count": 1, "status": 600 }),
        ),
        (
            "faults",
            json!({ "provider": "goodera", "count": 1, "status": 307 }),
        ),
        (
            "faults",
            json!({ "provider": "goodera", "count": 1, "status": 503, "location": "http://x.test/" }),
        ),
        (
            "faults",
            json!({ "provider": "goodera", "count": 1, "status": 307, "location": "http://x.test/\n" }),
        ),
        (
            "faults",
            json!({ "provider": "goodera", "count": 1, "status": 503, "contentType": "text/html" }),
        ),
        (
            "faults",
            json!({ "provider": "goodera", "endpoint": "webhook", "count": 1, "status": 503 }),
        ),
        ("drops", json!({ "provider": "goodera" })),
        ("latency", json!({ "provider": "goodera", "ms": -1 })),
        (
            "faults",
            json!({ "provider": "goodera", "stream": "goodera-volunteers", "count": 1, "status": 503 }),
        ),
        (
            "faults",
            json!({ "stream": "goodera-volunteers", "endpoint": "token", "count": 1, "status": 503 }),
        ),
        (
            "faults",
            json!({ "stream": "acme", "count": 1, "status": 503 }),
        ),
        ("faults", json!({ "count": 1, "status": 503 })),
        (
            "faults",
            json!({ "stream": "buddy-data", "count": 1, "status": 503, "afterRequests": -1 }),
        ),
        (
            "drops",
            json!({ "stream": "buddy-data", "endpoint": "api", "count": 1 }),
        ),
        ("latency", json!({ "ms": 5 })),
        ("ingest", json!({ "records": 100_000_001 })),
        ("ingest", json!({ "records": -1 })),
        ("ingest", json!({ "records": 5, "stream": "acme" })),
        (
            "ingest/changes",
            json!({ "stream": "buddy-data", "count": 0 }),
        ),
        (
            "ingest/changes",
            json!({ "stream": "buddy-data", "count": 251 }),
        ),
        ("ingest/changes", json!({ "count": 1 })),
        (
            "ingest/malformed",
            json!({ "stream": "buddy-data", "indices": [0, 250] }),
        ),
    ];
    for (route, body) in cases {
        let response = http
            .post(format!("{}/_sandbox/{route}", sandbox.url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{route} {body}");
        assert_eq!(json_of(response).await["error"], "invalid_request");
    }
    let response = http
        .get(format!("{}/_sandbox/received?provider=acme", sandbox.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let sandbox = sandbox().await;
    let addr = sandbox.addr();
    assert_eq!(sandbox.url(), format!("http://127.0.0.1:{}", addr.port()));
    assert!(sandbox_api::read(&sandbox, "stats").await.is_object());

    sandbox.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn dropping_the_sandbox_stops_the_server() {
    let sandbox = sandbox().await;
    let addr = sandbox.addr();
    drop(sandbox);
    // The server task notices on its next poll; give it turns, not time.
    let mut refused = false;
    for _ in 0..1000 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(refused, "the listener closed after the drop");
}

#[tokio::test]
async fn additional_credentials_are_accepted_next_to_the_documented_ones() {
    let config = SandboxConfig::default()
        .with_benevity_client("bnv-tenant", "bnv-tenant-secret")
        .with_goodera_client("gdr-tenant", "gdr-tenant-secret")
        .with_goodera_api_key("gdr-tenant-key")
        .with_workday_tenant("acme")
        .with_workday_client("wd-tenant", "wd-tenant-secret", "wd-tenant-refresh")
        .with_workday_user("acme-integration", "acme-password");
    let sandbox = Sandbox::start(config).await.unwrap();
    let http = Client::new();
    let client_credentials = [("grant_type", "client_credentials")];

    let benevity = token(
        &http,
        format!("{}/oauth2/token", sandbox.url()),
        ("bnv-tenant", "bnv-tenant-secret"),
        &client_credentials,
    )
    .await;
    assert_eq!(benevity.status(), StatusCode::OK);
    let goodera = token(
        &http,
        format!("{}/oauth/token", sandbox.url()),
        ("gdr-tenant", "gdr-tenant-secret"),
        &client_credentials,
    )
    .await;
    assert_eq!(goodera.status(), StatusCode::OK);
    let by_key = goodera_request(&http, &sandbox, "g-1")
        .header("x-api-key", "gdr-tenant-key")
        .send()
        .await
        .unwrap();
    assert_eq!(by_key.status(), StatusCode::CREATED);
    let still_default = goodera_request(&http, &sandbox, "g-2")
        .header("x-api-key", credentials::GOODERA_API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(still_default.status(), StatusCode::CREATED);

    let workday_url = format!("{}/ccx/oauth2/acme/token", sandbox.url());
    let refresh = async |refresh_token: &str| {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        let client = ("wd-tenant", "wd-tenant-secret");
        token(&http, workday_url.clone(), client, &form).await
    };
    assert_eq!(refresh("wd-tenant-refresh").await.status(), StatusCode::OK);
    let others = refresh(credentials::WORKDAY_REFRESH_TOKEN).await;
    assert_eq!(
        json_of(others).await["error"],
        "invalid_grant",
        "a refresh token belongs to its client"
    );

    let envelope = soap_envelope(
        "acme-integration@acme",
        "acme-password",
        &soap_report("s-1"),
    );
    let response = http
        .post(format!(
            "{}/ccx/service/acme/CSR_Impact/v3.0",
            sandbox.url()
        ))
        .header("Content-Type", "text/xml; charset=UTF-8")
        .header("SOAPAction", "\"Submit_Impact_Report\"")
        .body(envelope)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_sandbox_command_prints_the_variables_and_stops_on_sigterm() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_impact-in"))
        .args(["sandbox", "--port", "0", "--records", "3"])
        .env_clear()
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let (last_name, _) = *credentials::env_vars("").last().unwrap();
    while let Some(line) = lines.next_line().await.unwrap() {
        let last = line.starts_with(&format!("{last_name}="));
        printed.push(line);
        if last {
            break;
        }
    }
    // Stdout is the variables alone, so it can be saved as a `.env`; the
    // SANDBOX warning is a log line, on stderr.
    for line in &printed {
        let (name, value) = line.split_once('=').expect("only VAR=value lines");
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                && !value.is_empty(),
            "{line}"
        );
    }
    let url = printed
        .iter()
        .find_map(|line| line.strip_prefix("BENEVITY_API_URL="))
        .expect("the API URL is printed")
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    for (name, value) in [
        ("BENEVITY_API_KEY", credentials::BENEVITY_API_KEY),
        ("WORKDAY_TENANT_ID", credentials::WORKDAY_TENANT_ID),
        ("GOODERA_CLIENT_SECRET", credentials::GOODERA_CLIENT_SECRET),
    ] {
        assert!(
            printed.contains(&format!("{name}={value}")),
            "{name}: {printed:?}"
        );
    }
    assert!(printed.contains(&format!("WORKDAY_TOKEN_URL={url}/ccx/oauth2/sandbox/token")));
    assert!(printed.contains(&format!("KINTELL_CONNECTOR_URL={url}/kintell")));
    assert!(printed.contains(&format!(
        "SLACK_WEBHOOK_URL={url}/slack/services/TSANDBOX/BSANDBOX/sandbox"
    )));
    assert!(printed.contains(&format!("PAGERDUTY_EVENTS_URL={url}/pagerduty/v2/enqueue")));

    let stats = Client::new()
        .get(format!("{url}/_sandbox/stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(stats.status(), StatusCode::OK);
    let enrollments = Client::new()
        .get(format!("{url}/kintell/v1/enrollments"))
        .bearer_auth(credentials::INTERNAL_API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(
        json_of(enrollments).await["data"].as_array().unwrap().len(),
        3,
        "--records sets the volume"
    );

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the sandbox stops on SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert_eq!(
        lines.next_line().await.unwrap(),
        None,
        "nothing more on stdout"
    );
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(stderr.contains("provider SANDBOX"), "{stderr}");
}

// The ingest sources.

/// A client of the ingest streams that pages them as the contract says, with
/// each platform's credentials.
struct Ingest<'s> {
    sandbox: &'s Sandbox,
    http: Client,
    benevity_token: String,
    workday_token: String,
}

impl<'s> Ingest<'s> {
    async fn new(sandbox: &'s Sandbox) -> Self {
        let http = Client::new();
        let client_credentials = [("grant_type", "client_credentials")];
        let benevity_token = access_token(
            token(
                &http,
                format!("{}/oauth2/token", sandbox.url()),
                (
                    credentials::BENEVITY_CLIENT_ID,
                    credentials::BENEVITY_CLIENT_SECRET,
                ),
                &client_credentials,
            )
            .await,
        )
        .await;
        let workday_token = access_token(
            token(
                &http,
                format!("{}/ccx/oauth2/sandbox/token", sandbox.url()),
                (
                    credentials::WORKDAY_CLIENT_ID,
                    credentials::WORKDAY_CLIENT_SECRET,
                ),
                &client_credentials,
            )
            .await,
        )
        .await;
        Self {
            sandbox,
            http,
            benevity_token,
            workday_token,
        }
    }

    /// A page request to `stream` without credentials.
    fn bare(&self, stream: Stream, query: &[(&str, String)]) -> RequestBuilder {
        let url = self.sandbox.url();
        let path = match stream {
            Stream::BenevityVolunteers => format!(
                "/v2/tenants/{}/volunteer-records",
                credentials::BENEVITY_TENANT_ID
            ),
            Stream::BenevityDonations => format!(
                "/v2/tenants/{}/donation-records",
                credentials::BENEVITY_TENANT_ID
            ),
            Stream::GooderaVolunteers => format!(
                "/v1/projects/{}/volunteers",
                credentials::GOODERA_PROJECT_ID
            ),
            Stream::GooderaDonations => {
                format!("/v1/projects/{}/donations", credentials::GOODERA_PROJECT_ID)
            }
            Stream::WorkdayDirectory => "/ccx/scim/v2/sandbox/Users".to_owned(),
            Stream::KintellEnrollments => "/kintell/v1/enrollments".to_owned(),
            Stream::UpskillingEnrollments => "/upskilling/v1/enrollments".to_owned(),
            Stream::BuddyData => "/buddy/v1/check-ins".to_owned(),
            Stream::MentorshipPlacements => "/mentorship/v1/placements".to_owned(),
        };
        self.http.get(format!("{url}{path}")).query(query)
    }

    /// A page request to `stream` with good credentials.
    fn request(&self, stream: Stream, query: &[(&str, String)]) -> RequestBuilder {
        let request = self.bare(stream, query);
        match stream {
            Stream::BenevityVolunteers | Stream::BenevityDonations => {
                request.bearer_auth(&self.benevity_token)
            }
            Stream::GooderaVolunteers | Stream::GooderaDonations => {
                request.header("X-API-Key", credentials::GOODERA_API_KEY)
            }
            Stream::WorkdayDirectory => request.bearer_auth(&self.workday_token),
            _ => request.bearer_auth(credentials::INTERNAL_API_KEY),
        }
    }

    /// One page, which must be a 200; its JSON.
    async fn page(&self, stream: Stream, query: &[(&str, String)]) -> Value {
        let response = self.request(stream, query).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{stream} {query:?}");
        json_of(response).await
    }

    /// Pages `stream` to its end from `since` (inclusive), `size` records a
    /// page, as a connector would; the records in the order served.
    async fn pull(&self, stream: Stream, since: Option<&str>, size: u64) -> Vec<Value> {
        let mut records: Vec<Value> = Vec::new();
        let mut cursor: Option<String> = None;
        for number in 1u64.. {
            let mut query = Vec::new();
            let (items, more) = match stream {
                Stream::GooderaVolunteers | Stream::GooderaDonations => {
                    query.extend(since.map(|since| ("since", since.to_owned())));
                    query.extend([("page", number.to_string()), ("pageSize", size.to_string())]);
                    let page = self.page(stream, &query).await;
                    assert_eq!(page["page"], number);
                    (page["items"].clone(), page["hasMore"].as_bool().unwrap())
                }
                Stream::WorkdayDirectory => {
                    let filter = since.map(|since| format!("meta.lastModified ge \"{since}\""));
                    query.extend(filter.map(|filter| ("filter", filter)));
                    query.extend([
                        ("sortBy", "meta.lastModified".to_owned()),
                        ("sortOrder", "ascending".to_owned()),
                        ("startIndex", (records.len() + 1).to_string()),
                        ("count", size.to_string()),
                    ]);
                    let page = self.page(stream, &query).await;
                    let resources = page["Resources"].clone();
                    assert_eq!(page["itemsPerPage"], resources.as_array().unwrap().len());
                    // An empty page is the end, whatever the total says.
                    let more = !resources.as_array().unwrap().is_empty();
                    (resources, more)
                }
                _ => {
                    let since_name = match stream {
                        Stream::BenevityVolunteers | Stream::BenevityDonations => "updatedSince",
                        _ => "since",
                    };
                    query.extend(since.map(|since| (since_name, since.to_owned())));
                    query.push(("limit", size.to_string()));
                    query.extend(cursor.take().map(|cursor| ("cursor", cursor)));
                    let page = self.page(stream, &query).await;
                    cursor = page["nextCursor"].as_str().map(str::to_owned);
                    (page["data"].clone(), cursor.is_some())
                }
            };
            records.extend(items.as_array().unwrap().iter().cloned());
            if !more {
                break;
            }
        }
        records
    }
}

fn id_of(stream: Stream, record: &Value) -> &str {
    let field = match stream {
        Stream::GooderaVolunteers => "volunteerId",
        Stream::GooderaDonations => "donationId",
        _ => "id",
    };
    record[field].as_str().unwrap()
}

fn updated_at_of(stream: Stream, record: &Value) -> &str {
    match stream {
        Stream::GooderaVolunteers | Stream::GooderaDonations => &record["lastModified"],
        Stream::WorkdayDirectory => &record["meta"]["lastModified"],
        _ => &record["updatedAt"],
    }
    .as_str()
    .unwrap()
}

fn ids(stream: Stream, records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|record| id_of(stream, record).to_owned())
        .collect()
}

/// The id of base record `index`.
fn base_id(stream: Stream, index: u64) -> String {
    id_of(stream, &ingest::record(stream, index)).to_owned()
}

/// Strictly ascending `(updatedAt, id)`; the number of ties.
fn assert_in_order(stream: Stream, records: &[Value]) -> usize {
    let keys: Vec<(&str, &str)> = records
        .iter()
        .map(|record| (updated_at_of(stream, record), id_of(stream, record)))
        .collect();
    for pair in keys.windows(2) {
        assert!(
            pair[0] < pair[1],
            "{stream}: {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
    keys.windows(2)
        .filter(|pair| pair[0].0 == pair[1].0)
        .count()
}

#[tokio::test]
async fn every_stream_pages_to_the_end_in_order_without_gaps_or_repeats() {
    let sandbox = Sandbox::start(SandboxConfig::default().with_records(230))
        .await
        .unwrap();
    let ingest = Ingest::new(&sandbox).await;
    for &stream in Stream::VARIANTS {
        let records = ingest.pull(stream, None, 17).await;
        assert_eq!(records.len(), 230, "{stream}");
        let distinct: HashSet<String> = ids(stream, &records).into_iter().collect();
        assert_eq!(distinct.len(), 230, "{stream}: no id twice");
        assert_eq!(
            assert_in_order(stream, &records),
            5,
            "{stream}: records 0 and 1, 50 and 51, … 200 and 201 tie"
        );
        for (index, record) in records.iter().enumerate() {
            assert_eq!(
                *record,
                ingest::record(stream, index as u64),
                "{stream} {index}"
            );
        }
        assert!(
            ingest::pii_of(stream, 7)
                .iter()
                .all(|pii| records[7].to_string().contains(pii.as_str())),
            "{stream}: the personal data of record 7 is in it"
        );
        let again = ingest.pull(stream, None, 17).await;
        assert_eq!(
            serde_json::to_string(&again).unwrap(),
            serde_json::to_string(&records).unwrap(),
            "{stream}: the same records, byte for byte"
        );
    }
    let stats = sandbox_api::read(&sandbox, "stats").await;
    assert_eq!(stats["ingestRequests"]["benevity-volunteers"], 28);
    assert_eq!(stats["ingestRequests"]["workday-directory"], 30, "{stats}");
    assert_eq!(stats["requests"]["goodera"], 0, "pulls are not deliveries");
}

#[tokio::test]
async fn since_is_inclusive_so_a_tie_comes_back_whole() {
    let sandbox = sandbox().await;
    let ingest = Ingest::new(&sandbox).await;
    for &stream in Stream::VARIANTS {
        // Records 50 and 51 share their instant.
        let tie = updated_at_of(stream, &ingest::record(stream, 51)).to_owned();
        assert_eq!(tie, updated_at_of(stream, &ingest::record(stream, 50)));
        let records = ingest.pull(stream, Some(&tie), 40).await;
        assert_eq!(records.len(), 200, "{stream}");
        assert_eq!(
            ids(stream, &records[..3]),
            [50, 51, 52].map(|index| base_id(stream, index)),
            "{stream}"
        );
    }

    // SCIM's gt leaves the tie out.
    let tie = updated_at_of(
        Stream::WorkdayDirectory,
        &ingest::record(Stream::WorkdayDirectory, 51),
    )
    .to_owned();
    let page = ingest
        .page(
            Stream::WorkdayDirectory,
            &[("filter", format!("meta.lastModified gt \"{tie}\""))],
        )
        .await;
    assert_eq!(page["totalResults"], 198);
    assert_eq!(
        id_of(Stream::WorkdayDirectory, &page["Resources"][0]),
        base_id(Stream::WorkdayDirectory, 52)
    );
}

#[tokio::test]
async fn changed_records_move_to_the_end_and_the_next_run_gets_only_them() {
    let sandbox = Sandbox::start(SandboxConfig::default().with_records(60))
        .await
        .unwrap();
    let ingest = Ingest::new(&sandbox).await;
    for &stream in Stream::VARIANTS {
        let first_run = ingest.pull(stream, None, 25).await;
        let seen = updated_at_of(stream, first_run.last().unwrap()).to_owned();
        let change = json!({ "stream": stream, "count": 3 });
        assert_eq!(
            sandbox_api::control(&sandbox, "ingest/changes", change).await,
            StatusCode::NO_CONTENT
        );

        // From the last instant seen: that record again (inclusive), then
        // the three changed ones.
        let second_run = ingest.pull(stream, Some(&seen), 25).await;
        assert_eq!(
            ids(stream, &second_run),
            [59, 0, 1, 2].map(|index| base_id(stream, index)),
            "{stream}"
        );
        assert_eq!(second_run[0], first_run[59]);
        for changed in &second_run[1..] {
            assert!(updated_at_of(stream, changed) > seen.as_str(), "{stream}");
        }
        let before = &first_run[0];
        let after = &second_run[1];
        assert_ne!(before, after, "{stream}: the content changed too");

        // A whole run has each record once, the changed ones last.
        let whole = ingest.pull(stream, None, 25).await;
        assert_eq!(whole.len(), 60);
        assert_in_order(stream, &whole);
        assert_eq!(&whole[57..], &second_run[1..], "{stream}");

        // The next change goes on with records 3 and 4.
        let seen = updated_at_of(stream, whole.last().unwrap()).to_owned();
        let change = json!({ "stream": stream, "count": 2 });
        assert_eq!(
            sandbox_api::control(&sandbox, "ingest/changes", change).await,
            StatusCode::NO_CONTENT
        );
        let third_run = ingest.pull(stream, Some(&seen), 25).await;
        assert_eq!(
            ids(stream, &third_run),
            [2, 3, 4].map(|index| base_id(stream, index)),
            "{stream}"
        );
    }
}

#[tokio::test]
async fn a_record_changed_during_a_run_is_reached_at_its_end() {
    let sandbox = Sandbox::start(SandboxConfig::default().with_records(30))
        .await
        .unwrap();
    let ingest = Ingest::new(&sandbox).await;
    let stream = Stream::KintellEnrollments;
    let first = ingest.page(stream, &[("limit", "10".to_owned())]).await;
    // Record 0, already served, changes before the second page.
    let change = json!({ "stream": stream, "count": 1 });
    assert_eq!(
        sandbox_api::control(&sandbox, "ingest/changes", change).await,
        StatusCode::NO_CONTENT
    );
    let mut records: Vec<Value> = first["data"].as_array().unwrap().clone();
    let mut cursor = first["nextCursor"].as_str().map(str::to_owned);
    while let Some(after) = cursor.take() {
        let page = ingest
            .page(stream, &[("limit", "10".to_owned()), ("cursor", after)])
            .await;
        records.extend(page["data"].as_array().unwrap().iter().cloned());
        cursor = page["nextCursor"].as_str().map(str::to_owned);
    }
    assert_eq!(records.len(), 31, "30 records and record 0 again");
    assert_eq!(id_of(stream, &records[30]), base_id(stream, 0));
    assert_ne!(records[30], records[0]);
}

#[tokio::test]
async fn scim_filters_start_indices_and_an_empty_page_past_the_end() {
    let sandbox = sandbox().await;
    let ingest = Ingest::new(&sandbox).await;
    let stream = Stream::WorkdayDirectory;

    let response = ingest
        .request(
            stream,
            &[("startIndex", "241".into()), ("count", "20".into())],
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/scim+json");
    let page = json_of(response).await;
    assert_eq!(
        page["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"])
    );
    assert_eq!(page["totalResults"], 250);
    assert_eq!(page["startIndex"], 241);
    assert_eq!(page["itemsPerPage"], 10);
    assert_eq!(page["Resources"][0], ingest::record(stream, 240));

    let past = ingest.page(stream, &[("startIndex", "251".into())]).await;
    assert_eq!(past["Resources"], json!([]));
    assert_eq!(
        (past["totalResults"].clone(), past["itemsPerPage"].clone()),
        (json!(250), json!(0))
    );

    // RFC 7644 §3.4.2.4: startIndex below 1 is 1; count 0 lists nothing.
    let first = ingest
        .page(stream, &[("startIndex", "0".into()), ("count", "2".into())])
        .await;
    assert_eq!(first["startIndex"], 1);
    assert_eq!(first["Resources"][0], ingest::record(stream, 0));
    let none = ingest.page(stream, &[("count", "0".into())]).await;
    assert_eq!(none["Resources"], json!([]));

    let since = updated_at_of(stream, &ingest::record(stream, 200)).to_owned();
    let filtered = ingest
        .page(
            stream,
            &[("filter", format!("meta.lastModified ge \"{since}\""))],
        )
        .await;
    assert_eq!(filtered["totalResults"], 50);

    for (name, value, scim_type) in [
        (
            "filter",
            r#"meta.lastModified eq "2026-01-01T00:00:00Z""#,
            "invalidFilter",
        ),
        ("filter", r#"userName eq "someone""#, "invalidFilter"),
        ("filter", "meta.lastModified ge 2026-01-01", "invalidFilter"),
        (
            "filter",
            r#"meta.lastModified ge "2026-13-01T00:00:00Z""#,
            "invalidFilter",
        ),
        ("sortOrder", "descending", "invalidValue"),
        ("sortBy", "userName", "invalidValue"),
        ("count", "ten", "invalidValue"),
    ] {
        let response = ingest
            .request(stream, &[(name, value.to_owned())])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{name}={value}");
        let error = json_of(response).await;
        assert_eq!(
            error["schemas"],
            json!(["urn:ietf:params:scim:api:messages:2.0:Error"])
        );
        assert_eq!(error["status"], "400");
        assert_eq!(error["scimType"], scim_type, "{name}={value}");
        assert!(
            error["detail"].as_str().unwrap().contains(name),
            "{name}={value}: {error}"
        );
    }
}

#[tokio::test]
async fn goodera_pulls_and_deliveries_share_one_budget_per_key() {
    let sandbox = sandbox().await;
    let ingest = Ingest::new(&sandbox).await;
    let http = Client::new();
    for n in 1..=60 {
        let delivered = goodera_request(&http, &sandbox, &format!("g-{n}"))
            .header("x-api-key", credentials::GOODERA_API_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(delivered.status(), StatusCode::CREATED);
    }
    let query = [("pageSize", "5".to_owned())];
    for n in 1..=40 {
        let pulled = ingest
            .request(Stream::GooderaDonations, &query)
            .send()
            .await
            .unwrap();
        assert_eq!(pulled.status(), StatusCode::OK);
        assert_eq!(
            pulled.headers()["x-ratelimit-remaining"],
            (40 - n).to_string().as_str()
        );
    }

    let refused = ingest
        .request(Stream::GooderaVolunteers, &query)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_eq!(json_of(refused).await["error"], "rate_limit_exceeded");
    let delivery = goodera_request(&http, &sandbox, "g-61")
        .header("x-api-key", credentials::GOODERA_API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(delivery.status(), StatusCode::TOO_MANY_REQUESTS);

    let stats = sandbox_api::read(&sandbox, "stats").await;
    assert_eq!(stats["requests"]["goodera"], 61);
    assert_eq!(stats["ingestRequests"]["goodera-donations"], 40);
    assert_eq!(stats["ingestRequests"]["goodera-volunteers"], 1);
}

#[tokio::test]
async fn a_fault_after_n_pages_hits_its_stream_once_then_paging_resumes() {
    let sandbox = sandbox().await;
    let ingest = Ingest::new(&sandbox).await;
    let stream = Stream::GooderaVolunteers;
    let fault = json!({
        "stream": stream, "afterRequests": 2, "count": 1, "status": 503, "retryAfterSecs": 3
    });
    assert_eq!(
        sandbox_api::control(&sandbox, "faults", fault).await,
        StatusCode::NO_CONTENT
    );
    // A provider's faults and another stream's requests leave it alone.
    let delivery_fault = json!({ "provider": "goodera", "count": 1, "status": 500 });
    assert_eq!(
        sandbox_api::control(&sandbox, "faults", delivery_fault).await,
        StatusCode::NO_CONTENT
    );
    let page = |number: u64| [("page", number.to_string()), ("pageSize", "50".to_owned())];
    assert_eq!(ingest.page(stream, &page(1)).await["page"], 1);
    ingest.page(Stream::GooderaDonations, &page(1)).await;
    assert_eq!(ingest.page(stream, &page(2)).await["page"], 2);

    let faulted = ingest.request(stream, &page(3)).send().await.unwrap();
    assert_eq!(faulted.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(faulted.headers()["retry-after"], "3");
    assert_eq!(json_of(faulted).await["error"], "sandbox_fault");
    let resumed = ingest.page(stream, &page(3)).await;
    assert_eq!(resumed["items"][0], ingest::record(stream, 100));

    let delivery = goodera_request(&Client::new(), &sandbox, "g-1")
        .header("x-api-key", credentials::GOODERA_API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(delivery.status(), StatusCode::INTERNAL_SERVER_ERROR);

    // A dropped connection on an internal service's second page.
    let stream = Stream::MentorshipPlacements;
    let drop = json!({ "stream": stream, "afterRequests": 1, "count": 1 });
    assert_eq!(
        sandbox_api::control(&sandbox, "drops", drop).await,
        StatusCode::NO_CONTENT
    );
    let first = ingest.page(stream, &[("limit", "5".into())]).await;
    let next = [
        ("limit", "5".to_owned()),
        ("cursor", first["nextCursor"].as_str().unwrap().to_owned()),
    ];
    let dropped = ingest.request(stream, &next).send().await;
    assert!(dropped.is_err(), "{dropped:?}");
    let again = ingest.page(stream, &next).await;
    assert_eq!(again["data"][0], ingest::record(stream, 5));

    let stats = sandbox_api::read(&sandbox, "stats").await;
    assert_eq!(stats["ingestRequests"]["goodera-volunteers"], 4);
    assert_eq!(stats["ingestRequests"]["mentorship-placements"], 3);
}

#[tokio::test]
async fn ingest_routes_check_credentials_tenants_and_token_expiry() {
    let sandbox = sandbox().await;
    let ingest = Ingest::new(&sandbox).await;
    let http = Client::new();
    let url = sandbox.url();
    let status_and_error = async |request: RequestBuilder| {
        let response = request.send().await.unwrap();
        let status = response.status();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|value| value.to_str().unwrap().to_owned());
        (status, json_of(response).await["error"].clone(), challenge)
    };
    let unauthenticated = (
        StatusCode::UNAUTHORIZED,
        json!("unauthorized"),
        Some("Bearer".to_owned()),
    );
    let invalid_token = (
        StatusCode::UNAUTHORIZED,
        json!("invalid_token"),
        Some(r#"Bearer error="invalid_token""#.to_owned()),
    );
    for stream in [
        Stream::BenevityDonations,
        Stream::WorkdayDirectory,
        Stream::BuddyData,
    ] {
        assert_eq!(
            status_and_error(ingest.bare(stream, &[])).await,
            unauthenticated,
            "{stream}"
        );
        assert_eq!(
            status_and_error(ingest.bare(stream, &[]).bearer_auth("made-up")).await,
            invalid_token,
            "{stream}"
        );
    }
    let goodera = ingest.bare(Stream::GooderaDonations, &[]);
    assert_eq!(status_and_error(goodera).await, unauthenticated);
    let goodera = ingest
        .bare(Stream::GooderaDonations, &[])
        .header("X-API-Key", "made-up");
    assert_eq!(
        status_and_error(goodera).await,
        (StatusCode::UNAUTHORIZED, json!("invalid_api_key"), None)
    );
    // Another platform's token is as unknown as a made-up one.
    let workday_token_at_benevity = ingest
        .bare(Stream::BenevityVolunteers, &[])
        .bearer_auth(&ingest.workday_token);
    assert_eq!(
        status_and_error(workday_token_at_benevity).await,
        invalid_token
    );

    for unknown in [
        format!("{url}/v2/tenants/acme/volunteer-records"),
        format!("{url}/v1/projects/acme/donations"),
        format!("{url}/ccx/scim/v2/acme/Users"),
    ] {
        let response = http
            .get(&unknown)
            .bearer_auth(&ingest.benevity_token)
            .header("X-API-Key", credentials::GOODERA_API_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{unknown}");
    }

    assert_eq!(
        sandbox_api::control(&sandbox, "tokens/expire", json!({})).await,
        StatusCode::NO_CONTENT
    );
    for stream in [Stream::BenevityVolunteers, Stream::WorkdayDirectory] {
        let response = ingest.request(stream, &[]).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{stream}");
        assert_eq!(
            response.headers()["www-authenticate"],
            r#"Bearer error="invalid_token""#
        );
        assert_eq!(
            json_of(response).await["error_description"],
            "the access token expired"
        );
    }
    // The internal key and Goodera's API key do not expire.
    ingest.page(Stream::KintellEnrollments, &[]).await;
    ingest.page(Stream::GooderaVolunteers, &[]).await;
}

#[tokio::test]
async fn malformed_records_break_their_documented_field_and_the_rest_stays_valid() {
    let sandbox = sandbox().await;
    let ingest = Ingest::new(&sandbox).await;
    for &stream in Stream::VARIANTS {
        let mark = json!({ "stream": stream, "indices": [1, 3] });
        assert_eq!(
            sandbox_api::control(&sandbox, "ingest/malformed", mark).await,
            StatusCode::NO_CONTENT
        );
        let records = ingest.pull(stream, None, 250).await;
        assert_eq!(records.len(), 250, "{stream}: malformed records are served");
        for index in [0, 2, 4, 249] {
            assert_eq!(records[index], ingest::record(stream, index as u64));
        }
        for index in [1, 3] {
            let (record, good) = (&records[index], ingest::record(stream, index as u64));
            let broken = match stream {
                Stream::BenevityVolunteers | Stream::BuddyData => {
                    record["hours"].as_f64().unwrap() < 0.0
                }
                Stream::BenevityDonations => record["amount"]["currency"] == "EURO",
                Stream::GooderaVolunteers => record.get("volunteerId").is_none(),
                Stream::GooderaDonations => record["currency"] == "EURO",
                Stream::WorkdayDirectory => record.get("id").is_none(),
                Stream::KintellEnrollments | Stream::UpskillingEnrollments => {
                    record["status"] == "graduated"
                }
                Stream::MentorshipPlacements => record["placedAt"] == "31/12/2025",
            };
            assert!(broken, "{stream} {index}: {record}");
            assert_eq!(
                updated_at_of(stream, record),
                updated_at_of(stream, &good),
                "{stream}: it keeps its place"
            );
        }
    }
}

#[tokio::test]
async fn volume_is_set_per_stream_or_for_all_and_reset_restores_the_configured_one() {
    let sandbox = Sandbox::start(SandboxConfig::default().with_records(7))
        .await
        .unwrap();
    let ingest = Ingest::new(&sandbox).await;
    let count = async |stream: Stream| ingest.pull(stream, None, 1000).await.len();
    assert_eq!(count(Stream::KintellEnrollments).await, 7);

    assert_eq!(
        sandbox_api::control(&sandbox, "ingest", json!({ "records": 1200 })).await,
        StatusCode::NO_CONTENT
    );
    for &stream in Stream::VARIANTS {
        assert_eq!(count(stream).await, 1200, "{stream}");
    }
    // Larger pages are cut to 1000.
    let page = ingest
        .page(Stream::BuddyData, &[("limit", "5000".into())])
        .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1000);
    assert!(page["nextCursor"].is_string());

    let one = json!({ "records": 12, "stream": "buddy-data" });
    assert_eq!(
        sandbox_api::control(&sandbox, "ingest", one).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(count(Stream::BuddyData).await, 12);
    assert_eq!(count(Stream::MentorshipPlacements).await, 1200);

    let change = json!({ "stream": "mentorship-placements", "count": 2 });
    assert_eq!(
        sandbox_api::control(&sandbox, "ingest/changes", change).await,
        StatusCode::NO_CONTENT
    );
    let mark = json!({ "stream": "mentorship-placements", "indices": [5] });
    assert_eq!(
        sandbox_api::control(&sandbox, "ingest/malformed", mark).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        sandbox_api::control(&sandbox, "reset", json!({})).await,
        StatusCode::NO_CONTENT
    );
    let stream = Stream::MentorshipPlacements;
    let records = ingest.pull(stream, None, 1000).await;
    let base: Vec<Value> = (0..7).map(|index| ingest::record(stream, index)).collect();
    assert_eq!(records, base, "no changes, no malformed, 7 records again");
    assert_eq!(
        sandbox_api::read(&sandbox, "stats").await["ingestRequests"][stream.to_string()],
        1
    );
}

#[tokio::test]
async fn bad_paging_parameters_are_refused_naming_them() {
    let sandbox = sandbox().await;
    let ingest = Ingest::new(&sandbox).await;
    let cases = [
        (Stream::BenevityVolunteers, "limit", "0"),
        (Stream::BenevityVolunteers, "limit", "ten"),
        (Stream::BenevityDonations, "cursor", "not-a-cursor"),
        (Stream::BenevityDonations, "updatedSince", "yesterday"),
        (Stream::GooderaVolunteers, "page", "0"),
        (Stream::GooderaVolunteers, "pageSize", "-5"),
        (Stream::GooderaDonations, "since", "2026-01-01"),
        (Stream::KintellEnrollments, "since", "2026-01-01 10:00"),
        (Stream::UpskillingEnrollments, "cursor", "MTIz"),
        (Stream::BuddyData, "limit", "1.5"),
    ];
    for (stream, name, value) in cases {
        let response = ingest
            .request(stream, &[(name, value.to_owned())])
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{stream} {name}={value}"
        );
        let error = json_of(response).await;
        assert_eq!(error["error"], "invalid_request");
        assert!(
            error["error_description"].as_str().unwrap().contains(name),
            "{stream} {name}={value}: {error}"
        );
    }
}
