//! Paging shared by the list routes (deliveries, webhook events): `page` and
//! `limit`, or `cursor` and `limit`, and one answer shape.

use serde::Serialize;

use super::extract::QueryParams;
use crate::cursor::{Cursor, Start};

const DEFAULT_LIMIT: u32 = 20;
const MAX_LIMIT: u32 = 100;
/// Deeper pages are cheaper by cursor.
const MAX_PAGE: u64 = 100_000;

/// Where the caller asked a page to start, and how long it is.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    /// `None` for a page by cursor without a `page`.
    pub page: Option<u64>,
    pub limit: u32,
    pub start: Start,
}

impl PageRequest {
    /// Reads `page`, `cursor` and `limit`; errors are recorded in `params`.
    /// With a cursor, pages are counted from it: `page=2&cursor=c` is the
    /// second page after `c` (not counted in total, as any page by cursor).
    pub fn read(params: &mut QueryParams) -> Self {
        let page = params.get_with("page", |raw| parse_in_range(raw, 1, MAX_PAGE));
        let cursor: Option<Cursor> = params.get("cursor");
        let limit = params
            .get_with("limit", |raw| parse_in_range(raw, 1, u64::from(MAX_LIMIT)))
            .map_or(DEFAULT_LIMIT, |limit| limit as u32);
        let skip = (page.unwrap_or(1) - 1).saturating_mul(u64::from(limit));
        Self {
            page: if cursor.is_some() {
                page
            } else {
                Some(page.unwrap_or(1))
            },
            limit,
            start: match cursor {
                Some(cursor) => Start::After(cursor, skip),
                None => Start::Offset(skip),
            },
        }
    }

    /// The answer for `data`, given the total (pages by number) and the
    /// position after the last row (when more follow).
    pub fn answer<T>(self, data: Vec<T>, total: Option<i64>, next: Option<Cursor>) -> Page<T> {
        let limit = i64::from(self.limit);
        Page {
            data,
            pagination: Pagination {
                page: self.page,
                limit: self.limit,
                total,
                total_pages: total.map(|total| (total + limit - 1) / limit),
            },
            next_cursor: next.map(|cursor| cursor.to_string()),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    data: Vec<T>,
    pagination: Pagination,
    /// Continues after this page; `None` on the last one.
    next_cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct Pagination {
    /// `None` (null) on a page fetched by cursor alone, which has no
    /// number (with `page`, the number counted from the cursor); the
    /// cockpit needs the member present either way. So are `total` and
    /// `totalPages`, which a page by cursor does not count.
    page: Option<u64>,
    limit: u32,
    total: Option<i64>,
    total_pages: Option<i64>,
}

pub fn parse_in_range(raw: &str, min: u64, max: u64) -> Result<u64, String> {
    raw.parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("must be a whole number from {min} to {max}"))
}
