//! How to reach a Redis Cluster: seed URLs, the operation timeout and TLS, and the client
//! library's cluster clients built from them (for commands, and for sharded release notices).
//! A leaf below both the cluster deployment (`deploy::cluster`) and release notices (`notify`).

use std::time::Duration;

use redis::aio::AsyncPushSender;
use redis::cluster::{ClusterClient, ClusterClientBuilder};

/// How to reach a cluster: seed URLs and connection settings.
pub(crate) struct ClusterSettings {
    pub(crate) urls: Vec<String>,
    pub(crate) op_timeout: Duration,
    #[cfg(feature = "tls")]
    tls: Option<redis::TlsCertificates>,
}

impl ClusterSettings {
    pub(crate) fn new(
        urls: Vec<String>,
        op_timeout: Duration,
        #[cfg(feature = "tls")] tls: Option<redis::TlsCertificates>,
    ) -> Self {
        Self {
            urls,
            op_timeout,
            #[cfg(feature = "tls")]
            tls,
        }
    }

    /// A cluster client; with `push`, a RESP3 one that delivers pushes (pub/sub) to it.
    pub(crate) fn client(
        &self,
        push: Option<impl AsyncPushSender>,
    ) -> redis::RedisResult<ClusterClient> {
        let retry_ms = (self.op_timeout.as_millis() as u64 / 4).max(10);
        let mut builder = ClusterClientBuilder::new(self.urls.iter().map(String::as_str))
            .connection_timeout(self.op_timeout)
            .response_timeout(self.op_timeout)
            .retries(4)
            .min_retry_wait(5)
            .max_retry_wait(retry_ms)
            .retry_wait_formula(5, 2);
        #[cfg(feature = "tls")]
        if let Some(certs) = &self.tls {
            builder = builder.certs(certs.clone());
        }
        if let Some(push) = push {
            builder = builder
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(push);
        }
        builder.build()
    }
}
