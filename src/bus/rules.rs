//! Delivery rules: which providers get a company's ready reports
//! automatically. One row per company; no row and an empty list mean the
//! same, none.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::{ids::CompanyId, provider::Provider};

pub struct Rules {
    pub company_id: CompanyId,
    pub providers: BTreeSet<Provider>,
    /// `None`: never set.
    pub updated_at: Option<DateTime<Utc>>,
}

/// The company's rules (none stored: an empty list).
pub async fn get(db: &PgPool, company: CompanyId) -> Result<Rules, sqlx::Error> {
    let row: Option<(Vec<String>, DateTime<Utc>)> =
        sqlx::query_as("SELECT providers, updated_at FROM delivery_rules WHERE company_id = $1")
            .bind(company)
            .fetch_optional(db)
            .await?;
    Ok(match row {
        Some((providers, updated_at)) => Rules {
            company_id: company,
            // The table's CHECK admits only known providers.
            providers: providers.iter().filter_map(|p| p.parse().ok()).collect(),
            updated_at: Some(updated_at),
        },
        None => Rules {
            company_id: company,
            providers: BTreeSet::new(),
            updated_at: None,
        },
    })
}

/// Replaces the company's rules.
pub async fn put(
    db: &PgPool,
    company: CompanyId,
    providers: &BTreeSet<Provider>,
) -> Result<Rules, sqlx::Error> {
    let updated_at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO delivery_rules (company_id, providers) VALUES ($1, $2)
         ON CONFLICT (company_id) DO UPDATE SET providers = $2, updated_at = now()
         RETURNING updated_at",
    )
    .bind(company)
    .bind(providers.iter().map(|p| p.as_str()).collect::<Vec<_>>())
    .fetch_one(db)
    .await?;
    Ok(Rules {
        company_id: company,
        providers: providers.clone(),
        updated_at: Some(updated_at),
    })
}
