//! One waiter's interest in one key's notices: armed before each attempt, waited on between
//! attempts, listening for a hand-off to its token, and given up (after a linger) on drop.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;

use super::{Grant, Table, LINGER};

/// One waiter's interest in one key's release notices; dropping it gives the interest up.
pub(crate) struct Subscription {
    pub(super) table: Table,
    pub(super) channel: String,
    /// This process's channel of the key's hand-offs, if any.
    pub(super) grants: Option<String>,
    pub(super) bell: Arc<Notify>,
    pub(super) armed: Option<Pin<Box<OwnedNotified>>>,
    /// The hand-off this waiter listens for, with its token.
    pub(super) grant: Option<(String, Arc<Grant>)>,
    /// Orders the key's unsubscription after any subscription under way.
    pub(super) order: Arc<tokio::sync::Mutex<()>>,
}

impl Subscription {
    /// Starts listening for the next notice: call before each attempt, so a release during the
    /// attempt is not missed.
    pub(crate) fn arm(&mut self) {
        let mut notified = Box::pin(self.bell.clone().notified_owned());
        notified.as_mut().enable();
        self.armed = Some(notified);
    }

    /// Sleeps for `delay`, or less if a notice arrives (or arrived since [`Self::arm`]), or a
    /// hand-off to this waiter (see [`Self::expect_grant`]).
    pub(crate) async fn wait(&mut self, delay: Duration) {
        let grant = self.grant.as_ref().map(|(_, grant)| grant.clone());
        let armed = self.armed.take();
        let notice = async {
            match armed {
                Some(notified) => notified.await,
                None => std::future::pending().await,
            }
        };
        let granted = async {
            match &grant {
                Some(grant) => grant.bell.notified().await,
                None => std::future::pending().await,
            }
        };
        let _ = tokio::time::timeout(delay, async {
            tokio::select! {
                () = notice => {}
                () = granted => {}
            }
        })
        .await;
    }

    /// Listens for a hand-off of the key to `token` (a waiter in the key's line), instead of
    /// the token it listened for before, if any.
    pub(crate) fn expect_grant(&mut self, token: &str) {
        if let Some((before, _)) = &self.grant {
            if before == token {
                return;
            }
            self.table.grantees().remove(before);
        }
        let grant = Arc::new(Grant::default());
        self.table
            .grantees()
            .insert(token.to_owned(), grant.clone());
        self.grant = Some((token.to_owned(), grant));
    }

    /// The channel on which a release tells this process of a hand-off of the key to one of
    /// its waiters: a waiter in line names it in its place.
    pub(crate) fn grants(&self) -> Option<&str> {
        self.grants.as_deref()
    }

    /// The fencing token of a hand-off to this waiter, once its notice came.
    pub(crate) fn granted(&self) -> Option<u64> {
        let (_, grant) = self.grant.as_ref()?;
        *grant.fence.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some((token, _)) = &self.grant {
            self.table.grantees().remove(token);
        }
        let left = {
            let mut table = self.table.lock();
            let Some(entry) = table.get_mut(&self.channel) else {
                return;
            };
            entry.refs -= 1;
            if entry.refs > 0 {
                return;
            }
            entry.echoes = 0;
            entry.left += 1;
            if entry.watched {
                return; // the key's watcher sees this leave at its next look
            }
            entry.watched = true;
            entry.left
        };
        // The last waiter here left: the channel stays subscribed a while, then goes unless a
        // waiter came meanwhile. One watcher per key, looking every LINGER while the key is in
        // use: a process taking its turn again and again spawns no task per acquisition.
        let table = self.table.clone();
        let channel = std::mem::take(&mut self.channel);
        let order = self.order.clone();
        crate::background::spawn(async move {
            let mut seen = left;
            loop {
                tokio::time::sleep(LINGER).await;
                let _order = order.lock().await;
                let on = {
                    let mut table = table.lock();
                    let Some(entry) = table.get(&channel) else {
                        return;
                    };
                    if entry.refs > 0 || entry.left != seen {
                        // In use, or used since the last look: look again later.
                        seen = entry.left;
                        continue;
                    }
                    table
                        .remove(&channel)
                        .map(|entry| entry.on)
                        .unwrap_or_default()
                };
                // On each connection the key was subscribed on whose runtime still runs.
                for on in on.into_iter().filter(|on| on.listener.alive()) {
                    let mut conn = on.listener.conn.clone();
                    if let Err(e) = conn.unsubscribe(&channel, on.grants.as_deref()).await {
                        tracing::debug!(channel, error = %e, "unsubscribe failed");
                    }
                }
                return;
            }
        });
    }
}
