//! Group commit on SQLite: the write sections waiting for the one writer run together in one
//! transaction, each inside a savepoint, and share its commit: one fsync for the group instead
//! of one per section. A section that fails is rolled back to its savepoint and answered with
//! its own error; the others are answered only once the commit is durable, so a section is
//! never reported written before it is.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;
use sqlx::{AnyPool, Executor as _};
use tokio::sync::{mpsc, oneshot};

use super::StoreError;

/// A write transaction as the sections see it.
pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// A statement with some of its values bound, for the helpers that bind their own part.
pub type Statement<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Sections one group may hold: enough to share a commit under load, few enough that the
/// first of them does not wait long for the last.
pub(super) const MOST_PER_GROUP: usize = 32;

/// One caller's write section, type-erased so sections of any result share a queue.
pub(super) trait Section: Send {
    fn run<'a>(self: Box<Self>, tx: &'a mut Tx) -> BoxFuture<'a, Box<dyn Ran>>;
    /// The group failed before this section ran.
    fn abandon(self: Box<Self>, error: String);
}

/// A section that ran, holding its result until the group's commit decides its answer.
pub(super) trait Ran: Send {
    fn succeeded(&self) -> bool;
    fn answer(self: Box<Self>, committed: Result<(), String>);
}

pub(super) type Queue = mpsc::UnboundedSender<Box<dyn Section>>;

pub(super) struct Grouped<F, T, E> {
    pub(super) job: F,
    pub(super) reply: oneshot::Sender<Result<T, E>>,
}

impl<F, T, E> Section for Grouped<F, T, E>
where
    F: for<'a> FnOnce(&'a mut Tx) -> BoxFuture<'a, Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    fn run<'a>(self: Box<Self>, tx: &'a mut Tx) -> BoxFuture<'a, Box<dyn Ran>> {
        let Grouped { job, reply } = *self;
        Box::pin(async move {
            let result = job(tx).await;
            Box::new(Finished { result, reply }) as Box<dyn Ran>
        })
    }

    fn abandon(self: Box<Self>, error: String) {
        // The caller may have gone; then nobody needs the answer.
        let _ = self.reply.send(Err(StoreError::GroupCommit(error).into()));
    }
}

struct Finished<T, E> {
    result: Result<T, E>,
    reply: oneshot::Sender<Result<T, E>>,
}

impl<T: Send, E: From<StoreError> + Send> Ran for Finished<T, E> {
    fn succeeded(&self) -> bool {
        self.result.is_ok()
    }

    fn answer(self: Box<Self>, committed: Result<(), String>) {
        let answer = match (self.result, committed) {
            (Ok(_), Err(error)) => Err(StoreError::GroupCommit(error).into()),
            (result, _) => result,
        };
        let _ = self.reply.send(answer);
    }
}

/// How much grouping happened: groups begun and sections run in them.
#[derive(Debug, Default)]
pub struct GroupCounts {
    pub groups: AtomicU64,
    pub sections: AtomicU64,
}

/// Runs queued sections in groups until every sender is gone.
pub(super) async fn commit_groups(
    writer: AnyPool,
    mut queue: mpsc::UnboundedReceiver<Box<dyn Section>>,
    counts: Arc<GroupCounts>,
) {
    while let Some(first) = queue.recv().await {
        let mut group = vec![first];
        while group.len() < MOST_PER_GROUP {
            match queue.try_recv() {
                Ok(section) => group.push(section),
                Err(_) => break,
            }
        }
        counts.groups.fetch_add(1, Ordering::Relaxed);
        counts
            .sections
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        run_group(&writer, group).await;
    }
}

async fn run_group(writer: &AnyPool, group: Vec<Box<dyn Section>>) {
    let mut tx = match writer.begin_with("BEGIN IMMEDIATE").await {
        Ok(tx) => tx,
        Err(error) => {
            let error = error.to_string();
            for section in group {
                section.abandon(error.clone());
            }
            return;
        }
    };
    // A section alone needs no savepoint: its failure rolls back the transaction.
    let alone = group.len() == 1;
    let mut ran: Vec<Box<dyn Ran>> = Vec::with_capacity(group.len());
    let mut sections = group.into_iter();
    let mut broken = None;
    for section in sections.by_ref() {
        if !alone && let Err(error) = tx.execute("SAVEPOINT section").await {
            section.abandon(error.to_string());
            broken = Some(error.to_string());
            break;
        }
        let finished = section.run(&mut tx).await;
        let closed = match (alone, finished.succeeded()) {
            (true, _) => Ok(()),
            (false, true) => tx.execute("RELEASE section").await.map(drop),
            // If SQLite had rolled back the whole transaction (a full disk, an I/O error),
            // the savepoint is gone and this fails: then nothing of the group stands.
            (false, false) => match tx.execute("ROLLBACK TO section").await {
                Ok(_) => tx.execute("RELEASE section").await.map(drop),
                Err(error) => Err(error),
            },
        };
        ran.push(finished);
        if let Err(error) = closed {
            broken = Some(error.to_string());
            break;
        }
    }
    if let Some(error) = broken {
        let _ = tx.rollback().await;
        for section in sections {
            section.abandon(error.clone());
        }
        for finished in ran {
            finished.answer(Err(error.clone()));
        }
        return;
    }
    let committed = if alone && !ran.iter().all(|finished| finished.succeeded()) {
        // The one section failed: it answers its own error whatever the rollback says.
        let _ = tx.rollback().await;
        Ok(())
    } else {
        tx.commit().await.map_err(|error| error.to_string())
    };
    for finished in ran {
        finished.answer(committed.clone());
    }
}
