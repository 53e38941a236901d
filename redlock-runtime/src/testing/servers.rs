//! Several independent servers, for Redlock: [`RedisServers`].

use super::{RedisServer, ServerError};

/// Several independent servers (for Redlock quorum tests), all killed on drop.
#[derive(Debug)]
pub struct RedisServers {
    servers: Vec<RedisServer>,
}

impl RedisServers {
    /// Start `n` independent TCP servers, each ready to answer `PING`.
    pub fn spawn(n: usize) -> Result<RedisServers, ServerError> {
        let servers = (0..n)
            .map(|_| RedisServer::spawn())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RedisServers { servers })
    }

    /// The URLs of all servers, in order.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(RedisServer::url).collect()
    }

    /// The `i`-th server.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn get(&self, i: usize) -> &RedisServer {
        &self.servers[i]
    }

    /// The `i`-th server, mutably (to stop or restart it).
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn get_mut(&mut self, i: usize) -> &mut RedisServer {
        &mut self.servers[i]
    }

    /// All servers, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, RedisServer> {
        self.servers.iter()
    }

    /// The number of servers.
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Whether there are no servers.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }
}

impl<'a> IntoIterator for &'a RedisServers {
    type Item = &'a RedisServer;
    type IntoIter = std::slice::Iter<'a, RedisServer>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}
