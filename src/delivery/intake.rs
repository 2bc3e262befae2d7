//! Group commit for new deliveries: creates that arrive while earlier ones
//! are being written share the next INSERT, so one commit (one WAL flush)
//! accepts a whole batch. A create arriving alone is written at once; each
//! request is answered only after its row is committed.

use std::sync::{Arc, OnceLock};

use sqlx::PgPool;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{
    Delivery,
    store::{self, NewRow},
};

/// The most rows one INSERT carries.
const MAX_BATCH: usize = 256;
/// INSERTs in flight at once; further creates gather for the next one.
const MAX_IN_FLIGHT: usize = 2;

type Reply = oneshot::Sender<Result<Option<Delivery>, sqlx::Error>>;

#[derive(Default)]
pub struct Intake {
    // Started on first use, inside the runtime.
    queue: OnceLock<mpsc::Sender<(NewRow, Reply)>>,
}

impl Intake {
    /// Inserts the row; `None` when its `deliveryId` or `Idempotency-Key`
    /// is taken (the row is not inserted).
    pub async fn insert(&self, db: &PgPool, row: NewRow) -> Result<Option<Delivery>, sqlx::Error> {
        let queue = self.queue.get_or_init(|| {
            let (queue, rows) = mpsc::channel(MAX_BATCH * MAX_IN_FLIGHT);
            tokio::spawn(write_batches(db.clone(), rows));
            queue
        });
        let (reply, answer) = oneshot::channel();
        queue.send((row, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> sqlx::Error {
    sqlx::Error::Protocol("the delivery intake stopped".into())
}

async fn write_batches(db: PgPool, mut rows: mpsc::Receiver<(NewRow, Reply)>) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let slot = in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        if rows.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let (new, replies): (Vec<NewRow>, Vec<Reply>) =
            std::mem::take(&mut batch).into_iter().unzip();
        let db = db.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match store::insert_rows(&db, &new).await {
                Ok(mut inserted) => {
                    for (row, reply) in new.iter().zip(replies) {
                        let _ = reply.send(Ok(inserted.remove(&row.id)));
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, rows = new.len(), "inserting deliveries failed");
                    for reply in replies {
                        let _ = reply.send(Err(share(&err)));
                    }
                }
            }
        });
    }
}

/// The same failure for every request of the batch (`sqlx::Error` is not
/// `Clone`), keeping "the database is unavailable" recognisable.
fn share(err: &sqlx::Error) -> sqlx::Error {
    match err {
        sqlx::Error::PoolTimedOut => sqlx::Error::PoolTimedOut,
        sqlx::Error::PoolClosed => sqlx::Error::PoolClosed,
        sqlx::Error::Io(io) => sqlx::Error::Io(std::io::Error::new(io.kind(), io.to_string())),
        other => sqlx::Error::Protocol(other.to_string()),
    }
}
