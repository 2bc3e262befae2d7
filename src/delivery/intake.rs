//! Group commit for new deliveries: creates that arrive while earlier ones
//! are being written share the next INSERT (see [`crate::group_commit`]).

use sqlx::PgPool;

use super::{
    Delivery,
    store::{self, NewRow},
};
use crate::group_commit::{BatchFuture, GroupCommit};

pub struct Intake(GroupCommit<NewRow, Option<Delivery>>);

impl Default for Intake {
    fn default() -> Self {
        Self(GroupCommit::new("deliveries", write))
    }
}

impl Intake {
    /// Inserts the row; `None` when its `deliveryId` or `Idempotency-Key`
    /// is taken (the row is not inserted).
    pub async fn insert(&self, db: &PgPool, row: NewRow) -> Result<Option<Delivery>, sqlx::Error> {
        self.0.submit(db, row).await
    }
}

/// One INSERT for the batch; each row's inserted delivery, if it was.
fn write(db: PgPool, rows: Vec<NewRow>) -> BatchFuture<Option<Delivery>> {
    Box::pin(async move {
        let mut inserted = store::insert_rows(&db, &rows).await?;
        Ok(rows.iter().map(|row| inserted.remove(&row.id)).collect())
    })
}
