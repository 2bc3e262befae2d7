//! The delivery console's routes (`crate::console`): the page at
//! `/console` and its two assets, each answer with the page's security
//! headers. Not API, so not in the OpenAPI document; no credentials either:
//! the page itself calls `/v1` with the bearer token the person signs in
//! with, which travels in the link's fragment and never reaches a server.

use axum::{
    Router,
    extract::Request,
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::get,
};

use super::error::ApiError;
use crate::{
    app::AppState,
    console::{self, Asset},
};

const ASSETS: &str = "/console/assets/";

/// Scripts and styles from this origin only (no inline script or style),
/// requests to this origin only, no framing, no forms posted anywhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The page is revalidated on every load (its `ETag` makes that cheap);
/// the assets, whose URLs carry their version, are kept for a year.
const PAGE_CACHE: &str = "no-cache";
const ASSET_CACHE: &str = "public, max-age=31536000, immutable";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(page))
        .route("/console/", get(to_page))
        .route("/console/assets/{name}", get(asset))
        // Every answer of these routes, the 404 of an unknown asset too.
        .layer(axum::middleware::map_response(security_headers))
}

/// `GET /console`: the page, with the asset version in its asset URLs.
async fn page(headers: HeaderMap) -> Response {
    serve(console::index(), PAGE_CACHE, &headers)
}

/// `GET /console/`: 308 to `/console`, with the query. The browser keeps
/// the fragment (the sign-in token) across the redirect by itself.
async fn to_page(request: Request) -> Redirect {
    match request.uri().query() {
        Some(query) => Redirect::permanent(&format!("/console?{query}")),
        None => Redirect::permanent("/console"),
    }
}

/// `GET /console/assets/{name}`: `app.js` or `app.css`; any other name is
/// the usual 404 problem.
async fn asset(request: Request) -> Result<Response, ApiError> {
    let path = request.uri().path();
    match path.strip_prefix(ASSETS).and_then(console::asset) {
        Some(asset) => Ok(serve(asset, ASSET_CACHE, request.headers())),
        None => Err(ApiError::RouteNotFound {
            method: request.method().clone(),
            path: path.to_owned(),
        }),
    }
}

/// 200 with the body, or 304 when `If-None-Match` names its `ETag`.
fn serve(asset: &Asset, cache_control: &'static str, request: &HeaderMap) -> Response {
    let etag = HeaderValue::from_str(&asset.etag).expect("an ETag is visible ASCII");
    let cache = (
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    if request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .any(|value| none_match(value, &asset.etag))
    {
        return (StatusCode::NOT_MODIFIED, [cache, (header::ETAG, etag)]).into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            cache,
            (header::ETAG, etag),
        ],
        asset.body.clone(),
    )
        .into_response()
}

/// Whether an `If-None-Match` value names `etag` (weak comparison, as RFC
/// 9110 asks for this header) or is `*`.
fn none_match(value: &HeaderValue, etag: &str) -> bool {
    value.to_str().is_ok_and(|list| {
        list.split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
    })
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert::<HeaderName>(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_names_the_tag_in_a_list_weakly_or_by_star() {
        let tag = "\"abc\"";
        for matching in ["\"abc\"", "W/\"abc\"", "\"x\", \"abc\"", "*"] {
            assert!(
                none_match(&HeaderValue::from_static(matching), tag),
                "{matching}"
            );
        }
        for other in ["\"abd\"", "abc", "", "\"abc"] {
            assert!(
                !none_match(&HeaderValue::from_static(other), tag),
                "{other}"
            );
        }
    }
}
