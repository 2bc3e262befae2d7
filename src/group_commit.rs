//! Group commit: writes that arrive while earlier ones are being committed
//! share the next transaction, so one commit (one WAL flush) takes a whole
//! batch. A write arriving alone is made at once; each caller is answered
//! only after its batch is committed. The delivery intake and the webhook
//! events use it.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, OnceLock},
};

use sqlx::PgPool;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Items one write carries at most.
const MAX_BATCH: usize = 256;
/// Writes in flight at once; further items gather for the next one.
const MAX_IN_FLIGHT: usize = 2;

pub type BatchFuture<R> = Pin<Box<dyn Future<Output = Result<Vec<R>, sqlx::Error>> + Send>>;

/// Writes a batch; answers one result per item, in the items' order.
pub type WriteBatch<T, R> = fn(PgPool, Vec<T>) -> BatchFuture<R>;

type Reply<R> = oneshot::Sender<Result<R, sqlx::Error>>;

pub struct GroupCommit<T, R> {
    /// What is written, for logs.
    what: &'static str,
    write: WriteBatch<T, R>,
    // Started on first use, inside the runtime.
    queue: OnceLock<mpsc::Sender<(T, Reply<R>)>>,
}

impl<T: Send + 'static, R: Send + 'static> GroupCommit<T, R> {
    pub fn new(what: &'static str, write: WriteBatch<T, R>) -> Self {
        Self {
            what,
            write,
            queue: OnceLock::new(),
        }
    }

    /// Writes `item` with whatever else is waiting; its result.
    pub async fn submit(&self, db: &PgPool, item: T) -> Result<R, sqlx::Error> {
        let queue = self.queue.get_or_init(|| {
            let (queue, items) = mpsc::channel(MAX_BATCH * MAX_IN_FLIGHT);
            tokio::spawn(write_batches(db.clone(), items, self.write, self.what));
            queue
        });
        let (reply, answer) = oneshot::channel();
        queue
            .send((item, reply))
            .await
            .map_err(|_| stopped(self.what))?;
        answer.await.map_err(|_| stopped(self.what))?
    }
}

fn stopped(what: &str) -> sqlx::Error {
    sqlx::Error::Protocol(format!("the {what} writer stopped"))
}

async fn write_batches<T: Send + 'static, R: Send + 'static>(
    db: PgPool,
    mut items: mpsc::Receiver<(T, Reply<R>)>,
    write: WriteBatch<T, R>,
    what: &'static str,
) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let slot = in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        if items.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let (items, replies): (Vec<T>, Vec<Reply<R>>) =
            std::mem::take(&mut batch).into_iter().unzip();
        let db = db.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let count = items.len();
            match write(db, items).await {
                Ok(results) => {
                    debug_assert_eq!(results.len(), count, "one result per item");
                    for (result, reply) in results.into_iter().zip(replies) {
                        let _ = reply.send(Ok(result));
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, items = count, "writing {what} failed");
                    for reply in replies {
                        let _ = reply.send(Err(share(&err)));
                    }
                }
            }
        });
    }
}

/// The same failure for every item of the batch (`sqlx::Error` is not
/// `Clone`), keeping "the database is unavailable" recognisable.
fn share(err: &sqlx::Error) -> sqlx::Error {
    match err {
        sqlx::Error::PoolTimedOut => sqlx::Error::PoolTimedOut,
        sqlx::Error::PoolClosed => sqlx::Error::PoolClosed,
        sqlx::Error::Io(io) => sqlx::Error::Io(std::io::Error::new(io.kind(), io.to_string())),
        other => sqlx::Error::Protocol(other.to_string()),
    }
}
