//! The agent tunnel: how the API server reaches the kubelet of a node that joined over the network.
//!
//! Owns the WebSocket each agent keeps open to `wss://SERVER/v1-k3s/connect` (authenticated with
//! the agent's kubelet client certificate, `CN=system:node:<name>`, `O=system:nodes`), the small
//! multiplexing protocol spoken over it, the server's registry of connected nodes and the
//! agent's reconnect loop (1 s doubling to 30 s). The kubelet's API never listens on a network
//! port: the server opens a stream through the tunnel and the agent connects it to the kubelet's
//! unix socket.
//!
//! # Wire protocol
//!
//! Every WebSocket *binary* message is one frame:
//!
//! ```text
//! +--------+----------------------+---------------------+
//! | kind u8| stream id u32 (BE)   | payload (0..32 KiB)  |
//! +--------+----------------------+---------------------+
//! ```
//!
//! | kind | name | direction | payload |
//! |---|---|---|---|
//! | 1 | `OPEN` | server → agent | target, UTF-8 (only `kubelet` is accepted) |
//! | 2 | `DATA` | both | bytes of the stream |
//! | 3 | `CLOSE` | both | empty: the sender will send no more `DATA` (half close, like TCP FIN) |
//! | 4 | `RESET` | both | UTF-8 reason: the stream is aborted in both directions |
//!
//! The server picks stream ids (increasing from 1, never reused in a session). A stream ends
//! when both sides sent `CLOSE`, or either sent `RESET`. Frames for an unknown id are ignored
//! (a `RESET` may cross a `DATA`). Flow control is per stream: each side queues at most
//! [`STREAM_QUEUE`] frames for a stream before it stops reading the WebSocket, so a slow
//! consumer slows its tunnel down rather than growing memory. Text messages are protocol errors
//! and end the session. Liveness: each side sends a WebSocket ping every [`PING_EVERY`] and
//! drops a session that received nothing for [`DEAD_AFTER`].

pub mod agent;
pub mod frame;
pub mod mux;
pub mod server;

pub use agent::{AgentTunnel, AgentTunnelError};
pub use server::Registry;

use std::time::Duration;

/// Largest `DATA` payload sent.
pub const MAX_DATA: usize = 32 * 1024;
/// Frames queued per stream before the WebSocket reader waits.
pub const STREAM_QUEUE: usize = 64;
/// Interval of WebSocket pings.
pub const PING_EVERY: Duration = Duration::from_secs(10);
/// A session that received nothing (not even a pong) for this long is dead.
pub const DEAD_AFTER: Duration = Duration::from_secs(30);
/// The path agents connect to.
pub const CONNECT_PATH: &str = "/v1-k3s/connect";
/// The only target an `OPEN` may name.
pub const KUBELET_TARGET: &str = "kubelet";
