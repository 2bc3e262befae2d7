//! The delivery console (issue 17): the deliveries page every deployment
//! serves at `/console`. Its static files are compiled into the binary
//! (nothing is fetched at run time) and call the same `/v1` API as the
//! cockpit, with the bearer token the person signed in with: the page has
//! no back door. This module holds the files and what is derived from them
//! once (the asset version, the `ETag`s); the routes and their headers are
//! `http/console.rs`.

use std::sync::LazyLock;

use axum::body::Bytes;
use sha2::{Digest, Sha256};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// What `index.html` writes where the asset version goes
/// (`app.js?v=__ASSET_VERSION__`).
pub const VERSION_MARK: &str = "__ASSET_VERSION__";

/// One file as served: its bytes, type and entity tag.
#[derive(Debug)]
pub struct Asset {
    /// Cheap to clone: shared, not copied.
    pub body: Bytes,
    pub content_type: &'static str,
    /// A strong `ETag`, quotes included.
    pub etag: String,
}

impl Asset {
    fn new(body: impl Into<Bytes>, content_type: &'static str) -> Self {
        let body = body.into();
        Self {
            etag: format!("\"{}\"", &hex::encode(Sha256::digest(&body))[..32]),
            body,
            content_type,
        }
    }
}

/// The first 12 hex digits of SHA-256 over `app.js` then `app.css`: a new
/// build with changed assets gets new asset URLs, so the assets can be
/// cached for a year while the page itself is revalidated.
pub fn asset_version() -> &'static str {
    static VERSION: LazyLock<String> = LazyLock::new(|| {
        let mut hash = Sha256::new();
        hash.update(APP_JS);
        hash.update(APP_CSS);
        hex::encode(hash.finalize())[..12].to_owned()
    });
    &VERSION
}

/// `index.html` with every [`VERSION_MARK`] replaced by [`asset_version`].
pub fn index() -> &'static Asset {
    static INDEX: LazyLock<Asset> = LazyLock::new(|| {
        let html = INDEX_HTML.replace(VERSION_MARK, asset_version());
        Asset::new(html, "text/html; charset=utf-8")
    });
    &INDEX
}

/// An asset under `/console/assets/` by its file name; `None` for any
/// other name.
pub fn asset(name: &str) -> Option<&'static Asset> {
    static JS: LazyLock<Asset> =
        LazyLock::new(|| Asset::new(APP_JS, "text/javascript; charset=utf-8"));
    static CSS: LazyLock<Asset> = LazyLock::new(|| Asset::new(APP_CSS, "text/css; charset=utf-8"));
    match name {
        "app.js" => Some(&JS),
        "app.css" => Some(&CSS),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_12_hex_digits_of_both_assets() {
        let version = asset_version();
        assert_eq!(version.len(), 12);
        assert!(version.bytes().all(|b| b.is_ascii_hexdigit()));
        let mut hash = Sha256::new();
        hash.update(format!("{APP_JS}{APP_CSS}"));
        assert!(hex::encode(hash.finalize()).starts_with(version));
    }

    #[test]
    fn the_page_carries_the_version_and_no_mark() {
        let page = std::str::from_utf8(&index().body).unwrap();
        assert!(!page.contains(VERSION_MARK));
        if INDEX_HTML.contains(VERSION_MARK) {
            assert!(page.contains(asset_version()));
        }
    }

    #[test]
    fn only_the_two_assets_are_served() {
        assert_eq!(
            asset("app.js").unwrap().content_type,
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            asset("app.css").unwrap().content_type,
            "text/css; charset=utf-8"
        );
        for other in ["index.html", "", "app.js.map", "../mod.rs", "APP.JS"] {
            assert!(asset(other).is_none(), "{other}");
        }
        assert_ne!(
            asset("app.js").unwrap().etag,
            asset("app.css").unwrap().etag
        );
    }
}
